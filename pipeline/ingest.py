"""The ``ingest`` stage: a MIMIC-IV folder or a MEDS dataset in, a MEDS 0.4 dataset out.

Output layout (built in a temporary folder, then swapped in with :func:`pipeline.io.atomic_dir`)::

    <output>/data/<shard>.parquet            events, subject-contiguous, sorted by (subject_id, time)
    <output>/metadata/codes.parquet          code, description, parent_codes (every code present)
    <output>/metadata/dataset.json           MEDS dataset metadata
    <output>/metadata/subject_splits.parquet subject_id, split (pipeline.splits.assign_splits)
    <output>/quality/rejects.parquet         one row per rejected input row, with its reason
    <output>/quality/summary.json            the data-quality summary (also returned and logged)

Scale: subjects are assigned to shards of ``shard_size`` consecutive subject ids; every source table is
streamed block by block and each block's events are appended to a per-shard staging file; then each shard
is read alone, sorted and written. Peak memory is set by the block size and the shard size, not by the
number of lab rows.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm import tqdm

from pipeline.exceptions import ConfigError, InputSchemaError, RowQualityError
from pipeline.io import atomic_dir, write_json
from pipeline.schema import CODES_SCHEMA, EVENTS_SCHEMA, MEDS_VERSION, SUBJECT_SPLITS_SCHEMA
from pipeline.sources import REJECTS_SCHEMA
from pipeline.splits import splits_with_given

log = logging.getLogger(__name__)


class IngestConfig(BaseModel):
    """Knobs of the ``ingest`` stage (``ingest`` section of ``params.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    strict: bool = Field(
        False, description="raise RowQualityError on any rejected row instead of quarantining it"
    )
    shard_size: int = Field(5_000, ge=1, description="subjects per output shard (bounds peak memory)")
    split_fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train, tuning, held_out"
    )
    split_seed: int = Field(0, description="seed of the subject-level split hash")
    block_mb: int = Field(
        16, ge=1, le=1024, description="CSV block size read at a time, in MiB (bounds memory)"
    )
    dataset_name: str | None = Field(
        None, description="name in metadata/dataset.json (default: input folder name)"
    )

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or sum(v) <= 0:
            raise ValueError("fractions must be non-negative with a positive sum")
        return v


class _ShardStager:
    """Appends event blocks to one staging parquet file per shard."""

    def __init__(self, root: Path, shard_bounds: np.ndarray):
        self.root = root
        self.bounds = shard_bounds  # first subject_id of each shard, ascending
        self.writers: dict[int, object] = {}
        root.mkdir(parents=True, exist_ok=True)

    def add(self, events: pl.DataFrame) -> None:
        if events.height == 0:
            return
        shard = np.searchsorted(self.bounds, events["subject_id"].to_numpy(), side="right") - 1
        events = events.with_columns(_shard=pl.Series(shard.astype(np.int32)))
        for (k,), part in events.partition_by("_shard", as_dict=True, maintain_order=True).items():
            tbl = part.drop("_shard").to_arrow().cast(EVENTS_SCHEMA)
            w = self.writers.get(k)
            if w is None:
                w = pq.ParquetWriter(self.root / f"{k}.parquet", EVENTS_SCHEMA, compression="lz4")
                self.writers[k] = w
            w.write_table(tbl)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def _make_source(source: str, input_dir: Path, config: IngestConfig):
    if source == "mimic-iv":
        from pipeline.sources.mimic_iv import MimicIVSource

        return MimicIVSource(input_dir, block_size=config.block_mb << 20)
    if source == "meds":
        from pipeline.sources.meds import MedsSource

        return MedsSource(input_dir)
    raise ConfigError(f"ingest: source = {source!r}: unknown source; use 'mimic-iv' or 'meds'")


def ingest(
    source: Literal["mimic-iv", "meds"],
    input_dir: Path,
    output_dir: Path,
    config: IngestConfig,
    progress: bool = True,
) -> dict:
    """Convert ``input_dir`` (MIMIC-IV layout or MEDS) into a MEDS dataset at ``output_dir``.

    Parameters
    ----------
    source : {"mimic-iv", "meds"}
        Layout of ``input_dir``.
    input_dir, output_dir : Path
        Input folder; output folder (replaced atomically, only once complete).
    config : IngestConfig
        Strictness, shard size, split fractions and seed.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        Data-quality summary: subjects, admissions, events (total and per code family), rows read and rejects
        per table, absent tables, shards, seconds.

    Raises
    ------
    InputSchemaError
        A table or column is missing, mistyped throughout, empty, or the file is truncated (nothing written).
    RowQualityError
        ``config.strict`` is on and some rows were rejected (nothing written).
    """
    t0 = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    src = _make_source(source, input_dir, config)
    src.check()
    with atomic_dir(output_dir) as tmp:
        subject_ids, first_events = src.prepare()
        if len(subject_ids) == 0:
            raise InputSchemaError(
                f"{input_dir}: no subjects found; check that the input holds patients/events"
            )
        subject_ids = np.sort(np.asarray(subject_ids, dtype=np.int64))
        stager = _ShardStager(tmp / "_staging", subject_ids[:: config.shard_size])
        try:
            rejects = _stage_events(src, stager, first_events, progress)
        finally:
            stager.close()
        rej_counts = _check_rejects(rejects, input_dir, config.strict)
        written = _write_shards(src, stager, tmp, progress)
        splits, split_source = _subject_splits(src, subject_ids, config)
        _write_metadata(
            src,
            tmp / "metadata",
            written["code_counts"],
            subject_ids,
            splits,
            split_source,
            config,
            source,
            input_dir,
        )
        summary = {
            "source": source,
            "input": str(input_dir),
            "subjects": int(len(subject_ids)),
            "admissions": int(written["admissions"]),
            "events": int(written["events"]),
            "events_per_family": written["families"],
            "codes": int(len(written["code_counts"])),
            "rows_read": dict(sorted(src.rows_read.items())),
            "rejects": {t: rej_counts.get(t, 0) for t in sorted(set(src.rows_read) | set(rej_counts))},
            "rejects_total": int(rejects.height),
            "absent_tables": list(src.absent),
            "shards": written["shards"],
            "splits": {s: int((splits == s).sum()) for s in ("train", "tuning", "held_out")},
            "split_source": split_source,
        }
        (tmp / "quality").mkdir()
        rejects.write_parquet(tmp / "quality" / "rejects.parquet", compression="zstd")
        write_json(summary, tmp / "quality" / "summary.json")
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _log_summary(summary)
    return summary


def _stage_events(src, stager: _ShardStager, first_events: list, progress: bool) -> pl.DataFrame:
    """Read every table of the source into per-shard staging files; return the rejected rows."""
    rejects: list[pl.DataFrame] = []
    for _table, events, rej in first_events:
        stager.add(events)
        rejects.append(rej)
    for table in src.tables():
        # the bar is closed (and cleared) before any error propagates, so an error stands on its own line
        with tqdm(
            desc=f"ingest {table}", unit="row", unit_scale=True, disable=not progress, leave=False
        ) as bar:
            for events, rej in src.iter_table(table):
                stager.add(events)
                if rej.height:
                    rejects.append(rej)
                bar.update(events.height + rej.height)
    if not rejects:
        return pl.DataFrame(schema=REJECTS_SCHEMA)
    return pl.concat(rejects, how="vertical_relaxed").cast(dict(REJECTS_SCHEMA))


def _check_rejects(rejects: pl.DataFrame, input_dir: Path, strict: bool) -> dict[str, int]:
    """Log the rejected rows per table; with ``strict``, raise on the first one."""
    counts = _reject_counts(rejects)
    for table, n in counts.items():
        reasons = rejects.filter(pl.col("table") == table)["reason"].value_counts(sort=True).head(3)
        top = "; ".join(f"{r} ({c})" for r, c in reasons.iter_rows())
        log.warning("ingest: %s: %d row(s) rejected: %s; see quality/rejects.parquet", table, n, top)
    if strict and rejects.height:
        first = rejects.row(0, named=True)
        where = f"row {first['row_number']}" if first["row_number"] is not None else "a row"
        shown = "" if first["value"] is None else f" (value {first['value']!r})"
        listed = ", ".join(f"{t}: {n}" for t, n in counts.items())
        raise RowQualityError(
            f"{input_dir}: {rejects.height} row(s) rejected ({listed}); first: {first['table']} {where}, "
            f"column {first['column']!r}: {first['reason']}{shown}; "
            "fix the input or run without --strict to quarantine them"
        )
    return counts


def _write_shards(src, stager: _ShardStager, tmp: Path, progress: bool) -> dict:
    """Sort each staged shard by (subject_id, time) and write it as ``data/<k>.parquet``; count codes."""
    data_dir = tmp / "data"
    data_dir.mkdir()
    code_counts: dict[str, int] = {}
    n_events = n_adm = 0
    staged = sorted(stager.writers)
    with tqdm(staged, desc="ingest shards", unit="shard", disable=not progress, leave=False) as bar:
        for k in bar:
            path = tmp / "_staging" / f"{k}.parquet"
            df = pl.read_parquet(path)
            path.unlink()
            df = src.finalize_shard(df).sort(["subject_id", "time"], nulls_last=False, maintain_order=True)
            pq.write_table(df.to_arrow().cast(EVENTS_SCHEMA), data_dir / f"{k}.parquet", compression="zstd",
                           row_group_size=1_000_000)  # fmt: skip
            n_events += df.height
            for c, n in df.group_by("code").len().iter_rows():
                code_counts[c] = code_counts.get(c, 0) + n
            admissions = df.filter(
                pl.col("code").str.starts_with("HOSPITAL_ADMISSION") & pl.col("hadm_id").is_not_null()
            )
            n_adm += admissions["hadm_id"].n_unique()
            del df
    (tmp / "_staging").rmdir()
    families: dict[str, int] = {}
    for c, n in code_counts.items():
        fam = c.split("//", 1)[0]
        families[fam] = families.get(fam, 0) + n
    return {
        "code_counts": code_counts,
        "events": n_events,
        "admissions": n_adm,
        "families": dict(sorted(families.items())),
        "shards": len(staged),
    }


def _subject_splits(src, subject_ids: np.ndarray, config: IngestConfig) -> tuple[np.ndarray, str]:
    """Each subject's split: the input's own (a MEDS ``subject_splits.parquet``), else the keyed hash."""
    given = src.input_splits()
    splits, n_hashed = splits_with_given(subject_ids, given, config.split_fractions, config.split_seed)
    if given is None:
        return splits, "keyed_hash"
    if n_hashed:
        log.warning(
            "ingest: %d of %d subject(s) are not in the input's subject_splits.parquet; they get the keyed-hash split",
            n_hashed,
            len(subject_ids),
        )
    return splits, "input"


def _write_metadata(
    src,
    meta: Path,
    code_counts: dict,
    subject_ids,
    splits,
    split_source: str,
    config: IngestConfig,
    source: str,
    input_dir: Path,
) -> None:
    """``metadata/``: codes, subject splits and dataset.json, typed as the MEDS 0.4 schemas want."""
    meta.mkdir()
    codes = src.describe(pl.DataFrame({"code": sorted(code_counts)}, schema={"code": pl.String}))
    codes = codes.select("code", "description", "parent_codes").to_arrow().cast(CODES_SCHEMA)
    pq.write_table(codes, meta / "codes.parquet", compression="zstd")
    split_table = pa.table({"subject_id": subject_ids, "split": np.asarray(splits, dtype=str)}).cast(
        SUBJECT_SPLITS_SCHEMA
    )
    pq.write_table(split_table, meta / "subject_splits.parquet")
    write_json(
        {
            "dataset_name": config.dataset_name or input_dir.name,
            "dataset_version": "unknown",
            "etl_name": "ehr-hcl",
            "etl_version": str(_etl_version()),
            "meds_version": MEDS_VERSION,
            "raw_source_id_columns": ["hadm_id"],
            "source": source,
            "split_source": split_source,
            "extension_columns": {"hadm_id": "int64: admission the event belongs to (null if none)"},
        },
        meta / "dataset.json",
    )


def _etl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ehr-hcl")
    except PackageNotFoundError:
        return "unknown"


def _reject_counts(rej: pl.DataFrame) -> dict[str, int]:
    if rej.height == 0:
        return {}
    return dict(sorted(rej.group_by("table").len().iter_rows()))


def _log_summary(s: dict) -> None:
    lines = [
        f"ingest ({s['source']}): {s['subjects']} subjects, {s['admissions']} admissions, {s['events']} events, "
        f"{s['codes']} codes, {s['shards']} shard(s), {s['seconds']} s",
        "  events per family: " + ", ".join(f"{k} {v}" for k, v in s["events_per_family"].items()),
        "  rows read / rejected: "
        + ", ".join(f"{t} {s['rows_read'].get(t, 0)}/{s['rejects'].get(t, 0)}" for t in s["rows_read"]),
    ]
    if s["absent_tables"]:
        lines.append("  absent tables: " + ", ".join(s["absent_tables"]))
    log.info("\n".join(lines))


__all__ = ["IngestConfig", "ingest", "MEDS_VERSION"]

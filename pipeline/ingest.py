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
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.exceptions import ConfigError, InputSchemaError, RowQualityError
from pipeline.io import atomic_dir, write_json
from pipeline.schema import EVENTS_SCHEMA
from pipeline.sources import REJECTS_SCHEMA
from pipeline.splits import assign_splits

log = logging.getLogger(__name__)

MEDS_VERSION = "0.4.0"


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
        import pyarrow.parquet as pq

        self._pq = pq
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
                w = self._pq.ParquetWriter(self.root / f"{k}.parquet", EVENTS_SCHEMA, compression="lz4")
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
    from tqdm import tqdm

    t0 = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    src = _make_source(source, input_dir, config)
    src.check()
    rejects: list[pl.DataFrame] = []
    with atomic_dir(output_dir) as tmp:
        subject_ids, first_events = src.prepare()
        if len(subject_ids) == 0:
            raise InputSchemaError(
                f"{input_dir}: no subjects found; check that the input holds patients/events"
            )
        subject_ids = np.sort(np.asarray(subject_ids, dtype=np.int64))
        bounds = subject_ids[:: config.shard_size]
        stager = _ShardStager(tmp / "_staging", bounds)
        try:
            for _table, events, rej in first_events:
                stager.add(events)
                rejects.append(rej)
            for table in src.tables():
                bar = tqdm(
                    desc=f"ingest {table}", unit="row", unit_scale=True, disable=not progress, leave=False
                )
                for events, rej in src.iter_table(table):
                    stager.add(events)
                    if rej.height:
                        rejects.append(rej)
                    bar.update(events.height + rej.height)
                bar.close()
        finally:
            stager.close()

        rej_all = (
            pl.concat(rejects, how="vertical_relaxed").cast(dict(REJECTS_SCHEMA))
            if rejects
            else pl.DataFrame(schema=REJECTS_SCHEMA)
        )
        rej_counts = _reject_counts(rej_all)
        for table, n in rej_counts.items():
            reasons = rej_all.filter(pl.col("table") == table)["reason"].value_counts(sort=True).head(3)
            top = "; ".join(f"{r} ({c})" for r, c in reasons.iter_rows())
            log.warning("ingest: %s: %d row(s) rejected: %s; see quality/rejects.parquet", table, n, top)
        if config.strict and rej_all.height:
            first = rej_all.row(0, named=True)
            where = f"row {first['row_number']}" if first["row_number"] is not None else "a row"
            shown = "" if first["value"] is None else f" (value {first['value']!r})"
            counts = ", ".join(f"{t}: {n}" for t, n in rej_counts.items())
            raise RowQualityError(
                f"{input_dir}: {rej_all.height} row(s) rejected ({counts}); first: {first['table']} {where}, "
                f"column {first['column']!r}: {first['reason']}{shown}; "
                "fix the input or run without --strict to quarantine them"
            )

        # ---- per shard: read, finalize, sort, write
        data_dir = tmp / "data"
        data_dir.mkdir()
        code_counts: dict[str, int] = {}
        n_events = 0
        n_adm = 0
        family: dict[str, int] = {}
        staged = sorted(stager.writers)
        for k in tqdm(staged, desc="ingest shards", unit="shard", disable=not progress, leave=False):
            path = tmp / "_staging" / f"{k}.parquet"
            df = pl.read_parquet(path)
            path.unlink()
            df = src.finalize_shard(df)
            df = df.sort(["subject_id", "time"], nulls_last=False, maintain_order=True)
            # pyarrow writes plain `string` (MEDS), polars would write `large_string`
            stager._pq.write_table(
                df.to_arrow().cast(EVENTS_SCHEMA),
                data_dir / f"{k}.parquet",
                compression="zstd",
                row_group_size=1_000_000,
            )
            n_events += df.height
            vc = df.group_by("code").len()
            for c, n in vc.iter_rows():
                code_counts[c] = code_counts.get(c, 0) + n
            n_adm += df.filter(
                pl.col("code").str.starts_with("HOSPITAL_ADMISSION") & pl.col("hadm_id").is_not_null()
            )["hadm_id"].n_unique()
            del df
        (tmp / "_staging").rmdir()
        for c, n in code_counts.items():
            fam = c.split("//", 1)[0]
            family[fam] = family.get(fam, 0) + n

        # ---- metadata
        meta = tmp / "metadata"
        meta.mkdir()
        codes = pl.DataFrame({"code": sorted(code_counts)}, schema={"code": pl.String})
        codes = src.describe(codes)
        codes.write_parquet(meta / "codes.parquet", compression="zstd")
        splits = assign_splits(subject_ids, config.split_fractions, config.split_seed)
        pl.DataFrame({"subject_id": subject_ids, "split": splits}).write_parquet(
            meta / "subject_splits.parquet"
        )
        etl_version = _etl_version()

        write_json(
            {
                "dataset_name": config.dataset_name or input_dir.name,
                "dataset_version": "unknown",
                "etl_name": "ehr-hcl",
                "etl_version": str(etl_version),
                "meds_version": MEDS_VERSION,
                "source": source,
                "extension_columns": {"hadm_id": "int64: admission the event belongs to (null if none)"},
            },
            meta / "dataset.json",
        )
        quality = tmp / "quality"
        quality.mkdir()
        rej_all.write_parquet(quality / "rejects.parquet", compression="zstd")
        summary = {
            "source": source,
            "input": str(input_dir),
            "subjects": int(len(subject_ids)),
            "admissions": int(n_adm),
            "events": int(n_events),
            "events_per_family": dict(sorted(family.items())),
            "codes": int(len(code_counts)),
            "rows_read": dict(sorted(src.rows_read.items())),
            "rejects": {t: rej_counts.get(t, 0) for t in sorted(set(src.rows_read) | set(rej_counts))},
            "rejects_total": int(rej_all.height),
            "absent_tables": list(src.absent),
            "shards": len(staged),
            "splits": {s: int((splits == s).sum()) for s in ("train", "tuning", "held_out")},
        }
        write_json(summary, quality / "summary.json")
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _log_summary(summary)
    return summary


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

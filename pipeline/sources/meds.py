"""MEDS datasets: read an existing one (``source="meds"`` of ``ingest``) and scan an ingest output.

Tolerated differences between MEDS 0.3 and 0.4 and between ETLs: ``numeric_value`` or ``text_value``
absent (null), ``time`` in ns/ms (cast to us), static rows with a null ``time`` (kept first), extra columns
(dropped), ``metadata/codes.parquet`` absent or partial (descriptions kept where given). Where ``hadm_id``
is absent, admissions are recovered from ``HOSPITAL_ADMISSION//…`` and ``HOSPITAL_DISCHARGE//…`` events:
every event of a subject from an admission's time up to (and including) the next discharge time gets a
synthetic ``hadm_id = subject_id * 1000 + k`` (k = 1, 2, … per subject).

Downstream stages read an ingest output only through :func:`pipeline.events.read_events`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.events import _shard_key
from pipeline.exceptions import InputSchemaError
from pipeline.sources import EVENTS_POLARS, REJECTS_SCHEMA, open_parquet, to_events

log = logging.getLogger(__name__)

REQUIRED = {"subject_id": "integer", "time": "timestamp", "code": "string"}
OPTIONAL = ("numeric_value", "text_value", "hadm_id")


class MedsSource:
    """Reader of an existing MEDS dataset into the ingest contract (same interface as MimicIVSource)."""

    name = "meds"

    def __init__(self, input_dir: Path, batch_rows: int = 1_000_000):
        self.input_dir = Path(input_dir)
        self.batch_rows = batch_rows
        self.files: list[Path] = []
        self.absent: list[str] = []
        self.rows_read: dict[str, int] = {}
        self.has_hadm = True

    def check(self) -> None:
        """Every shard must have subject_id (integer), time (timestamp) and code (string)."""
        data = self.input_dir / "data"
        self.files = sorted(data.glob("**/*.parquet"), key=_shard_key) if data.is_dir() else []
        if not self.files:
            raise InputSchemaError(f"{data}: no MEDS shards (data/**/*.parquet); pass the MEDS dataset root")
        hadm = []
        for f in self.files:
            schema = open_parquet(f).schema_arrow
            for col, kind in REQUIRED.items():
                if col not in schema.names:
                    raise InputSchemaError(
                        f"{f}: column {col!r} is missing (found {', '.join(schema.names)}); a MEDS shard needs subject_id, time, code"
                    )
                t = schema.field(col).type
                ok = (
                    pa.types.is_integer(t)
                    if kind == "integer"
                    else pa.types.is_timestamp(t) or pa.types.is_date(t)
                    if kind == "timestamp"
                    else pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)
                )
                if not ok:
                    raise InputSchemaError(
                        f"{f}: column {col!r} has type {t}, expected {kind}; re-export the shard with MEDS types"
                    )
            if "numeric_value" in schema.names and not (
                pa.types.is_floating(schema.field("numeric_value").type)
                or pa.types.is_integer(schema.field("numeric_value").type)
                or pa.types.is_null(schema.field("numeric_value").type)
            ):
                raise InputSchemaError(
                    f"{f}: column 'numeric_value' has type {schema.field('numeric_value').type}, expected a float"
                )
            hadm.append("hadm_id" in schema.names)
        self.has_hadm = all(hadm)
        if not self.has_hadm:
            log.info(
                "meds: hadm_id absent in %d shard(s); admissions recovered from admission/discharge events",
                hadm.count(False),
            )

    def tables(self) -> list[str]:
        """List the input's data shards, as paths relative to the input folder."""
        return [f"data/{f.relative_to(self.input_dir / 'data')}" for f in self.files]

    def prepare(self) -> tuple[np.ndarray, list]:
        """Return the input's distinct subject ids, and no rejects."""
        ids = pl.scan_parquet(self.files).select(pl.col("subject_id").cast(pl.Int64)).unique().collect()
        return ids["subject_id"].drop_nulls().to_numpy(), []

    def iter_table(self, table: str) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        """Yield one shard's events and rejects, a record batch at a time (no subject_id or code: a reject)."""
        import pyarrow.parquet as pq

        path = self.input_dir / table
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        cols = [c for c in (*REQUIRED, *OPTIONAL) if c in names]
        row = 1
        for rb in pf.iter_batches(batch_size=self.batch_rows, columns=cols):
            df = pl.from_arrow(pa.Table.from_batches([rb]))
            df = df.with_columns(_row=pl.int_range(row, row + df.height, dtype=pl.Int64))
            row += df.height
            if "hadm_id" not in df.columns or not self.has_hadm:
                df = df.with_columns(hadm_id=pl.lit(None, dtype=pl.Int64))
            df = df.with_columns(pl.col("code").cast(pl.String), pl.col("time").cast(pl.Datetime("us")))
            bad = pl.col("subject_id").is_null() | pl.col("code").is_null()
            rej = (
                df.filter(bad)
                .select(
                    table=pl.lit(table),
                    row_number="_row",
                    reason=pl.when(pl.col("subject_id").is_null())
                    .then(pl.lit("missing subject_id"))
                    .otherwise(pl.lit("missing code")),
                    column=pl.when(pl.col("subject_id").is_null())
                    .then(pl.lit("subject_id"))
                    .otherwise(pl.lit("code")),
                    value=pl.lit(None, dtype=pl.String),
                    subject_id=pl.col("subject_id").cast(pl.Int64),
                )
                .cast(dict(REJECTS_SCHEMA))
            )
            yield to_events(df.filter(~bad)), rej
        self.rows_read[table] = row - 1

    def input_splits(self) -> pl.DataFrame | None:
        """Read the input's own ``metadata/subject_splits.parquet`` (subject_id, split), or None if absent.

        Kept as given, so results compare with other MEDS tools on the same split.
        """
        path = self.input_dir / "metadata" / "subject_splits.parquet"
        if not path.is_file():
            return None
        splits = pl.read_parquet(path)
        for col in ("subject_id", "split"):
            if col not in splits.columns:
                raise InputSchemaError(
                    f"{path}: column {col!r} is missing (found {splits.columns}); a MEDS split file has subject_id, split"
                )
        splits = splits.select(pl.col("subject_id").cast(pl.Int64), pl.col("split").cast(pl.String))
        dup = splits.filter(pl.col("subject_id").is_duplicated())
        if dup.height:
            raise InputSchemaError(
                f"{path}: subject_id {dup['subject_id'][0]} appears in more than one split; give each subject one split"
            )
        unknown = splits.filter(~pl.col("split").is_in(["train", "tuning", "held_out"]))
        if unknown.height:
            raise InputSchemaError(
                f"{path}: column 'split' has value {unknown['split'][0]!r}; use train, tuning or held_out"
            )
        log.info("meds: keeping the input's subject splits (%s)", path)
        return splits

    def finalize_shard(self, df: pl.DataFrame) -> pl.DataFrame:
        """Recover ``hadm_id`` from admission/discharge events when the input had none."""
        if self.has_hadm:
            return df
        return recover_admissions(df)

    def describe(self, codes: pl.DataFrame) -> pl.DataFrame:
        """Add ``description`` and ``parent_codes`` to ``codes``, from the input's own codes.parquet if any."""
        path = self.input_dir / "metadata" / "codes.parquet"
        out = codes.with_columns(
            description=pl.lit(None, dtype=pl.String), parent_codes=pl.lit([], dtype=pl.List(pl.String))
        )
        if path.exists():
            meta = pl.read_parquet(path)
            keep = [c for c in ("code", "description", "parent_codes") if c in meta.columns]
            if "code" in keep:
                meta = meta.select(keep).unique(subset="code", keep="first")
                out = out.drop([c for c in keep if c != "code"]).join(meta, on="code", how="left")
                if "parent_codes" in keep:
                    out = out.with_columns(
                        pl.col("parent_codes").fill_null(pl.lit([], dtype=pl.List(pl.String)))
                    )
                else:
                    out = out.with_columns(parent_codes=pl.lit([], dtype=pl.List(pl.String)))
                if "description" not in keep:
                    out = out.with_columns(description=pl.lit(None, dtype=pl.String))
        return out.select(
            "code", pl.col("description").cast(pl.String), pl.col("parent_codes").cast(pl.List(pl.String))
        ).sort("code")


def recover_admissions(df: pl.DataFrame) -> pl.DataFrame:
    """Set ``hadm_id`` from admission/discharge events (see module docstring); other columns unchanged."""
    df = df.sort(["subject_id", "time"], nulls_last=False, maintain_order=True).with_row_index("_i")
    adm = (
        df.filter(pl.col("code").str.starts_with("HOSPITAL_ADMISSION") & pl.col("time").is_not_null())
        .select("subject_id", _start="time")
        .unique(maintain_order=True)
        .with_columns(_k=pl.int_range(1, pl.len() + 1).over("subject_id"))
    )
    dis = (
        df.filter(pl.col("code").str.starts_with("HOSPITAL_DISCHARGE") & pl.col("time").is_not_null())
        .select("subject_id", _end="time")
        .unique()
        .sort("subject_id", "_end")
    )
    adm = adm.sort("subject_id", "_start").join_asof(
        dis, left_on="_start", right_on="_end", by="subject_id", strategy="forward", check_sortedness=False
    )
    timed = df.filter(pl.col("time").is_not_null()).sort("subject_id", "time")
    tagged = timed.join_asof(
        adm.sort("subject_id", "_start"),
        left_on="time",
        right_on="_start",
        by="subject_id",
        strategy="backward",
        check_sortedness=False,
    ).with_columns(
        hadm_id=pl.when(
            pl.col("_k").is_not_null() & (pl.col("_end").is_null() | (pl.col("time") <= pl.col("_end")))
        )
        .then(pl.col("subject_id") * 1000 + pl.col("_k"))
        .otherwise(pl.lit(None, dtype=pl.Int64))
    )
    # discharge-stamped codes (discharge, ICD, DRG) belong to the stay that ends at their time, even when the
    # next stay starts at that same instant
    ends = (
        adm.filter(pl.col("_end").is_not_null())
        .select("subject_id", time="_end", _by_end=pl.col("subject_id") * 1000 + pl.col("_k"))
        .unique(subset=["subject_id", "time"], keep="first")
    )
    at_end = pl.col("code").str.contains(r"^(HOSPITAL_DISCHARGE|DIAGNOSIS|PROCEDURE|DRG)(//|$)")
    tagged = tagged.join(ends, on=["subject_id", "time"], how="left").with_columns(
        hadm_id=pl.when(at_end & pl.col("_by_end").is_not_null()).then("_by_end").otherwise("hadm_id")
    )
    out = pl.concat(
        [df.filter(pl.col("time").is_null()), tagged.select(df.columns)], how="vertical_relaxed"
    ).sort("_i")
    return out.drop("_i").select(list(EVENTS_POLARS))

"""The one reader of an ingest output's MEDS events (``<events>/data/*.parquet``).

``cohort``, ``features`` and ``audit`` read events only through :func:`read_events`, so the shard order,
the column checks and the dtypes are decided here once.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from pipeline.exceptions import InputSchemaError, MissingInputError

__all__ = ["EVENTS_POLARS", "read_events"]

#: the events contract of :data:`pipeline.schema.EVENTS_SCHEMA`, as polars dtypes
EVENTS_POLARS = pl.Schema(
    {
        "subject_id": pl.Int64,
        "time": pl.Datetime("us"),
        "code": pl.String,
        "numeric_value": pl.Float32,
        "text_value": pl.String,
        "hadm_id": pl.Int64,
    }
)
#: columns every MEDS dataset has; the others are filled with nulls where absent
_ALWAYS_REQUIRED = ("subject_id", "time", "code")


def read_events(
    events_dir: str | os.PathLike,
    columns: list[str] | tuple[str, ...] | None = None,
    require: tuple[str, ...] = (),
) -> pl.LazyFrame:
    """Lazily scan the events of an ingest output, typed as :data:`EVENTS_POLARS`.

    Parameters
    ----------
    events_dir : path
        The ingest output folder (holding ``data/*.parquet``).
    columns : sequence of str, optional
        Columns to return, in this order (default: all of :data:`EVENTS_POLARS`). An optional column the
        shards lack (``numeric_value``, ``text_value``, ``hadm_id``) comes back as typed nulls.
    require : tuple of str, optional
        Optional columns the caller cannot do without (e.g. ``("hadm_id",)`` for cohorts).

    Returns
    -------
    polars.LazyFrame
        Events sorted by ``(subject_id, time)`` within each shard; shards in natural (subject) order.

    Raises
    ------
    MissingInputError
        ``<events_dir>/data`` holds no parquet shard.
    InputSchemaError
        A requested column is not an event column, or a required one is missing or of the wrong type.
    """
    events_dir = Path(events_dir)
    data = events_dir / "data"
    files = sorted(data.glob("**/*.parquet"), key=_shard_key) if data.is_dir() else []
    if not files:
        raise MissingInputError(f"{data}: no event shards (*.parquet) found; run `ehr-hcl ingest` first")
    columns = list(EVENTS_POLARS) if columns is None else list(columns)
    unknown = [c for c in columns if c not in EVENTS_POLARS]
    if unknown:
        raise InputSchemaError(
            f"{events_dir}: column {unknown[0]!r} is not an event column (choose from {list(EVENTS_POLARS)})"
        )
    lf = pl.scan_parquet(files)
    found = lf.collect_schema()
    for col in (*_ALWAYS_REQUIRED, *require):
        if col not in found:
            raise InputSchemaError(
                f"{data}: column {col!r} is missing from the MEDS events (found {list(found)}); "
                "re-run `ehr-hcl ingest`"
            )
        if not _compatible(found[col], EVENTS_POLARS[col]):
            raise InputSchemaError(
                f"{data}: column {col!r} has type {found[col]}, expected {EVENTS_POLARS[col]}; "
                "re-run `ehr-hcl ingest`"
            )
    return lf.select(
        pl.col(c).cast(EVENTS_POLARS[c]) if c in found else pl.lit(None, dtype=EVENTS_POLARS[c]).alias(c)
        for c in columns
    )


def _compatible(found: pl.DataType, expected: pl.DataType) -> bool:
    """Whether a stored dtype can stand for the contract's (any time unit for ``time``)."""
    if isinstance(expected, pl.Datetime):
        return isinstance(found, pl.Datetime)
    if expected == pl.Int64:
        return found.is_integer()
    if expected == pl.Float32:
        return found.is_numeric()
    return found == expected or (expected == pl.String and found in (pl.String, pl.Categorical))


def _shard_key(p: Path) -> list[tuple[int, int, str]]:
    """Natural order of shard paths: ``2.parquet`` before ``10.parquet``."""
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in p.with_suffix("").parts]

"""EHR sources: the only modules that know raw source schemas.

- :mod:`pipeline.sources.synthetic` writes MIMIC-IV-shaped tables from a known hierarchical latent model;
- :mod:`pipeline.sources.mimic_iv` turns the MIMIC-IV CSV/parquet layout into MEDS events;
- :mod:`pipeline.sources.meds` reads an existing MEDS dataset and scans an ingest output
  (:func:`pipeline.events.read_events`).

This module holds what the readers share: streaming batch readers for ``.csv.gz`` / ``.csv`` / parquet
(bounded memory: one block at a time), typed parsing of string columns that separates *schema* problems
(a column of the wrong type throughout, a missing column, an empty or truncated file: raised as
:class:`~pipeline.exceptions.InputSchemaError`) from *row* problems (returned as reject rows).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.events import EVENTS_POLARS
from pipeline.exceptions import InputSchemaError

REJECTS_SCHEMA = pl.Schema(
    {
        "table": pl.String,
        "row_number": pl.Int64,  # 1-based data row in its file (header excluded)
        "reason": pl.String,
        "column": pl.String,
        "value": pl.String,  # offending raw value; never note text
        "subject_id": pl.Int64,
    }
)

#: column kinds understood by :func:`parse_columns`
INT, FLOAT, DATETIME, DATE, STRING = "int", "float", "datetime", "date", "string"
_DT_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_KIND_WORDS = {INT: "an integer", FLOAT: "a finite number", DATETIME: "a timestamp", DATE: "a date"}


def empty_events() -> pl.DataFrame:
    """Return an events frame with no rows and the events schema."""
    return pl.DataFrame(schema=EVENTS_POLARS)


def empty_rejects() -> pl.DataFrame:
    """Return a rejects frame with no rows and the rejects schema."""
    return pl.DataFrame(schema=REJECTS_SCHEMA)


def find_table(root: Path, rel: str) -> Path | None:
    """``root/rel`` with the first existing suffix among ``.csv.gz``, ``.csv``, ``.parquet``."""
    for suffix in (".csv.gz", ".csv", ".parquet"):
        p = Path(root) / f"{rel}{suffix}"
        if p.exists():
            return p
    return None


@dataclass
class Batch:
    """One block of a raw table: the data and the 1-based row number of its first row in the file."""

    df: pl.DataFrame
    first_row: int


@dataclass
class TableReader:
    """Streams a raw table in blocks, with the columns in ``kinds`` checked and parsed.

    Parameters
    ----------
    path : Path
        ``.csv.gz``, ``.csv`` or ``.parquet`` file.
    kinds : dict[str, str]
        Column -> kind (:data:`INT`, :data:`FLOAT`, :data:`DATETIME`, :data:`DATE`, :data:`STRING`); every
        listed column must exist.
    secret : set[str]
        Columns whose values must never appear in messages (note text).
    block_size : int
        Bytes per CSV block (bounded memory).
    """

    path: Path
    kinds: dict[str, str]
    secret: set[str] = field(default_factory=set)
    block_size: int = 16 << 20
    multiline: bool = False

    def header(self) -> list[str]:
        """Column names; raises InputSchemaError on an empty, unreadable or header-only file."""
        p = self.path
        if p.suffix == ".parquet":
            md = open_parquet(p)
            if md.metadata.num_rows == 0:
                raise InputSchemaError(f"{p}: table has no rows; supply the full table or remove the file")
            return md.schema_arrow.names
        try:
            opener = gzip.open if p.name.endswith(".gz") else open
            with opener(p, "rb") as fh:
                first = fh.readline()
                second = fh.readline()
        except (OSError, EOFError, zlib.error) as exc:
            raise InputSchemaError(
                f"{p}: cannot read the file ({_short(exc)}); is it a complete gzip/CSV file?"
            ) from None
        if not first.strip():
            raise InputSchemaError(f"{p}: file is empty; supply the full table (with its header row)")
        if not second.strip():
            raise InputSchemaError(
                f"{p}: table has a header but no rows; supply the full table or remove the file"
            )
        return [c.strip().strip('"') for c in first.decode("utf-8", "replace").rstrip("\r\n").split(",")]

    def check_columns(self) -> list[str]:
        """Return the header, after checking that every expected column is in it."""
        names = self.header()
        missing = [c for c in self.kinds if c not in names]
        if missing:
            raise InputSchemaError(
                f"{self.path}: column {missing[0]!r} is missing (found {', '.join(names[:12])}"
                f"{', ...' if len(names) > 12 else ''}); supply a table with the MIMIC-IV columns"
            )
        return names

    def check(self) -> None:
        """Columns present, and no column of the wrong type throughout (judged on the first ~1 MiB)."""
        probe = TableReader(self.path, self.kinds, self.secret, block_size=1 << 20, multiline=self.multiline)
        gen = probe.batches(check_types=True)
        next(gen, None)
        gen.close()

    def batches(self, check_types: bool = False) -> Iterator[Batch]:
        """Yield raw blocks (optionally checking the first block for columns of the wrong type throughout)."""
        names = self.check_columns()
        cols = list(self.kinds)
        row = 1
        first = True
        try:
            for df in self._raw_batches(names, cols):
                if df.height == 0:
                    continue
                if first and check_types:
                    self._check_types(df)
                    first = False
                yield Batch(df, row)
                row += df.height
        except (pa.ArrowInvalid, OSError, EOFError, zlib.error, pl.exceptions.PolarsError) as exc:
            if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
                # an encoding problem, not a damaged file; the bytes are not shown (they may be note text)
                raise InputSchemaError(
                    f"{self.path}: text is not valid UTF-8 (in the block starting at data row {row}); "
                    "re-export the table as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
                ) from None
            raise InputSchemaError(
                f"{self.path}: the file is truncated or corrupt near data row {row} ({_short(exc)}); "
                "re-download or re-export it"
            ) from None

    def _raw_batches(self, names: list[str], cols: list[str]) -> Iterator[pl.DataFrame]:
        if self.path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(self.path)
            for rb in pf.iter_batches(batch_size=500_000, columns=cols):
                yield pl.from_arrow(pa.Table.from_batches([rb]))
            return
        # CSV: decompress a fixed number of bytes at a time, cut at the last line end outside quotes, and
        # parse that slice alone (all columns as strings). Memory is bounded by the block size whatever the
        # file size (pyarrow's streaming CSV reader was measured to grow with the file under a slow consumer).
        stream = (
            pa.CompressedInputStream(pa.OSFile(str(self.path)), "gzip")
            if self.path.name.endswith(".gz")
            else pa.OSFile(str(self.path))
        )
        schema = {c: pl.String for c in names}
        # one background thread decompresses the next block while this one is parsed and converted
        with stream, ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-read") as pool:
            header = b""
            while b"\n" not in header:
                more = stream.read(min(1 << 16, self.block_size))
                if not more:
                    break
                header += more
            header, _, rest = header.partition(b"\n")
            header += b"\n"
            pending = pool.submit(stream.read, self.block_size)
            while True:
                chunk = pending.result()
                if chunk:
                    pending = pool.submit(stream.read, self.block_size)
                buf = rest + chunk
                if not buf:
                    return
                if chunk:
                    cut = buf.rfind(b"\n") + 1
                    # a line end inside a quoted field (note text) is not a row end: step back to one outside
                    odd = buf.count(b'"', 0, cut) % 2
                    while cut and odd:
                        prev = buf.rfind(b"\n", 0, cut - 1) + 1
                        odd ^= buf.count(b'"', prev, cut) % 2
                        cut = prev
                    if cut == 0:
                        rest = buf
                        continue
                    buf, rest = buf[:cut], buf[cut:]
                else:
                    rest = b""
                yield pl.read_csv(header + buf, schema=schema, columns=cols, has_header=True)

    def _check_types(self, df: pl.DataFrame) -> None:
        for col, kind in self.kinds.items():
            if kind == STRING:
                continue
            raw = df[col]
            parsed = parse_series(raw, kind)
            nonnull = raw.is_not_null()
            if nonnull.any() and not (parsed.is_not_null() & nonnull).any():
                bad = raw.filter(nonnull)[0]
                shown = "<hidden>" if col in self.secret else repr(str(bad))
                raise InputSchemaError(
                    f"{self.path}: column {col!r} should hold {_KIND_WORDS[kind]} but no value parses "
                    f"(first value {shown}, dtype {raw.dtype}); fix the column type or the export"
                )


def open_parquet(path: Path):
    """``pyarrow.parquet.ParquetFile`` of ``path``; InputSchemaError naming the file when it is not parquet."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputSchemaError(f"{path}: not a readable parquet file ({_short(exc)}); re-export it") from None


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def parse_series(s: pl.Series, kind: str) -> pl.Series:
    """Parse a raw column to ``kind``; unparseable values become null (the caller rejects them)."""
    dt = s.dtype
    if kind == STRING:
        return s.cast(pl.String)
    if kind == INT:
        if dt == pl.String:
            return s.str.strip_chars().cast(pl.Int64, strict=False)
        if dt.is_integer():
            return s.cast(pl.Int64)
        if dt.is_float():
            return s.cast(pl.Int64, strict=False).set(
                s.cast(pl.Int64, strict=False).cast(pl.Float64) != s, None
            )
        return pl.Series(s.name, [None] * len(s), dtype=pl.Int64)
    if kind == FLOAT:
        if dt == pl.String:
            out = s.str.strip_chars().cast(pl.Float64, strict=False)
        elif dt.is_numeric():
            out = s.cast(pl.Float64)
        else:
            return pl.Series(s.name, [None] * len(s), dtype=pl.Float64)
        # NaN and +-inf are not measurements: null them so the caller rejects the row (counted, warned)
        return out.set(~out.is_finite().fill_null(True), None)
    # DATETIME / DATE
    if dt == pl.String:
        out = s.str.to_datetime(format=_DT_FORMATS[0], time_unit="us", strict=False, exact=True)
        if out.null_count() == s.null_count():  # the usual case: one pass
            return out.alias(s.name)
        st = s.str.strip_chars()
        for fmt in _DT_FORMATS:
            out = out.fill_null(st.str.to_datetime(format=fmt, time_unit="us", strict=False, exact=True))
        return out.alias(s.name)
    if dt == pl.Date or isinstance(dt, pl.Datetime):
        return s.cast(pl.Datetime("us"))
    return pl.Series(s.name, [None] * len(s), dtype=pl.Datetime("us"))


def parse_columns(
    batch: Batch, table: str, kinds: dict[str, str], required: set[str], secret: set[str] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse ``kinds`` columns of a raw batch; rows with an unparseable or missing required value are rejected.

    Returns
    -------
    (good, rejects) : tuple of polars.DataFrame
        ``good`` has the parsed columns plus ``_row`` (1-based row number); ``rejects`` follows
        :data:`REJECTS_SCHEMA`.
    """
    secret = secret or set()
    df = batch.df
    n = df.height
    row = pl.Series("_row", np.arange(batch.first_row, batch.first_row + n, dtype=np.int64))
    parsed = {c: parse_series(df[c], k) for c, k in kinds.items()}
    reason = pl.Series("reason", dtype=pl.String).extend_constant(None, n)
    column = pl.Series("column", dtype=pl.String).extend_constant(None, n)
    value = pl.Series("value", dtype=pl.String).extend_constant(None, n)
    for c, k in kinds.items():
        raw_nonnull = df[c].is_not_null()
        unparseable = raw_nonnull & parsed[c].is_null()
        missing = ~raw_nonnull if c in required else pl.Series(dtype=pl.Boolean).extend_constant(False, n)
        hit = (unparseable | missing) & reason.is_null()
        if not hit.any():
            continue
        why_np = np.where(
            unparseable.to_numpy(), f"unparseable {c} (expected {_KIND_WORDS.get(k, k)})", f"missing {c}"
        )
        if k in (DATETIME, DATE):  # name the usual cause: a timezone-aware export mixed into local times
            tz = df[c].cast(pl.String).str.contains(r"(Z|[+-]\d{2}:?\d{2})$").fill_null(False)
            why_np = np.where(
                (unparseable & tz).to_numpy(), f"timezone offset in {c} (expected local time)", why_np
            )
        why = pl.Series(why_np)
        reason = reason.zip_with(~hit, why)
        column = column.zip_with(~hit, pl.Series(dtype=pl.String).extend_constant(c, n))
        shown = (
            df[c].cast(pl.String) if c not in secret else pl.Series(dtype=pl.String).extend_constant(None, n)
        )
        value = value.zip_with(~hit, shown)
    good = pl.DataFrame({**parsed, "_row": row})
    bad_mask = reason.is_not_null()
    sid = parsed.get("subject_id", pl.Series([None] * n, dtype=pl.Int64))
    rejects = pl.DataFrame(
        {
            "table": [table] * int(bad_mask.sum()),
            "row_number": row.filter(bad_mask),
            "reason": reason.filter(bad_mask),
            "column": column.filter(bad_mask),
            "value": value.filter(bad_mask),
            "subject_id": sid.filter(bad_mask),
        },
        schema=REJECTS_SCHEMA,
    )
    return good.filter(~bad_mask), rejects


def make_rejects(
    df: pl.DataFrame, table: str, reason: str, column: str, value: pl.Expr | None = None
) -> pl.DataFrame:
    """Reject rows of a parsed frame (with ``_row`` and ``subject_id``) for one ``reason``."""
    return df.select(
        pl.lit(table).alias("table"),
        pl.col("_row").cast(pl.Int64).alias("row_number"),
        pl.lit(reason).alias("reason"),
        pl.lit(column).alias("column"),
        (value if value is not None else pl.col(column).cast(pl.String)).cast(pl.String).alias("value"),
        pl.col("subject_id").cast(pl.Int64),
    )


def to_events(df: pl.DataFrame) -> pl.DataFrame:
    """Select and cast the event columns (missing ones become null)."""
    exprs = []
    for name, dtype in EVENTS_POLARS.items():
        exprs.append((pl.col(name) if name in df.columns else pl.lit(None)).cast(dtype).alias(name))
    return df.select(exprs)

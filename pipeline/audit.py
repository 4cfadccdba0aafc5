"""The leakage audit: run after ``features`` (and as ``ehr-hcl audit``); fails the pipeline loudly.

Checks, each raising :class:`~pipeline.exceptions.LeakageError` with a one-line message (row numbers, never
subject or admission ids):

1. no subject appears in two splits;
2. no label-defining event (outcome or competing event) at or before its row's prediction time, as the
   labels themselves record it (``event_time_days > 0``);
3. features: ``provenance.parquet`` has the labels' row count (and, where it carries subject_id /
   prediction_time, the same rows in the same order); for every modality of ``mask.parquet``,
   ``<modality>__max_time <= prediction_time`` (and ``<modality>__min_time >= prediction_time - lookback``
   where that column exists and the cohort has a lookback);
4. with the events folder: recomputed from the raw events, no death of the subject, no discharge of the
   index stay (in-hospital mortality) and no readmission used by the label (readmission) lies at or before
   the prediction time. The cohort definition is read from ``cohort.yaml`` beside ``labels.parquet``.

The audit writes nothing; it returns a summary dict.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import schema
from pipeline.exceptions import InputSchemaError, LeakageError, MissingInputError

log = logging.getLogger(__name__)


def _read(path: Path, what: str, stage: str) -> pl.DataFrame:
    if not path.exists():
        raise MissingInputError(f"{path}: {what} not found; run `ehr-hcl {stage}` first")
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise InputSchemaError(
            f"{path}: cannot read {what} ({type(exc).__name__}); re-run `ehr-hcl {stage}`"
        ) from None


def _require(df: pl.DataFrame, cols: list[str], path: Path, stage: str) -> None:
    for col in cols:
        if col not in df.columns:
            raise InputSchemaError(f"{path}: column {col!r} is missing; re-run `ehr-hcl {stage}`")


def _rows(mask: pl.Series, limit: int = 5) -> str:
    idx = mask.arg_true().to_list()
    shown = ", ".join(str(i) for i in idx[:limit])
    return f"{len(idx)} row(s) (row numbers {shown}{', ...' if len(idx) > limit else ''})"


def check_splits(labels: pl.DataFrame, path: Path) -> None:
    """Raise if a subject has rows in more than one split."""
    n_split = labels.group_by("subject_id").agg(pl.col("split").n_unique().alias("n"))
    bad = n_split.filter(pl.col("n") > 1).height
    if bad:
        raise LeakageError(
            f"{path}: split: {bad} subject(s) appear in more than one split; rebuild the cohort with `ehr-hcl cohort`"
        )
    unknown = sorted(set(labels.get_column("split").drop_nulls().unique().to_list()) - set(schema.SPLITS))
    if unknown or labels.get_column("split").null_count():
        raise LeakageError(f"{path}: split: values {unknown or [None]} are not one of {list(schema.SPLITS)}")


def check_label_times(labels: pl.DataFrame, path: Path) -> None:
    """Raise if a row's outcome/competing event is recorded at or before its prediction time."""
    if "event_type" not in labels.columns or "event_time_days" not in labels.columns:
        return
    bad = labels.select(
        (pl.col("event_type").is_in(["outcome", "competing"]) & (pl.col("event_time_days") <= 0)).fill_null(
            False
        )
    ).to_series()
    if bad.any():
        raise LeakageError(
            f"{path}: event_time_days: {_rows(bad)} have their label-defining event at or before prediction_time "
            "(inside the input window); rebuild the cohort"
        )


def check_provenance(
    labels: pl.DataFrame, features_dir: Path, lookback: Any = "all"
) -> dict[str, dict[str, int]]:
    """Raise if any feature event of any modality is later than its row's prediction time.

    Returns ``{modality: {"rows_with_events": n, "events": n}}``.
    """
    prov_path, mask_path = features_dir / "provenance.parquet", features_dir / "mask.parquet"
    prov = _read(prov_path, "feature provenance", "features")
    mask = _read(mask_path, "modality mask", "features")
    if prov.height != labels.height or mask.height != labels.height:
        raise LeakageError(
            f"{prov_path}: {prov.height} provenance rows and {mask.height} mask rows for {labels.height} label rows; "
            "features are not row-aligned with the labels: re-run `ehr-hcl features`"
        )
    for col in ("subject_id", "prediction_time"):
        if col in prov.columns:
            differs = prov.get_column(col).cast(labels.schema[col]) != labels.get_column(col)
            if differs.fill_null(True).any():
                raise LeakageError(
                    f"{prov_path}: {col}: {_rows(differs.fill_null(True))} differ from labels.parquet; features are "
                    "not row-aligned with the labels: re-run `ehr-hcl features`"
                )
    pred = labels.get_column("prediction_time").cast(pl.Datetime("us"))
    out: dict[str, dict[str, int]] = {}
    for modality in mask.columns:
        max_col, n_col, min_col = f"{modality}__max_time", f"{modality}__n_events", f"{modality}__min_time"
        _require(prov, [max_col], prov_path, "features")
        max_time = prov.get_column(max_col).cast(pl.Datetime("us"))
        late = (max_time > pred).fill_null(False)
        if late.any():
            worst = (max_time - pred).filter(late).max()
            raise LeakageError(
                f"{prov_path}: {max_col}: {_rows(late)} use an event after prediction_time (up to {worst} later); "
                "features must only use events with time <= prediction_time: fix and re-run `ehr-hcl features`"
            )
        if n_col in prov.columns:
            unknown = ((prov.get_column(n_col) > 0) & max_time.is_null()).fill_null(False)
            if unknown.any():
                raise LeakageError(
                    f"{prov_path}: {max_col}: {_rows(unknown)} have {n_col} > 0 but no max_time, so their event "
                    "times cannot be checked against prediction_time; fix and re-run `ehr-hcl features`"
                )
        if lookback != "all" and min_col in prov.columns:
            early = (prov.get_column(min_col).cast(pl.Datetime("us")) < pred - lookback).fill_null(False)
            if early.any():
                raise LeakageError(
                    f"{prov_path}: {min_col}: {_rows(early)} use an event before prediction_time - history.lookback "
                    f"({lookback}); re-run `ehr-hcl features`"
                )
        n_events = int(prov.get_column(n_col).sum()) if n_col in prov.columns else -1
        out[modality] = {"rows_with_events": int(max_time.is_not_null().sum()), "events": n_events}
    return out


def check_events(labels: pl.DataFrame, events_dir: Path, spec: Any, path: Path) -> list[str]:
    """Recompute the label-defining events from the raw events; raise if one is at/before prediction time."""
    from pipeline.events import read_events

    events = read_events(events_dir).select("subject_id", "time", "code", "hadm_id")
    rows = labels.select(
        "subject_id", "hadm_id", pl.col("prediction_time").cast(pl.Datetime("us"))
    ).with_row_index("_row")
    subjects = rows.get_column("subject_id").unique().implode()
    ev = (
        events.filter(pl.col("subject_id").is_in(subjects))
        .filter(
            (pl.col("code") == schema.DEATH)
            | pl.col("code").str.starts_with(schema.ADMISSION + "//")
            | pl.col("code").str.starts_with(schema.DISCHARGE + "//")
        )
        .collect()
    )
    checks = []

    deaths = (
        ev.filter(pl.col("code") == schema.DEATH).group_by("subject_id").agg(pl.col("time").min().alias("t"))
    )
    hit = rows.join(deaths, on="subject_id", how="left").sort("_row")
    bad = (hit.get_column("t") <= hit.get_column("prediction_time")).fill_null(False)
    if bad.any():
        raise LeakageError(
            f"{path}: prediction_time: {_rows(bad)} have a MEDS_DEATH event at or before prediction_time "
            f"(inside the input window; events in {events_dir}); rebuild the cohort"
        )
    checks.append("no death at or before prediction_time")
    if spec is None:
        return checks

    disch = (
        ev.filter(pl.col("code").str.starts_with(schema.DISCHARGE + "//") & pl.col("hadm_id").is_not_null())
        .group_by("subject_id", "hadm_id")
        .agg(pl.col("time").max().alias("disch_time"))
    )
    with_disch = rows.join(disch, on=["subject_id", "hadm_id"], how="left").sort("_row")
    if spec.outcome.type == "death_before_discharge":
        bad = (with_disch.get_column("disch_time") <= with_disch.get_column("prediction_time")).fill_null(
            False
        )
        if bad.any():
            raise LeakageError(
                f"{path}: prediction_time: {_rows(bad)} have the index stay's discharge (which defines the "
                "in-hospital mortality label) at or before prediction_time; rebuild the cohort"
            )
        checks.append("index discharge after prediction_time")
    else:
        adm = (
            ev.filter(
                pl.col("code").str.starts_with(schema.ADMISSION + "//") & pl.col("hadm_id").is_not_null()
            )
            .with_columns(pl.col("code").str.strip_prefix(schema.ADMISSION + "//").alias("atype"))
            .filter(~pl.col("atype").is_in(spec.outcome.not_counted_admission_types))
            .select("subject_id", pl.col("time").alias("t_readmit"))
            .sort("subject_id", "t_readmit")
        )
        nxt = (
            with_disch.filter(pl.col("disch_time").is_not_null())
            .sort("subject_id", "disch_time")
            .join_asof(
                adm,
                left_on="disch_time",
                right_on="t_readmit",
                by="subject_id",
                strategy="forward",
                check_sortedness=False,
            )
            .sort("_row")
        )
        bad_rows = nxt.filter((pl.col("t_readmit") <= pl.col("prediction_time")).fill_null(False))
        if bad_rows.height:
            mask = rows.get_column("_row").is_in(bad_rows.get_column("_row").implode())
            raise LeakageError(
                f"{path}: prediction_time: {_rows(mask)} have the readmission that defines the label at or before "
                "prediction_time; rebuild the cohort"
            )
        checks.append("readmission after prediction_time")
    return checks


def audit(labels_path: Path, features_dir: Path | None, events_dir: Path | None = None) -> dict:
    """Check a cohort's labels and features for leakage; raise :class:`LeakageError` on any violation.

    Parameters
    ----------
    labels_path : Path
        ``labels.parquet`` from ``ehr-hcl cohort`` (``cohort.yaml`` beside it is read when present).
    features_dir : Path or None
        Folder with ``provenance.parquet`` and ``mask.parquet`` from ``ehr-hcl features``; None skips
        the feature checks.
    events_dir : Path, optional
        The MEDS events folder; when given, label-defining events are recomputed from it.

    Returns
    -------
    dict
        ``rows, subjects, splits {split: rows}, modalities {modality: {rows_with_events, events}}, checks``.

    Raises
    ------
    LeakageError
        Information from after the prediction time, or a subject in two splits.
    MissingInputError, InputSchemaError
        An input file is absent or malformed.
    """
    labels_path = Path(labels_path)
    labels = _read(labels_path, "labels", "cohort")
    _require(labels, ["subject_id", "hadm_id", "prediction_time", "split"], labels_path, "cohort")
    checks: list[str] = []

    check_splits(labels, labels_path)
    checks.append("no subject in two splits")
    check_label_times(labels, labels_path)
    checks.append("label-defining events after prediction_time (labels)")

    spec = None
    spec_path = labels_path.parent / "cohort.yaml"
    if spec_path.exists():
        from pipeline.cohort.spec import parse_spec
        from pipeline.params import read_yaml

        spec = parse_spec(read_yaml(spec_path), str(spec_path))
    lookback = spec.history.lookback if spec is not None else "all"

    modalities: dict[str, dict[str, int]] = {}
    if features_dir is not None:
        modalities = check_provenance(labels, Path(features_dir), lookback)
        checks.append("feature events at or before prediction_time")
    if events_dir is not None:
        checks += check_events(labels, Path(events_dir), spec, labels_path)

    splits = dict(labels.group_by("split").len().iter_rows())
    summary = {
        "rows": labels.height,
        "subjects": labels.get_column("subject_id").n_unique(),
        "splits": {s: int(splits.get(s, 0)) for s in schema.SPLITS},
        "modalities": modalities,
        "checks": checks,
    }
    log.info("audit passed: %d rows, %d checks: %s", labels.height, len(checks), "; ".join(checks))
    return summary


__all__ = ["audit", "check_events", "check_label_times", "check_provenance", "check_splits"]

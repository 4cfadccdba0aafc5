"""The features stage: labels + MEDS events → one row-aligned matrix per modality, a mask and provenance.

For every label row, an event may feed the row only if it belongs to the row's subject and its ``time`` (when
the fact became available) is ``<= prediction_time`` — and, when a lookback is set, ``>= prediction_time -
lookback``. This is one polars join on ``subject_id`` followed by a filter on time, per modality; no Python
loop over rows. Everything learned (vocabularies, lab item choice, standardisation, the TF-IDF/SVD note
encoder) is fit on rows with ``split == "train"`` only.
"""

from __future__ import annotations

import logging
import time as _time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.cohort.labels import cohort_spec_path, read_cohort_spec, read_labels
from pipeline.events import read_events
from pipeline.exceptions import CohortError
from pipeline.features.codes import ModalityMatrix, aggregate_codes, build_codes
from pipeline.features.fitted import read_fitted, write_fitted
from pipeline.features.labs import LAB_STATS, aggregate_labs, build_labs
from pipeline.features.medications import aggregate_medications, build_medications
from pipeline.features.notes import build_notes
from pipeline.io import atomic_dir, write_json, write_parquet
from pipeline.schema import MODALITIES

logger = logging.getLogger(__name__)

Modality = Literal["codes", "labs", "medications", "notes"]
LabStat = Literal["last", "mean", "min", "max", "count", "hours_since_last"]


class CodesConfig(BaseModel):
    """``features.codes`` in params.yaml."""

    model_config = ConfigDict(extra="forbid")
    weighting: Literal["counts", "tfidf"] = "counts"
    min_count: int = Field(5, ge=1, description="train rows a code must appear in")
    max_width: int = Field(512, ge=1, description="maximum number of code columns")
    icd_rollup: bool = Field(True, description="ICD-10 to 3 characters, ICD-9 to its category")


class LabsConfig(BaseModel):
    """``features.labs`` in params.yaml."""

    model_config = ConfigDict(extra="forbid")
    max_items: int = Field(50, ge=1)
    min_count: int = Field(5, ge=1, description="train rows a lab item must appear in")
    stats: list[LabStat] = Field(default_factory=lambda: list(LAB_STATS), min_length=1)
    missing_indicators: bool = True
    window_hours: float | None = Field(
        None, gt=0, description="only results this recent; None = whole history"
    )

    @field_validator("stats")
    @classmethod
    def _unique_stats(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate statistic in {value}")
        return value


class MedicationsConfig(BaseModel):
    """``features.medications`` in params.yaml."""

    model_config = ConfigDict(extra="forbid")
    min_count: int = Field(5, ge=1)
    max_width: int = Field(256, ge=1)
    log_counts: bool = False


class NotesConfig(BaseModel):
    """``features.notes`` in params.yaml."""

    model_config = ConfigDict(extra="forbid")
    encoder: Literal["minilm", "tfidf"] = "minilm"
    tfidf_dims: int = Field(64, ge=1)
    tfidf_max_features: int = Field(20000, ge=10)
    tfidf_fit_max_notes: int = Field(
        20000, ge=2, description="train notes the TF-IDF + SVD is fit on (subsample)"
    )
    batch_size: int = Field(32, ge=1)
    max_chunks_per_note: int = Field(8, ge=1)
    chunking: Literal["sentence", "window"] = Field(
        "sentence",
        description=(
            "MiniLM only: 'sentence' embeds each distinct sentence once and averages them per note "
            "(word-count weighted); 'window' embeds whole notes in consecutive token windows"
        ),
    )
    sentence_batch_size: int = Field(
        128,
        ge=1,
        description="MiniLM sentence mode: sentences per forward pass (short inputs, so larger than batch_size)",
    )
    random_state: int = 0


class FeaturesConfig(BaseModel):
    """The ``features`` section of params.yaml (every field has a default)."""

    model_config = ConfigDict(extra="forbid")
    modalities: list[Modality] = Field(default_factory=lambda: list(MODALITIES), min_length=1)
    lookback_days: float | None = Field(
        None,
        gt=0,
        description="history window; None = the cohort's (cohort.yaml beside labels) or all history",
    )
    codes: CodesConfig = Field(default_factory=CodesConfig)
    labs: LabsConfig = Field(default_factory=LabsConfig)
    medications: MedicationsConfig = Field(default_factory=MedicationsConfig)
    notes: NotesConfig = Field(default_factory=NotesConfig)
    cache_dir: str = "data/cache/notes"
    join_batch_rows: int = Field(
        20000,
        ge=1,
        description="label rows joined to their events at a time (bounds memory; no effect on output)",
    )

    @field_validator("modalities")
    @classmethod
    def _unique_modalities(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate modality in {value}")
        return value


# ---------------------------------------------------------------------------------------------------------
# inputs

FAMILY_PREFIX = {
    "codes": ("DIAGNOSIS//", "PROCEDURE//"),
    "labs": ("LAB//",),
    "medications": ("MEDICATION//",),
    "notes": ("NOTE//",),
}
#: the event columns the features read (their dtypes are the events reader's)
_EVENT_COLUMNS = ("subject_id", "time", "code", "numeric_value", "text_value")


def cohort_lookback_days(labels_path: Path) -> float | None:
    """Lookback in days from the typed cohort definition beside the labels; None means all history.

    Labels written without a ``cohort.yaml`` beside them (hand-made tables) use all history.
    """
    if not cohort_spec_path(labels_path).is_file():
        logger.info("features: no cohort.yaml beside %s; using all history", labels_path)
        return None
    lookback = read_cohort_spec(labels_path).history.lookback
    return None if lookback == "all" else lookback.total_seconds() / 86400.0


def _window_lazy(rows: pl.DataFrame, events: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Pair each event with every label row of its subject that may see it (time rule).

    Adds row_idx and prediction_time.
    """
    joined = events.lazy().join(
        rows.lazy().select("row_idx", "subject_id", "prediction_time", "window_start"),
        on="subject_id",
        how="inner",
    )
    ok = (pl.col("time") <= pl.col("prediction_time")) & (
        pl.col("window_start").is_null() | (pl.col("time") >= pl.col("window_start"))
    )
    return joined.filter(ok).drop("window_start")


def _window(rows: pl.DataFrame, events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """:func:`_window_lazy`, collected."""
    return _window_lazy(rows, events).collect()


def _subject_batches(rows: pl.DataFrame, batch_rows: int) -> list[tuple[int, int]]:
    """Contiguous subject-id ranges holding about ``batch_rows`` label rows each."""
    counts = rows.group_by("subject_id").len().sort("subject_id")
    batch = (counts["len"].cum_sum() - 1) // batch_rows
    ranges = (
        counts.with_columns(batch.alias("b"))
        .group_by("b")
        .agg(pl.col("subject_id").min().alias("lo"), pl.col("subject_id").max().alias("hi"))
        .sort("b")
    )
    return list(zip(ranges["lo"].to_list(), ranges["hi"].to_list(), strict=True))


def _window_aggregate(
    rows: pl.DataFrame, events: pl.DataFrame, aggregate: Any, config: Any, batch_rows: int
) -> pl.DataFrame:
    """Window events to rows and aggregate per (row, token), a batch of subjects at a time (bounded memory)."""
    events = events.sort("subject_id", maintain_order=True)
    ids = events["subject_id"]
    parts = []
    for lo, hi in _subject_batches(rows, batch_rows):
        start, stop = ids.search_sorted(lo, side="left"), ids.search_sorted(hi, side="right")
        batch_rows_ = rows.filter(pl.col("subject_id").is_between(lo, hi))
        parts.append(
            aggregate(_window_lazy(batch_rows_, events.slice(start, stop - start)), config).collect()
        )
    if not parts:
        return aggregate(_window_lazy(rows, events), config).collect()
    return pl.concat(parts)


# ---------------------------------------------------------------------------------------------------------
# the stage


def build_features(
    labels_path: Path,
    events_dir: Path,
    output_dir: Path,
    config: FeaturesConfig,
    progress: bool = True,
    *,
    fitted_dir: Path | None = None,
    _model: Any = None,
) -> dict:
    """Build every configured modality for the labels' rows and write them atomically.

    Parameters
    ----------
    labels_path : Path
        ``labels.parquet`` from the cohort stage (subject_id, prediction_time, split, ...).
    events_dir : Path
        MEDS events folder from ingest.
    output_dir : Path
        Folder to (re)create: ``<modality>.parquet`` (float32, label rows in label order), ``mask.parquet``,
        ``provenance.parquet``, ``vocabulary.json``.
    config : FeaturesConfig
    progress : bool
        Progress bar for note embedding.
    fitted_dir : Path, optional
        A features folder whose ``fitted.json`` (vocabularies, lab items and standardisation, the note
        encoder) is applied unchanged, e.g. the pretraining population's; None fits them on the train rows.

    Returns
    -------
    dict
        ``rows``, and per modality ``columns``, ``rows_with_modality``, ``availability`` (fraction),
        ``n_events`` and ``seconds``.
    """
    t_start = _time.perf_counter()
    labels, rows, train_rows, lookback = _label_rows(labels_path, config)
    fitted = read_fitted(fitted_dir, config) if fitted_dir is not None else None
    n_rows = labels.height
    events = read_events(events_dir, columns=_EVENT_COLUMNS)
    subjects = rows["subject_id"].unique().implode()

    results: dict[str, ModalityMatrix] = {}
    timings: dict[str, float] = {}
    for modality in config.modalities:
        t0 = _time.perf_counter()
        prefixes = FAMILY_PREFIX[modality]
        family = pl.any_horizontal([pl.col("code").str.starts_with(p) for p in prefixes])
        scoped = events.filter(family & pl.col("subject_id").is_in(subjects))
        state = fitted["modalities"][modality] if fitted is not None else None
        if modality == "notes":
            results[modality], n_untimed = _notes_modality(
                scoped, rows, train_rows, config, progress, _model, state
            )
        else:
            results[modality], n_untimed = _tabular_modality(modality, scoped, rows, train_rows, config, state)
        results[modality].run["n_events_without_time_excluded"] = int(n_untimed)
        if n_untimed:
            logger.warning(
                "features: %d %s event(s) of the labelled subjects have no time and were not used",
                n_untimed,
                modality,
            )
        timings[modality] = _time.perf_counter() - t0
        logger.info(
            "features: %s: %d columns, %d/%d rows with events (%.1f s)",
            modality,
            len(results[modality].names),
            int(results[modality].available.sum()),
            n_rows,
            timings[modality],
        )

    fitted_on = fitted["fitted_on"] if fitted is not None else {"rows": int(train_rows.sum()), "source": "train rows"}
    summary = _write_features(output_dir, labels, results, timings, config, train_rows, lookback, fitted_on)
    summary["seconds"] = round(_time.perf_counter() - t_start, 3)
    summary["output_dir"] = str(output_dir)
    return summary


def _label_rows(
    labels_path: Path, config: FeaturesConfig
) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, float | None]:
    """Read the labels and give each row its history window.

    Returns
    -------
    labels : polars.DataFrame
        The labels with a ``row_idx`` column.
    rows : polars.DataFrame
        row_idx, subject_id, prediction_time, window_start (null: all history).
    train_rows : ndarray of shape (n_rows,), bool
    lookback : float or None
        The history window in days.
    """
    labels = read_labels(labels_path).with_row_index("row_idx")
    train_rows = (labels["split"] == "train").to_numpy()
    if labels.height == 0:
        raise CohortError(
            f"{labels_path}: the cohort has no rows; check its criteria (attrition.json) and rebuild it"
        )
    if not train_rows.any():
        raise CohortError(
            f"{labels_path}: no row has split == 'train'; features are fit on train rows: check the cohort's "
            "split fractions"
        )
    lookback = config.lookback_days if config.lookback_days is not None else cohort_lookback_days(labels_path)
    start = (
        pl.col("prediction_time") - pl.duration(microseconds=int(lookback * 86400e6))
        if lookback is not None
        else pl.lit(None, dtype=pl.Datetime("us"))
    )
    rows = labels.select("row_idx", "subject_id", "prediction_time", start.alias("window_start"))
    return labels, rows, train_rows, lookback


def _notes_modality(
    scoped: pl.LazyFrame,
    rows: pl.DataFrame,
    train_rows: np.ndarray,
    config: FeaturesConfig,
    progress: bool,
    model: Any,
    state: dict[str, Any] | None = None,
) -> tuple[ModalityMatrix, int]:
    """Build the notes matrix from the labelled subjects' NOTE events; also return how many had no time."""
    note_events = scoped.select("subject_id", "time", "text_value").collect()
    n_untimed = note_events["time"].null_count()
    note_events = note_events.filter(pl.col("time").is_not_null())
    matrix = build_notes(
        note_events,
        lambda ev: _window(rows, ev),
        rows.height,
        train_rows,
        config.notes,
        config.cache_dir,
        progress,
        model=model,
        state=state,
    )
    return matrix, n_untimed


def _tabular_modality(
    modality: str,
    scoped: pl.LazyFrame,
    rows: pl.DataFrame,
    train_rows: np.ndarray,
    config: FeaturesConfig,
    state: dict[str, Any] | None = None,
) -> tuple[ModalityMatrix, int]:
    """Build the codes, labs or medications matrix; also return how many of its events had no time."""
    cols = [pl.col("subject_id"), pl.col("time"), pl.col("code")]
    if modality == "labs":  # the biggest table: categorical codes keep it small in memory
        cols = cols[:2] + [pl.col("code").cast(pl.Categorical), pl.col("numeric_value")]
    family_events = scoped.select(cols).collect()
    n_untimed = family_events["time"].null_count()
    aggregate, builder = {
        "codes": (aggregate_codes, build_codes),
        "labs": (aggregate_labs, build_labs),
        "medications": (aggregate_medications, build_medications),
    }[modality]
    agg = _window_aggregate(rows, family_events, aggregate, getattr(config, modality), config.join_batch_rows)
    del family_events
    return builder(agg, rows.height, train_rows, getattr(config, modality), state), n_untimed


def _write_features(
    output_dir: Path,
    labels: pl.DataFrame,
    results: dict[str, ModalityMatrix],
    timings: dict[str, float],
    config: FeaturesConfig,
    train_rows: np.ndarray,
    lookback: float | None,
    fitted_on: dict[str, Any],
) -> dict[str, Any]:
    """Write the modality matrices, mask, provenance and vocabulary atomically; return the stage summary."""
    n_rows = labels.height
    summary: dict[str, Any] = {
        "rows": n_rows,
        "n_train_rows": int(train_rows.sum()),
        "lookback_days": lookback,
        "modalities": {},
    }
    vocabulary: dict[str, Any] = {
        "rows": n_rows,
        "n_train_rows": int(train_rows.sum()),
        "lookback_days": lookback,
        "config": config.model_dump(),
        "fitted_on": fitted_on,
        "modalities": {},
    }
    mask_cols: dict[str, pl.Series] = {}
    prov_cols: list[pl.Series] = [labels["subject_id"], labels["prediction_time"]]
    if "hadm_id" in labels.columns:
        prov_cols.insert(1, labels["hadm_id"])
    with atomic_dir(output_dir) as tmp:
        for modality, res in results.items():
            frame = pl.from_numpy(
                np.ascontiguousarray(res.values, dtype=np.float32), schema=res.names, orient="row"
            )
            write_parquet(frame, tmp / f"{modality}.parquet")
            available = res.available
            if not available.any() and not res.info.get("absent"):
                logger.warning("features: modality %r is absent for every row (mask all False)", modality)
            mask_cols[modality] = pl.Series(modality, available, dtype=pl.Boolean)
            prov_cols.append(res.max_time.alias(f"{modality}__max_time"))
            prov_cols.append(pl.Series(f"{modality}__n_events", res.n_events, dtype=pl.Int64))
            vocabulary["modalities"][modality] = {"features": res.names, "train": res.info}
            summary["modalities"][modality] = {
                "columns": len(res.names),
                "rows_with_modality": int(available.sum()),
                "availability": round(float(available.mean()), 4) if n_rows else 0.0,
                "n_events": int(res.n_events.sum()),
                "seconds": round(timings[modality], 3),
                "absent": bool(res.info.get("absent", False)),
            }
            summary["modalities"][modality].update(res.run)
        write_parquet(pl.DataFrame(list(mask_cols.values())), tmp / "mask.parquet")
        write_parquet(pl.DataFrame(prov_cols), tmp / "provenance.parquet")
        write_json(vocabulary, tmp / "vocabulary.json")
        write_fitted(tmp, results, config, fitted_on)
    summary["fitted_on"] = fitted_on
    return summary

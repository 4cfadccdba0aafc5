"""The pretraining population: every admission of every train-split subject, with no label read.

Representations are fit once per dataset on this population, then applied unchanged to every cohort
(issue 14). Each admission is featurised at each configured reference time (by default 48 hours after
admission, the mortality task's moment, and at discharge, the readmission task's), so the representation
has seen rows like every task's. A reference time after the stay ended is skipped and counted.

A row must be alive at its reference time, as in every cohort. Only train subjects enter: the split of a subject is the same keyed hash (or the input's own
``subject_splits.parquet``) every cohort uses, so no tuning or held_out subject of any cohort is ever fit on.
The cohort YAMLs are read for their ``split`` only, and must agree; otherwise a subject could be train here
and held_out in a cohort.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from pipeline.cohort.build import input_splits
from pipeline.cohort.criteria import (
    candidate_stays,
    discharge_after_admission,
    key_events,
    stay_table,
)
from pipeline.cohort.spec import Prediction, cohort_name, format_duration, load_spec
from pipeline.events import read_events
from pipeline.exceptions import CohortError, ConfigError
from pipeline.io import atomic_dir, write_json
from pipeline.splits import splits_with_given

log = logging.getLogger(__name__)

#: the files ``build_population`` writes
POPULATION_FILE = "population.parquet"
SUMMARY_FILE = "population.json"


def _default_reference_times() -> list[Prediction]:
    return [Prediction(index_event="admission", offset="48h"), Prediction(index_event="discharge")]


class PretrainingConfig(BaseModel):
    """``pretraining`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid")
    reference_times: list[Prediction] = Field(
        default_factory=_default_reference_times,
        min_length=1,
        description="each admission becomes one row per reference time (index event + offset)",
    )


def _reference_name(ref: Prediction) -> str:
    offset = format_duration(ref.offset)
    return ref.index_event if offset == "0h" else f"{ref.index_event}+{offset}"


def agreed_split(cohort_configs: list[Path]) -> tuple[tuple[float, float, float], int]:
    """Return the ``split`` (fractions, seed) every cohort YAML states; they must agree.

    Raises
    ------
    ConfigError
        No cohort given, or two cohorts split subjects differently.
    """
    if not cohort_configs:
        raise ConfigError(
            "pretraining: no cohort YAML given; list the cohorts in params.yaml `cohorts` or pass --cohort-configs"
        )
    splits = {}
    for path in cohort_configs:
        spec = load_spec(path)
        splits[Path(path)] = (tuple(spec.split.fractions), spec.split.seed)
    first_path, first = next(iter(splits.items()))
    for path, split in splits.items():
        if split != first:
            raise ConfigError(
                f"{path}: split {split} differs from {first_path}'s {first}; every cohort must split subjects "
                "alike, or a pretraining subject could be held out in a cohort: give them one `split`"
            )
    return first  # type: ignore[return-value]


def population_rows(
    events: pl.LazyFrame,
    config: PretrainingConfig,
    fractions: tuple[float, float, float],
    seed: int,
    subject_splits: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Return the pretraining rows and their attrition.

    Returns
    -------
    rows : polars.DataFrame
        subject_id, hadm_id, prediction_time, split (always "train"), reference; sorted by subject_id,
        prediction_time, hadm_id, reference.
    attrition : list of dict
        ``{criterion, before, after, excluded}`` per step, reference times counted separately.
    """
    key = key_events(events)
    stays, att = candidate_stays(key)
    df = discharge_after_admission(stay_table(key, stays), att)
    subjects = df.get_column("subject_id").unique().sort()
    splits, _ = splits_with_given(subjects.to_numpy(), subject_splits, fractions, seed)
    train = pl.DataFrame({"subject_id": subjects, "split": splits}).filter(pl.col("split") == "train")
    df = att.apply(
        df,
        pl.col("subject_id").is_in(train.get_column("subject_id").implode()),
        "subject in the train split (tuning and held_out subjects never enter a fit)",
        key="split",
    )
    parts = []
    for ref in config.reference_times:
        index = pl.col("admit_time") if ref.index_event == "admission" else pl.col("disch_time")
        name = _reference_name(ref)
        at = df.with_columns((index + ref.offset).alias("prediction_time"), pl.lit(name).alias("reference"))
        for criterion, keep in (
            ("stay still ongoing (time <= discharge)", pl.col("prediction_time") <= pl.col("disch_time")),
            # as every cohort's rows: a row at or after death would carry the death in its history
            ("alive at the reference time", pl.col("death_time").is_null() | (pl.col("death_time") > pl.col("prediction_time"))),
        ):  # fmt: skip
            n_before = at.height
            at = at.filter(keep)
            att.rows.append(
                {"criterion": f"reference {name}: {criterion}", "before": n_before, "after": at.height,
                 "excluded": n_before - at.height}
            )  # fmt: skip
        parts.append(at)
    rows = (
        pl.concat(parts)
        .with_columns(pl.lit("train").alias("split"))
        .select(
            pl.col("subject_id").cast(pl.Int64),
            pl.col("hadm_id").cast(pl.Int64),
            pl.col("prediction_time").cast(pl.Datetime("us")),
            pl.col("split").cast(pl.String),
            pl.col("reference").cast(pl.String),
        )
        .sort("subject_id", "prediction_time", "hadm_id", "reference")
    )
    return rows, att.rows


def build_population(
    events_dir: Path, cohort_configs: list[Path], output_dir: Path, config: PretrainingConfig
) -> dict[str, Any]:
    """Write ``population.parquet`` and ``population.json`` (attrition, split, reference times) atomically.

    Parameters
    ----------
    events_dir : Path
        MEDS events folder from ingest.
    cohort_configs : list of Path
        The cohort YAMLs whose ``split`` the population must share.
    output_dir : Path
        Folder to (re)create, usually ``data/pretraining``.
    config : PretrainingConfig

    Returns
    -------
    dict
        rows, subjects, admissions, per-reference row counts, split, attrition.
    """
    events_dir, output_dir = Path(events_dir), Path(output_dir)
    fractions, seed = agreed_split([Path(p) for p in cohort_configs])
    given = input_splits(events_dir)
    events = read_events(events_dir, require=("hadm_id",))
    rows, attrition = population_rows(events, config, fractions, seed, given)
    if rows.height == 0:
        raise CohortError(
            f"{events_dir}: the pretraining population is empty (no admission of a train subject); "
            + "; ".join(f"{r['criterion']}: {r['before']} -> {r['after']}" for r in attrition)
        )
    summary = {
        "rows": rows.height,
        "subjects": rows.get_column("subject_id").n_unique(),
        "admissions": rows.select("subject_id", "hadm_id").unique().height,
        "references": dict(sorted(rows.group_by("reference").len().iter_rows())),
        "reference_times": [_reference_name(r) for r in config.reference_times],
        "split": {
            "source": "keyed_hash" if given is None else "input",
            "fractions": list(fractions),
            "seed": seed,
            "cohorts": sorted(cohort_name(p) for p in cohort_configs),
        },
        "attrition": attrition,
    }
    with atomic_dir(output_dir) as tmp:
        rows.write_parquet(tmp / POPULATION_FILE, compression="zstd")
        write_json(summary, tmp / SUMMARY_FILE)
    log.info(
        "pretraining: %d rows (%s) from %d admissions of %d train subjects",
        summary["rows"],
        ", ".join(f"{k}: {v}" for k, v in summary["references"].items()),
        summary["admissions"],
        summary["subjects"],
    )
    return summary


__all__ = ["POPULATION_FILE", "PretrainingConfig", "build_population", "population_rows"]

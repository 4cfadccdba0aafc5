"""The pretraining population (issue 14): train subjects only, every admission, one fitted vocabulary."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import polars as pl
import pytest

from pipeline.cohort.pretraining import PretrainingConfig, build_population
from pipeline.exceptions import ConfigError
from pipeline.features import FeaturesConfig, build_features
from pipeline.splits import assign_splits
from tests.cohort.conftest import MORTALITY_YAML, READMISSION_YAML, Patient, Stay, write_events, write_yaml

N_SUBJECTS = 60
HELD_OUT_ONLY_CODE = "DIAGNOSIS//ICD//10//Z999"


def _patients() -> list[Patient]:
    """Sixty adults with two stays each; the held_out ones also carry a code no other subject has."""
    splits = dict(zip(range(1, N_SUBJECTS + 1), assign_splits(np.arange(1, N_SUBJECTS + 1)), strict=True))
    patients = []
    for sid in range(1, N_SUBJECTS + 1):
        stays = [
            Stay(hadm_id=sid * 10 + 1, admit="2150-01-01T08:00:00", disch="2150-01-05T08:00:00"),
            Stay(hadm_id=sid * 10 + 2, admit="2150-03-01T08:00:00", disch="2150-03-02T08:00:00"),  # 1 day
        ]
        extra = [("2150-01-01T09:00:00", "DIAGNOSIS//ICD//10//I10", sid * 10 + 1)]
        if splits[sid] == "held_out":
            extra += [("2150-01-01T09:00:00", HELD_OUT_ONLY_CODE, sid * 10 + 1)]
        patients.append(Patient(subject_id=sid, birth_year=2100, stays=stays, extra=extra))
    return patients


@pytest.fixture
def dataset(tmp_path):
    events = write_events(tmp_path / "events", _patients())
    cohorts = [
        write_yaml(tmp_path / "mortality.yaml", MORTALITY_YAML),
        write_yaml(tmp_path / "readmission.yaml", READMISSION_YAML),
    ]
    return events, cohorts


def test_population_holds_only_train_subjects_and_every_admission(dataset, tmp_path):
    events, cohorts = dataset
    summary = build_population(events, cohorts, tmp_path / "pre", PretrainingConfig())
    rows = pl.read_parquet(tmp_path / "pre" / "population.parquet")
    splits = dict(zip(range(1, N_SUBJECTS + 1), assign_splits(np.arange(1, N_SUBJECTS + 1)), strict=True))
    train = {s for s, split in splits.items() if split == "train"}
    assert set(rows["subject_id"].to_list()) == train  # no tuning or held_out subject, every train one
    assert 0 < len(train) < N_SUBJECTS
    assert set(rows["split"].to_list()) == {"train"}
    # 48 h after admission exists for the 4-day stays only; discharge for both stays
    assert summary["references"] == {"admission+48h": len(train), "discharge": 2 * len(train)}
    short = [r for r in summary["attrition"] if r["criterion"].startswith("reference admission+48h: stay")]
    assert short[0]["excluded"] == len(train)
    assert (tmp_path / "pre" / "population.json").is_file()
    assert "boolean_value" not in rows.columns  # no label is read, none is written


def test_population_excludes_rows_at_or_after_death(tmp_path):
    patients = _patients()
    for p in patients:  # everyone dies at the first stay's discharge
        p.death, p.death_hadm = "2150-01-05T08:00:00", p.subject_id * 10 + 1
        p.stays = p.stays[:1]
    events = write_events(tmp_path / "events", patients)
    cohorts = [write_yaml(tmp_path / "m.yaml", MORTALITY_YAML)]
    summary = build_population(events, cohorts, tmp_path / "pre", PretrainingConfig())
    assert "discharge" not in summary["references"]  # the discharge rows would carry the death
    assert summary["references"]["admission+48h"] > 0


def test_cohorts_with_different_splits_are_refused(dataset, tmp_path):
    events, cohorts = dataset
    other = write_yaml(tmp_path / "other.yaml", MORTALITY_YAML + "split: {fractions: [0.5, 0.25, 0.25], seed: 0}\n")
    with pytest.raises(ConfigError, match="split"):
        build_population(events, [*cohorts, other], tmp_path / "pre", PretrainingConfig())


def test_code_seen_only_in_held_out_subjects_never_enters_a_vocabulary(dataset, tmp_path):
    """Fit on the population, apply to a cohort holding every split: the held_out-only code has no column."""
    events, cohorts = dataset
    build_population(events, cohorts, tmp_path / "pre", PretrainingConfig())
    config = FeaturesConfig.model_validate(
        {"modalities": ["codes", "labs"], "codes": {"min_count": 1, "icd_rollup": False}, "labs": {"min_count": 1}}
    )
    build_features(tmp_path / "pre" / "population.parquet", events, tmp_path / "fpre", config, progress=False)
    fitted = json.loads((tmp_path / "fpre" / "fitted.json").read_text())
    assert fitted["modalities"]["codes"]["tokens"] == ["DIAGNOSIS//ICD//10//I10"]

    # a cohort with all three splits, whose held_out rows carry the code many times
    labels = pl.DataFrame(
        {
            "subject_id": list(range(1, N_SUBJECTS + 1)),
            "hadm_id": [s * 10 + 1 for s in range(1, N_SUBJECTS + 1)],
            "prediction_time": [datetime(2150, 1, 3, 8)] * N_SUBJECTS,
            "split": assign_splits(np.arange(1, N_SUBJECTS + 1)).tolist(),
        },
        schema_overrides={"prediction_time": pl.Datetime("us")},
    )
    assert "held_out" in labels["split"].to_list()
    labels.write_parquet(tmp_path / "labels.parquet")
    build_features(tmp_path / "labels.parquet", events, tmp_path / "fc", config, progress=False, fitted_dir=tmp_path / "fpre")
    codes = pl.read_parquet(tmp_path / "fc" / "codes.parquet")
    assert codes.columns == ["DIAGNOSIS//ICD//10//I10"]
    # fitting on the cohort's own train rows would not have seen it either; fitting on all rows would
    assert HELD_OUT_ONLY_CODE not in json.dumps(json.loads((tmp_path / "fc" / "vocabulary.json").read_text()))
    vocabulary = json.loads((tmp_path / "fc" / "vocabulary.json").read_text())
    assert vocabulary["fitted_on"]["source"] == (tmp_path / "fpre").as_posix()
    # the lab scaler is the population's, applied unchanged
    assert json.loads((tmp_path / "fc" / "fitted.json").read_text())["modalities"] == fitted["modalities"]

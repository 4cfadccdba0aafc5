"""Hand-made MEDS event fixtures for the cohort and audit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from pipeline.schema import EVENTS_SCHEMA

REPO = Path(__file__).resolve().parents[2]
COHORTS = REPO / "cohorts"
MIMIC_DEMO = REPO / ".." / "shared" / "data" / "mimic-iv-demo-2.2"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Stay:
    hadm_id: int
    admit: str
    disch: str | None
    admission_type: str = "EW EMER."
    location: str = "HOME"
    insurance: str | None = "Medicare"


@dataclass
class Patient:
    subject_id: int
    birth_year: int = 2100
    sex: str = "F"
    stays: list[Stay] = field(default_factory=list)
    death: str | None = None
    death_hadm: int | None = None
    extra: list[tuple[str, str, int | None]] = field(default_factory=list)  # (time, code, hadm_id)


def patient_events(p: Patient) -> list[dict]:
    rows = []

    def add(t, code, hadm=None, value=None):
        rows.append(
            {
                "subject_id": p.subject_id,
                "time": ts(t) if t else None,
                "code": code,
                "numeric_value": value,
                "text_value": None,
                "hadm_id": hadm,
            }
        )

    birth = f"{p.birth_year}-01-01T00:00:00"
    add(birth, "MEDS_BIRTH")
    add(birth, f"GENDER//{p.sex}")
    for s in p.stays:
        add(s.admit, f"HOSPITAL_ADMISSION//{s.admission_type}", s.hadm_id)
        if s.insurance:
            add(s.admit, f"INSURANCE//{s.insurance}", s.hadm_id)
        add(s.admit, "LAB//50912//mg/dL", s.hadm_id, 1.0)
        if s.disch:
            add(s.disch, f"HOSPITAL_DISCHARGE//{s.location}", s.hadm_id)
    if p.death:
        add(p.death, "MEDS_DEATH", p.death_hadm)
    for t, code, hadm in p.extra:
        add(t, code, hadm)
    return rows


def write_events(folder: Path, patients: list[Patient]) -> Path:
    """Write a MEDS events folder (one shard, sorted by subject_id, time) and return it."""
    rows = [r for p in patients for r in patient_events(p)]
    df = pl.DataFrame(rows, schema=pl.Schema(pl.from_arrow(EVENTS_SCHEMA.empty_table()).schema))
    df = df.sort("subject_id", "time", nulls_last=False)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    df.write_parquet(folder / "data" / "0.parquet")
    return folder


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


MORTALITY_YAML = """\
population: {min_age: 18, in_hospital_at_prediction: true}
prediction: {index_event: admission, offset: 48h}
outcome: {type: death_before_discharge}
"""

READMISSION_YAML = """\
population: {min_age: 18}
prediction: {index_event: discharge, offset: 0h}
outcome: {type: readmission, window: 30d, not_counted_admission_types: [ELECTIVE], competing_death: competing}
censoring: {end_of_followup: dataset_end, insufficient_followup: exclude}
"""


@pytest.fixture
def events_factory(tmp_path):
    def make(patients: list[Patient], name: str = "events") -> Path:
        return write_events(tmp_path / name, patients)

    return make

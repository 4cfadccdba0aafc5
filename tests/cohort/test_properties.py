"""Property-based: on random (also messy) event timelines the labels keep their invariants and pass the audit."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.audit import audit
from pipeline.cohort import build_cohort
from pipeline.exceptions import CohortError

from .conftest import MORTALITY_YAML, READMISSION_YAML, Patient, Stay, write_events, write_yaml

T0 = datetime(2150, 1, 1)


def _iso(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


@st.composite
def patients(draw):
    out = []
    for sid in range(1, draw(st.integers(4, 10)) + 1):
        stays, t = [], draw(st.integers(0, 500))
        for j in range(draw(st.integers(1, 4))):
            los = draw(st.sampled_from([-5, 0, 6, 47, 48, 49, 72, 100, 200, 300]))  # includes broken stays
            stays.append(
                Stay(
                    sid * 10 + j,
                    _iso(t),
                    None if draw(st.integers(0, 20)) == 0 else _iso(t + los),
                    admission_type=draw(st.sampled_from(["EW EMER.", "ELECTIVE", "URGENT"])),
                    location=draw(st.sampled_from(["HOME", "HOME", "DIED"])),
                )
            )
            t += max(los, 0) + draw(st.sampled_from([0, 1, 24 * 5, 24 * 10, 24 * 29, 24 * 31, 24 * 100]))
        death = draw(st.one_of(st.none(), st.integers(0, t + 24 * 40)))
        linked = draw(st.sampled_from([None] + [s.hadm_id for s in stays]))
        out.append(
            Patient(
                sid,
                birth_year=draw(st.sampled_from([2100, 2140])),
                stays=stays,
                death=None if death is None else _iso(death),
                death_hadm=linked if death is not None else None,
            )
        )
    return out


@pytest.mark.parametrize("text", [MORTALITY_YAML, READMISSION_YAML], ids=["mortality", "readmission"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pats=patients())
def test_invariants_and_audit(tmp_path_factory, text, pats):
    tmp = tmp_path_factory.mktemp("prop")
    events = write_events(tmp / "events", pats)
    try:
        summary = build_cohort(write_yaml(tmp / "task.yaml", text), events, tmp / "out")
    except CohortError:
        return  # empty or single-class cohorts are refused (tested elsewhere)
    labels = pl.read_parquet(tmp / "out" / "labels.parquet")
    att = summary["attrition"]
    for prev, cur in zip(att[:-1], att[1:], strict=True):
        assert cur["before"] == prev["after"] and cur["excluded"] >= 0
    assert att[-1]["after"] == labels.height
    assert labels["event_time_days"].min() >= 0
    assert (labels.filter(pl.col("event_type") != "censored")["event_time_days"] > 0).all()
    assert (labels["boolean_value"] == (labels["event_type"] == "outcome")).all()
    assert labels.group_by("subject_id").agg(pl.col("split").n_unique())["split"].max() == 1
    audit(tmp / "out" / "labels.parquet", None, events)  # recomputes label-defining events from the events

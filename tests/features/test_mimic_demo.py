"""The real MIMIC-IV demo: ingest -> both cohorts -> features -> leakage audit."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.features import FeaturesConfig, build_features

DEMO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mimic-iv-demo-2.2"

pytestmark = [
    pytest.mark.mimic,
    pytest.mark.skipif(not DEMO.is_dir(), reason="MIMIC-IV demo not found"),
]


@pytest.fixture(scope="module")
def demo_events(tmp_path_factory):
    ingest_mod = pytest.importorskip("pipeline.ingest")
    out = tmp_path_factory.mktemp("mimic") / "events"
    ingest_mod.ingest("mimic-iv", DEMO, out, ingest_mod.IngestConfig(), progress=False)
    return out


@pytest.mark.parametrize("cohort", ["in_hospital_mortality", "readmission_30d"])
def test_demo_features_align_and_pass_audit(tmp_path, demo_events, cohort, caplog):
    cohort_mod = pytest.importorskip("pipeline.cohort")
    audit_mod = pytest.importorskip("pipeline.audit")
    root = Path(__file__).resolve().parents[2]
    cohort_mod.build_cohort(root / "cohorts" / f"{cohort}.yaml", demo_events, tmp_path / "cohort")
    labels_path = tmp_path / "cohort" / "labels.parquet"
    cfg = FeaturesConfig(cache_dir=str(tmp_path / "cache"))
    summary = build_features(labels_path, demo_events, tmp_path / "features", cfg, progress=False)
    labels = pl.read_parquet(labels_path)
    for m in ("codes", "labs", "medications", "notes"):
        frame = pl.read_parquet(tmp_path / "features" / f"{m}.parquet")
        assert frame.height == labels.height
    prov = pl.read_parquet(tmp_path / "features" / "provenance.parquet")
    assert prov.select("subject_id", "prediction_time").equals(labels.select("subject_id", "prediction_time"))
    mods = summary["modalities"]
    assert mods["notes"]["absent"] and mods["notes"]["rows_with_modality"] == 0
    for m in ("codes", "labs", "medications"):
        assert mods[m]["rows_with_modality"] > 0.5 * labels.height and mods[m]["columns"] > 10, m
    assert "notes" in caplog.text
    audit_mod.audit(labels_path, tmp_path / "features", demo_events)  # raises LeakageError on any violation


def test_demo_mortality_codes_come_from_prior_stays_only(tmp_path, demo_events):
    cohort_mod = pytest.importorskip("pipeline.cohort")
    from pipeline.events import read_events

    root = Path(__file__).resolve().parents[2]
    cohort_mod.build_cohort(root / "cohorts" / "in_hospital_mortality.yaml", demo_events, tmp_path / "cohort")
    cfg = FeaturesConfig(modalities=["codes"], cache_dir=str(tmp_path / "cache"))
    build_features(tmp_path / "cohort" / "labels.parquet", demo_events, tmp_path / "f", cfg, progress=False)
    labels = pl.read_parquet(tmp_path / "cohort" / "labels.parquet")
    events = read_events(demo_events).collect()
    stay_codes = events.filter(pl.col("code").str.contains(r"^(DIAGNOSIS|PROCEDURE)//")).join(
        labels.select("hadm_id", "prediction_time"), on="hadm_id", how="inner"
    )
    assert stay_codes.height > 100
    # every code of a row's own stay is stamped after the row's prediction time, so the time rule keeps it out
    assert (stay_codes["time"] > stay_codes["prediction_time"]).all()
    prov = pl.read_parquet(tmp_path / "f" / "provenance.parquet")
    assert prov.select("subject_id", "prediction_time").equals(labels.select("subject_id", "prediction_time"))
    with_codes = prov.filter(pl.col("codes__n_events") > 0)
    assert with_codes.height > 50  # many demo patients have prior admissions
    assert (with_codes["codes__max_time"] <= with_codes["prediction_time"]).all()

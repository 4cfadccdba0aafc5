"""On the synthetic EHR, cohort labels agree with the generator's ground truth (truth/admissions.parquet)."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.cohort import build_cohort

from .conftest import COHORTS, write_yaml

synthetic = pytest.importorskip("pipeline.sources.synthetic")
ingest_mod = pytest.importorskip("pipeline.ingest")


@pytest.fixture(scope="module")
def synth_events(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthetic.synthesize(synthetic.SynthConfig(patients=300, seed=3), root / "raw", progress=False)
    ingest_mod.ingest("mimic-iv", root / "raw", root / "events", ingest_mod.IngestConfig(), progress=False)
    truth = pl.read_parquet(root / "raw" / "truth" / "admissions.parquet")
    return root, truth


def test_mortality_matches_truth(synth_events):
    root, truth = synth_events
    summary = build_cohort(COHORTS / "in_hospital_mortality.yaml", root / "events", root / "mort")
    labels = pl.read_parquet(root / "mort" / "labels.parquet").join(
        truth, on=["subject_id", "hadm_id"], how="left"
    )
    assert labels["died_in_hospital"].null_count() == 0
    assert (labels["boolean_value"] == labels["died_in_hospital"]).all()
    # every adult stay longer than 48 h is in the cohort (the generator's deaths all happen after 48 h)
    eligible = truth.filter(pl.col("los_hours") > 48).join(
        labels.select("subject_id", "hadm_id"), on=["subject_id", "hadm_id"], how="anti"
    )
    ages = summary["attrition"]
    assert eligible.height == next((r["excluded"] for r in ages if r["criterion"].startswith("age")), 0)
    assert summary["positives"] >= 5


def test_readmission_matches_truth(synth_events, tmp_path):
    root, truth = synth_events
    text = (COHORTS / "readmission_30d.yaml").read_text()
    text = text.replace(
        "not_counted_admission_types: [ELECTIVE, SURGICAL SAME DAY ADMISSION]",
        "not_counted_admission_types: []",
    )
    cfg = write_yaml(tmp_path / "readm_all.yaml", text)
    build_cohort(cfg, root / "events", root / "readm")
    labels = pl.read_parquet(root / "readm" / "labels.parquet").join(
        truth, on=["subject_id", "hadm_id"], how="left"
    )
    assert labels.height > 100 and labels["readmitted_30d"].null_count() == 0
    assert (labels["boolean_value"] == labels["readmitted_30d"]).all()
    assert labels["boolean_value"].sum() >= 10

"""A cohort folder, features mask, HCL variance table, and predict outputs for the report tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.splits import assign_splits

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

ID_BASE = 73_519_000  # distinctive ids: the report must never contain them


def build_inputs(root: Path, n_subjects: int, seed: int = 0) -> dict:
    from pipeline.predict import PredictConfig, PredictInputs, predict

    rng = np.random.default_rng(seed)
    subject = np.arange(ID_BASE, ID_BASE + n_subjects)
    n = n_subjects
    z = rng.normal(size=(n, 3))
    y = rng.random(n) < 1 / (1 + np.exp(-(-1.0 + 1.5 * z[:, 0])))
    t = rng.exponential(10 / np.exp(0.7 * z[:, 0]))
    et = np.where(t < 30, np.where(rng.random(n) < 0.7, "outcome", "competing"), "censored")
    cohort_dir, feat, emb, models = root / "cohort", root / "features", root / "emb", root / "models"
    for d in (cohort_dir, feat, emb, models / "hcl"):
        d.mkdir(parents=True, exist_ok=True)
    labels = pd.DataFrame(
        {
            "subject_id": subject,
            "hadm_id": subject + 1_000_000,
            "prediction_time": pd.Timestamp("2150-01-01") + pd.to_timedelta(np.arange(n), unit="h"),
            "boolean_value": y,
            "split": assign_splits(subject, seed=1),
            "event_time_days": np.minimum(t, 30.0),
            "event_type": et,
            "age_band": rng.choice(["18-44", "45-64", "65+"], n),
            "sex": rng.choice(["F", "M"], n),
            "admission_type": rng.choice(["EMERGENCY", "ELECTIVE"], n),
            "insurance": rng.choice(["Medicare", "Other"], n),
        }
    )
    labels.to_parquet(cohort_dir / "labels.parquet", index=False)
    (cohort_dir / "splits.json").write_text(
        '{"source": "keyed_hash", "file": null, "fractions": [0.7, 0.15, 0.15], "seed": 0}'
    )
    (cohort_dir / "cohort.yaml").write_text(
        "name: mortality\ntask: in_hospital_mortality\nprediction_time: admit+24h\n"
    )
    (cohort_dir / "attrition.json").write_text(
        json.dumps(
            [
                {"criterion": "all admissions", "before": n + 30, "after": n + 30, "excluded": 0},
                {"criterion": "age >= 18", "before": n + 30, "after": n, "excluded": 30},
            ]
        )
    )
    pd.DataFrame(
        {"codes": np.ones(n, bool), "labs": rng.random(n) < 0.8, "notes": rng.random(n) < 0.5}
    ).to_parquet(feat / "mask.parquet", index=False)
    pd.DataFrame({"codes+labs__0": z[:, 0], "codes__0": z[:, 1], "labs__0": z[:, 2]}).astype(
        "float32"
    ).to_parquet(emb / "hcl.parquet", index=False)
    pd.DataFrame({"raw__0": z[:, 0] + 2 * rng.normal(size=n), "raw__1": rng.normal(size=n)}).astype(
        "float32"
    ).to_parquet(emb / "raw.parquet", index=False)
    pd.DataFrame(
        {"codes+labs": [0.4, 0.3], "codes": [0.2, 0.0], "labs": [0.0, 0.5]},
        index=pd.Index(["codes", "labs"], name="modality"),
    ).to_csv(models / "hcl" / "variance_explained.csv")
    pd.DataFrame(  # the deep model's summary.csv (abridged to the columns the report reads)
        {
            "structure": ["codes+labs", "codes", "labs"],
            "kind": ["global", "private", "private"],
            "alignment": [0.81, 0.7, 0.9],
            "weakest_pair_alignment": [0.81, 0.7, 0.9],
            "kept": [True, True, True],
        }
    ).to_csv(models / "hcl" / "summary.csv")
    cfg = PredictConfig(
        models=["logistic"],
        bootstrap_resamples=50,
        subgroup_resamples=20,
        survival_resamples=10,
        min_subgroup_size=40,
    )
    inputs = PredictInputs(
        cohort="mortality",
        labels_path=cohort_dir / "labels.parquet",
        embeddings_dir=emb,
        metrics_path=root / "metrics.json",
        plots_dir=root / "plots",
        progress=False,
    )
    predict(inputs, cfg, None)
    return {
        "cohort_dir": cohort_dir,
        "features_dir": feat,
        "embeddings_dir": emb,
        "models_dir": models,
        "metrics_path": root / "metrics.json",
        "plots_dir": root / "plots",
        "labels": labels,
    }


@pytest.fixture(scope="module")
def large_inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("large"), 1200)


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("small"), 120, seed=2)

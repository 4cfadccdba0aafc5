"""Small synthetic cohorts for the predict tests: labels + embeddings with a known outcome model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.splits import assign_splits

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
ROOT = Path(__file__).resolve().parents[2]


def make_cohort(root: Path, n_subjects: int = 300, seed: int = 0, id_base: int = 1000) -> dict:
    """Write labels.parquet, embeddings/{hcl,raw}.parquet and truth.parquet under ``root``.

    The outcome depends on the ``codes+labs`` block of ``hcl`` only; ``raw`` sees that signal through
    heavy noise, so it is a strictly worse baseline.
    """
    rng = np.random.default_rng(seed)
    visits = rng.integers(1, 3, size=n_subjects)
    subject = np.repeat(np.arange(id_base, id_base + n_subjects), visits)
    n = len(subject)
    z_shared = rng.normal(size=(n, 2))
    z_codes = rng.normal(size=(n, 1))
    z_labs = rng.normal(size=(n, 1))
    eta = -1.0 + 1.5 * z_shared[:, 0] - 1.0 * z_shared[:, 1]
    p_true = 1 / (1 + np.exp(-eta))
    y = rng.random(n) < p_true
    split = assign_splits(subject, seed=seed)
    t_event = rng.exponential(10 / np.exp(0.8 * eta))
    t_comp = rng.exponential(15, size=n)
    t_cens = np.full(n, 30.0)
    t = np.minimum.reduce([t_event, t_comp, t_cens])
    etype = np.where(t == t_event, "outcome", np.where(t == t_comp, "competing", "censored"))
    labels = pd.DataFrame(
        {
            "subject_id": subject.astype("int64"),
            "hadm_id": np.arange(n, dtype="int64") + 50_000 + 7 * id_base,
            "prediction_time": pd.Timestamp("2150-01-01") + pd.to_timedelta(np.arange(n), unit="h"),
            "boolean_value": y,
            "split": split,
            "event_time_days": t,
            "event_type": etype,
            "age_band": rng.choice(["18-44", "45-64", "65+"], size=n),
            "sex": rng.choice(["F", "M"], size=n),
            "admission_type": rng.choice(["EMERGENCY", "ELECTIVE", "URGENT"], size=n, p=[0.7, 0.25, 0.05]),
            "insurance": rng.choice(["Medicare", "Other"], size=n),
        }
    )
    (root / "emb").mkdir(parents=True, exist_ok=True)
    hcl = pd.DataFrame(
        {
            "codes+labs__0": z_shared[:, 0],
            "codes+labs__1": z_shared[:, 1],
            "codes__0": z_codes[:, 0],
            "labs__0": z_labs[:, 0],
        }
    ).astype("float32")
    raw = pd.DataFrame({f"raw__{j}": z_shared[:, j % 2] + 2.5 * rng.normal(size=n) for j in range(4)}).astype(
        "float32"
    )
    labels.to_parquet(root / "labels.parquet", index=False)
    hcl.to_parquet(root / "emb" / "hcl.parquet", index=False)
    raw.to_parquet(root / "emb" / "raw.parquet", index=False)
    pd.DataFrame({"hadm_id": labels["hadm_id"], "p_mortality": p_true, "p_readmission_30d": 0.1}).to_parquet(
        root / "truth.parquet", index=False
    )
    # the cohort names its outcome; the generator's truth is keyed by that outcome, not by a cohort name
    (root / "cohort.yaml").write_text((ROOT / "cohorts" / "in_hospital_mortality.yaml").read_text())
    (root / "structure.json").write_text(
        '{"outcomes": {"death_before_discharge": {"probability_column": "p_mortality", "structures": ["codes+labs"]},'
        ' "readmission_30d": {"probability_column": "p_readmission_30d", "structures": ["codes"]}}}'
    )
    return {
        "labels": root / "labels.parquet",
        "emb": root / "emb",
        "truth": root / "truth.parquet",
        "p_true": p_true,
    }


@pytest.fixture
def cohort(tmp_path):
    return make_cohort(tmp_path)


@pytest.fixture(scope="session")
def cohort_factory():
    """:func:`make_cohort` itself, for module-scoped fixtures."""
    return make_cohort

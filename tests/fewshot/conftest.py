"""A tiny cohort for the fewshot tests: the predict tests' synthetic labels, with hcl, concat and pca."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from tests.predict.conftest import make_cohort


def make_fewshot_cohort(root):
    """Write labels.parquet and emb/{hcl,concat,pca}.parquet under ``root``; return the paths."""
    paths = make_cohort(root, n_subjects=260)
    emb = paths["emb"]
    shutil.move(emb / "raw.parquet", emb / "concat.parquet")
    concat = pd.read_parquet(emb / "concat.parquet")
    rng = np.random.default_rng(1)
    pca = pd.DataFrame({f"pca__{j}": concat.iloc[:, j] + rng.normal(size=len(concat)) for j in range(2)})
    pca.astype("float32").to_parquet(emb / "pca.parquet", index=False)
    return paths


@pytest.fixture
def fewshot_cohort(tmp_path):
    return make_fewshot_cohort(tmp_path / "cohort")

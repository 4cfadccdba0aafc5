"""The predict stage's inputs: the cohort's labels and its representations, checked against each other."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.exceptions import InputSchemaError, MissingInputError

if TYPE_CHECKING:
    import pandas as pd


def read_labels(path: Path) -> pd.DataFrame:
    """``labels.parquet`` through the one labels reader, as pandas, with ``hadm_id`` and a non-null label."""
    from pipeline.cohort.labels import read_labels as read_cohort_labels

    return read_cohort_labels(path, columns=("hadm_id", "boolean_value")).to_pandas()


def read_embeddings(path: Path, n_rows: int) -> tuple[np.ndarray, list[str]]:
    """One representation: (n, d) float64 matrix and its column names, checked against the labels."""
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001
        raise InputSchemaError(
            f"{path}: cannot read parquet ({type(exc).__name__}: {exc}); rerun `ehr-hcl embed`"
        ) from None
    if len(df) != n_rows:
        raise InputSchemaError(
            f"{path}: {len(df)} rows but labels have {n_rows}; rerun `ehr-hcl embed` for this cohort"
        )
    if df.shape[1] == 0:
        raise InputSchemaError(f"{path}: no columns; expected float columns '<structure>__<k>'")
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            raise InputSchemaError(f"{path}: column {col!r} has dtype {df[col].dtype}; expected float32")
    X = df.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        j = int(np.where(bad.any(axis=0))[0][0])
        raise InputSchemaError(
            f"{path}: column {df.columns[j]!r} has {int(bad[:, j].sum())} NaN/inf value(s); the embed stage must write finite values"
        )
    return X, [str(c) for c in df.columns]


def representation_paths(embeddings_dir: Path) -> list[Path]:
    """List the ``<representation>.parquet`` files of ``embeddings_dir``, in file-name order."""
    embeddings_dir = Path(embeddings_dir)
    if not embeddings_dir.is_dir():
        raise MissingInputError(f"{embeddings_dir}: embeddings folder not found; run `ehr-hcl embed` first")
    paths = sorted(embeddings_dir.glob("*.parquet"))
    if not paths:
        raise MissingInputError(
            f"{embeddings_dir}: no <representation>.parquet files; run `ehr-hcl embed` first"
        )
    return paths

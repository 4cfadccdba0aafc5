"""Medications: counts of prescriptions started before the prediction time, over a train-split vocabulary.

Drug names are normalised (lower case, inner whitespace collapsed) so ``"Heparin "`` and ``"HEPARIN"`` are
one token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from pipeline.features.codes import (
    ModalityMatrix,
    aggregate_tokens,
    count_matrix,
    empty_modality,
    fit_vocabulary,
    n_train_candidates,
    row_provenance,
)


def drug_token(code: pl.Expr) -> pl.Expr:
    """``MEDICATION//<drug>`` → ``MEDICATION//<normalised drug>``."""
    drug = (
        code.str.strip_prefix("MEDICATION//")
        .str.to_lowercase()
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
    return pl.concat_str([pl.lit("MEDICATION//"), drug])


def aggregate_medications(windowed: pl.LazyFrame, config: Any) -> pl.LazyFrame:
    """One batch of windowed MEDICATION events → (row_idx, token, n, max_time)."""
    return aggregate_tokens(windowed, drug_token(pl.col("code")))


def build_medications(agg: pl.DataFrame, n_rows: int, train_rows: np.ndarray, config: Any) -> ModalityMatrix:
    """Medication counts.

    Parameters
    ----------
    agg : polars.DataFrame with columns row_idx, token, n, max_time
        Output of :func:`aggregate_medications` for all rows.
    n_rows : int
    train_rows : ndarray of shape (n_rows,), bool
    config : MedicationsConfig
        ``min_count`` (train rows a drug must appear in), ``max_width``, ``log_counts``.
    """
    vocab = fit_vocabulary(agg, train_rows, config.min_count, config.max_width)
    if vocab.height == 0:
        return empty_modality(
            "medications", n_rows, f"no drug reaches min_count={config.min_count} in train rows"
        )
    values, used = count_matrix(agg, vocab, n_rows)
    if config.log_counts:
        values = np.log1p(values)
    n_events, max_time = row_provenance(used, n_rows)
    info = {
        "log_counts": config.log_counts,
        "n_train_candidate_tokens": n_train_candidates(agg, train_rows),
        "train_document_frequency": dict(zip(vocab["token"].to_list(), vocab["df"].to_list(), strict=True)),
    }
    return ModalityMatrix(values.astype(np.float32), vocab["token"].to_list(), n_events, max_time, info)

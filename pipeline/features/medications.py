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
    vocabulary_frame,
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


def fit_medications(agg: pl.DataFrame, train_rows: np.ndarray, config: Any) -> dict[str, Any]:
    """Fit the drug vocabulary on the train rows (``tokens``, ``df``; or ``absent`` and ``reason``)."""
    vocab = fit_vocabulary(agg, train_rows, config.min_count, config.max_width)
    if vocab.height == 0:
        return {"absent": True, "reason": f"no drug reaches min_count={config.min_count} in train rows"}
    return {
        "tokens": vocab["token"].to_list(),
        "df": vocab["df"].to_list(),
        "n_train_candidate_tokens": n_train_candidates(agg, train_rows),
    }


def build_medications(
    agg: pl.DataFrame, n_rows: int, train_rows: np.ndarray, config: Any, state: dict[str, Any] | None = None
) -> ModalityMatrix:
    """Medication counts.

    Parameters
    ----------
    agg : polars.DataFrame with columns row_idx, token, n, max_time
        Output of :func:`aggregate_medications` for all rows.
    n_rows : int
    train_rows : ndarray of shape (n_rows,), bool
    config : MedicationsConfig
        ``min_count`` (train rows a drug must appear in), ``max_width``, ``log_counts``.
    state : dict, optional
        A state from :func:`fit_medications`, applied unchanged; None fits one on ``train_rows``.
    """
    if state is None:
        state = fit_medications(agg, train_rows, config)
    if state.get("absent"):
        return empty_modality("medications", n_rows, state["reason"])
    values, used = count_matrix(agg, vocabulary_frame(state), n_rows)
    if config.log_counts:
        values = np.log1p(values)
    n_events, max_time = row_provenance(used, n_rows)
    info = {
        "log_counts": config.log_counts,
        "n_train_candidate_tokens": state["n_train_candidate_tokens"],
        "train_document_frequency": dict(zip(state["tokens"], state["df"], strict=True)),
    }
    return ModalityMatrix(values.astype(np.float32), state["tokens"], n_events, max_time, info, state=state)

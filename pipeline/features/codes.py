"""Diagnosis and procedure codes: counts or TF-IDF over a vocabulary fit on train rows.

Input is a *windowed* event frame (one row per (label row, event) pair that passed the time rule, built by
:mod:`pipeline.features.build`), so nothing here can see an event after its row's prediction time.

This module also holds the small pieces the other modalities share: :class:`ModalityMatrix` (what every
modality builder returns), :func:`fit_vocabulary` / :func:`count_matrix` (train-only vocabularies and the
sparse-to-dense counting used by codes and medications) and :func:`row_provenance`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

logger = logging.getLogger(__name__)

CODE_FAMILIES = ("DIAGNOSIS", "PROCEDURE")


@dataclass
class ModalityMatrix:
    """One modality's features for every label row.

    Attributes
    ----------
    values : ndarray of shape (n_rows, n_features), float32
        The feature matrix, rows in label order.
    names : list of str
        Column names, ``len(names) == n_features``.
    n_events : ndarray of shape (n_rows,), int64
        Number of events that fed each row (0 = modality absent for that row).
    max_time : polars.Series of length n_rows, Datetime("us")
        Latest event time that fed each row, null when none.
    info : dict
        Train-split aggregates for ``vocabulary.json`` (never row-level data, never note text).
    run : dict
        Facts about this run (cache hits, rates) for the stage summary; not part of what was fitted.
    state : dict or None
        What was fitted (vocabulary, standardisation, encoder), full precision, to apply unchanged to other
        rows (``fitted.json``); None for the all-absent placeholder.
    """

    values: np.ndarray
    names: list[str]
    n_events: np.ndarray
    max_time: pl.Series
    info: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] | None = None

    @property
    def available(self) -> np.ndarray:
        """Boolean mask of shape (n_rows,): the row has at least one event of this modality."""
        return self.n_events > 0


def row_provenance(used: pl.DataFrame, n_rows: int) -> tuple[np.ndarray, pl.Series]:
    """Per-row event count and latest event time.

    Parameters
    ----------
    used : polars.DataFrame with columns row_idx, n, max_time
        Aggregated events that fed the features (several lines per row allowed).
    n_rows : int

    Returns
    -------
    n_events : ndarray of shape (n_rows,), int64
    max_time : polars.Series of length n_rows, Datetime("us"), null where the row has no event
    """
    agg = used.group_by("row_idx").agg(pl.col("n").sum().alias("n"), pl.col("max_time").max().alias("t"))
    frame = pl.DataFrame({"row_idx": np.arange(n_rows, dtype=np.uint32)}).join(
        agg.with_columns(pl.col("row_idx").cast(pl.UInt32)), on="row_idx", how="left"
    )
    frame = frame.sort("row_idx")
    n_events = frame["n"].fill_null(0).to_numpy().astype(np.int64)
    max_time = frame["t"].cast(pl.Datetime("us")).alias("max_time")
    return n_events, max_time


def aggregate_tokens(windowed: pl.LazyFrame, token: pl.Expr) -> pl.LazyFrame:
    """(row_idx, token) → number of events ``n`` and latest time ``max_time`` (one batch of windowed events)."""
    return (
        windowed.select("row_idx", "time", token.alias("token"))
        .group_by("row_idx", "token")
        .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("time").max().alias("max_time"))
    )


def empty_modality(name: str, n_rows: int, reason: str) -> ModalityMatrix:
    """Build a placeholder for a modality with no usable events: one all-zero column ``<name>__none``."""
    logger.warning(
        "features: modality %r has no usable events (%s); writing zeros with mask False", name, reason
    )
    return ModalityMatrix(
        values=np.zeros((n_rows, 1), dtype=np.float32),
        names=[f"{name}__none"],
        n_events=np.zeros(n_rows, dtype=np.int64),
        max_time=pl.Series("max_time", [None] * n_rows, dtype=pl.Datetime("us")),
        info={"absent": True, "reason": reason},
        state={"absent": True, "reason": reason},
    )


def fit_vocabulary(agg: pl.DataFrame, train_rows: np.ndarray, min_count: int, max_width: int) -> pl.DataFrame:
    """Choose tokens by train-row document frequency.

    Parameters
    ----------
    agg : polars.DataFrame with columns row_idx, token (one line per row and token)
        Aggregated windowed events.
    train_rows : ndarray of shape (n_rows,), bool
        True for rows of the train split; only those rows are looked at.
    min_count : int
        Minimum number of distinct train rows a token must appear in.
    max_width : int
        Keep at most this many tokens (most frequent first, ties by name, so the choice is deterministic).

    Returns
    -------
    polars.DataFrame with columns token, df (train rows containing it), col (0..width-1)
    """
    df = (
        _train_only(agg, train_rows)
        .group_by("token")
        .agg(pl.col("row_idx").n_unique().alias("df"))
        .filter(pl.col("df") >= min_count)
        .sort(["df", "token"], descending=[True, False])
        .head(max_width)
    )
    return df.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("col"))


def _train_only(frame: pl.DataFrame, train_rows: np.ndarray) -> pl.DataFrame:
    train_idx = pl.Series(np.flatnonzero(train_rows).astype(np.uint32))
    return frame.filter(pl.col("row_idx").cast(pl.UInt32).is_in(train_idx.implode()))


def count_matrix(agg: pl.DataFrame, vocab: pl.DataFrame, n_rows: int) -> tuple[np.ndarray, pl.DataFrame]:
    """Dense (n_rows, len(vocab)) float32 counts of in-vocabulary tokens, and the lines that were counted.

    ``agg`` has columns row_idx, token, n, max_time; the second return value keeps row_idx, n and max_time
    of the in-vocabulary lines (for provenance).
    """
    used = agg.join(vocab.select("token", "col"), on="token", how="inner")
    out = np.zeros((n_rows, vocab.height), dtype=np.float32)
    if used.height:
        out[used["row_idx"].to_numpy(), used["col"].to_numpy()] = used["n"].to_numpy().astype(np.float32)
    return out, used.select("row_idx", "n", "max_time")


def n_train_candidates(agg: pl.DataFrame, train_rows: np.ndarray) -> int:
    """Count the distinct tokens seen in train rows (before min_count / max_width)."""
    return int(_train_only(agg, train_rows)["token"].n_unique())


def tfidf_idf(doc_freq: np.ndarray, n_train: int) -> np.ndarray:
    """Smoothed IDF, ``ln((1 + n) / (1 + df)) + 1`` as scikit-learn, from train-row document frequencies."""
    return (np.log((1.0 + n_train) / (1.0 + doc_freq.astype(np.float64))) + 1.0).astype(np.float32)


def apply_tfidf(counts: np.ndarray, idf: np.ndarray) -> np.ndarray:
    """Weight counts by ``idf`` and L2-normalise the rows (zero rows stay zero)."""
    weighted = counts * idf[None, :]
    norms = np.linalg.norm(weighted, axis=1, keepdims=True)
    np.divide(weighted, norms, out=weighted, where=norms > 0)
    return weighted.astype(np.float32)


def rollup_expr(code: pl.Expr) -> pl.Expr:
    """Roll an ICD code up to its category.

    ICD-10-CM and ICD-10-PCS to 3 characters, ICD-9-CM diagnoses to 3 digits (4 for E codes), ICD-9
    procedures to their 2-digit category. Non-ICD codes are unchanged.

    Codes are ``<FAMILY>//ICD//<version>//<code>``; dots in the code are ignored.
    """
    parts = code.str.split("//")
    fam = parts.list.get(0, null_on_oob=True)
    system = parts.list.get(1, null_on_oob=True)
    version = parts.list.get(2, null_on_oob=True)
    raw = parts.list.get(3, null_on_oob=True).str.replace_all(".", "", literal=True)
    length = (
        pl.when((fam == "DIAGNOSIS") & (version == "9") & raw.str.starts_with("E"))
        .then(pl.lit(4))
        .when((fam == "PROCEDURE") & (version == "9"))
        .then(pl.lit(2))
        .otherwise(pl.lit(3))
    )
    rolled = pl.concat_str([fam, system, version, raw.str.slice(0, length)], separator="//")
    return (
        pl.when((system == "ICD") & raw.is_not_null() & (parts.list.len() == 4)).then(rolled).otherwise(code)
    )


def code_token(config: Any) -> pl.Expr:
    """Return the vocabulary token of a code event (rolled up to its ICD category when ``icd_rollup``)."""
    return rollup_expr(pl.col("code")) if config.icd_rollup else pl.col("code")


def aggregate_codes(windowed: pl.LazyFrame, config: Any) -> pl.LazyFrame:
    """One batch of windowed DIAGNOSIS/PROCEDURE events → (row_idx, token, n, max_time)."""
    return aggregate_tokens(windowed, code_token(config))


def fit_codes(agg: pl.DataFrame, train_rows: np.ndarray, config: Any) -> dict[str, Any]:
    """Fit the codes vocabulary (and IDF weights) on the train rows.

    Returns
    -------
    dict
        The fitted state :func:`build_codes` applies: ``tokens``, ``df`` (train rows per token), ``n_train``,
        ``n_train_candidate_tokens``, ``idf`` (None unless ``weighting`` is tfidf); or ``absent`` and ``reason``.
    """
    vocab = fit_vocabulary(agg, train_rows, config.min_count, config.max_width)
    if vocab.height == 0:
        return {"absent": True, "reason": f"no code reaches min_count={config.min_count} in train rows"}
    n_train = int(train_rows.sum())
    idf = None
    if config.weighting == "tfidf":
        idf = tfidf_idf(vocab["df"].to_numpy(), n_train).tolist()
    return {
        "tokens": vocab["token"].to_list(),
        "df": vocab["df"].to_list(),
        "n_train": n_train,
        "n_train_candidate_tokens": n_train_candidates(agg, train_rows),
        "idf": idf,
    }


def vocabulary_frame(state: dict[str, Any]) -> pl.DataFrame:
    """Return the fitted vocabulary as a frame with columns token, df, col (for :func:`count_matrix`)."""
    return pl.DataFrame(
        {"token": state["tokens"], "df": state["df"], "col": np.arange(len(state["tokens"]), dtype=np.uint32)},
        schema={"token": pl.String, "df": pl.UInt32, "col": pl.UInt32},
    )


def build_codes(
    agg: pl.DataFrame, n_rows: int, train_rows: np.ndarray, config: Any, state: dict[str, Any] | None = None
) -> ModalityMatrix:
    """Codes features.

    Parameters
    ----------
    agg : polars.DataFrame with columns row_idx, token, n, max_time
        Output of :func:`aggregate_codes` for all rows (events already passed the time rule).
    n_rows : int
        Number of label rows.
    train_rows : ndarray of shape (n_rows,), bool
    config : CodesConfig
        ``weighting`` (counts|tfidf), ``min_count``, ``max_width``, ``icd_rollup``.
    state : dict, optional
        A state from :func:`fit_codes` (e.g. fitted on the pretraining population), applied unchanged;
        None fits one on ``train_rows``.
    """
    if state is None:
        state = fit_codes(agg, train_rows, config)
    if state.get("absent"):
        return empty_modality("codes", n_rows, state["reason"])
    vocab = vocabulary_frame(state)
    values, used = count_matrix(agg, vocab, n_rows)
    info: dict[str, Any] = {
        "weighting": config.weighting,
        "icd_rollup": config.icd_rollup,
        "n_train_candidate_tokens": state["n_train_candidate_tokens"],
        "train_document_frequency": dict(zip(state["tokens"], state["df"], strict=True)),
    }
    if config.weighting == "tfidf":
        values = apply_tfidf(values, np.asarray(state["idf"], dtype=np.float32))
        info["idf"] = [round(float(v), 6) for v in state["idf"]]
    n_events, max_time = row_provenance(used, n_rows)
    return ModalityMatrix(values, state["tokens"], n_events, max_time, info, state=state)

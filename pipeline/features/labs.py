"""Labs: per chosen lab item, summary statistics of the values stored before the prediction time.

For every item (``LAB//<itemid>//<unit>``; a unit change makes a different item) and row: last value, mean,
min, max, number of results and hours since the last result, each standardised with the mean and standard
deviation over *train* rows that have the item (counts and hours on a ``log1p`` scale first), then 0 where the
row has no value; plus one missingness indicator per item. Items are chosen by the number of train rows that
have them. A result whose ``numeric_value`` is null still counts as a result (count, hours since last) but not
in the value statistics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from pipeline.features.codes import ModalityMatrix, empty_modality, fit_vocabulary, row_provenance

LAB_STATS = ("last", "mean", "min", "max", "count", "hours_since_last")
_LOG_STATS = {"count", "hours_since_last"}


def aggregate_labs(windowed: pl.LazyFrame, config: Any) -> pl.LazyFrame:
    """One batch of windowed LAB events → one line per (row_idx, token) with every statistic.

    Applies ``config.window_hours``. Value statistics are null when the row has no numeric value for the item.
    Columns: row_idx, token, n, max_time, last, mean, min, max, count, hours_since_last.
    """
    if config.window_hours is not None:
        start = pl.col("prediction_time") - pl.duration(microseconds=int(config.window_hours * 3.6e9))
        windowed = windowed.filter(pl.col("time") >= start)
    value = pl.col("numeric_value").cast(pl.Float64)
    return (
        windowed.sort("time")  # group_by keeps row order inside groups: `last` is the latest result
        .group_by("row_idx", pl.col("code").alias("token"))
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("time").max().alias("max_time"),
            value.last(ignore_nulls=True).alias("last"),
            value.mean().alias("mean"),
            value.min().alias("min"),
            value.max().alias("max"),
            pl.col("prediction_time").first().alias("prediction_time"),
        )
        .with_columns(
            pl.col("n").cast(pl.Float64).alias("count"),
            ((pl.col("prediction_time") - pl.col("max_time")).dt.total_microseconds() / 3.6e9).alias(
                "hours_since_last"
            ),
        )
        .drop("prediction_time")
        .with_columns(pl.col("token").cast(pl.String))
    )


def _stat_matrix(agg: pl.DataFrame, stat: str, n_rows: int, n_items: int) -> np.ndarray:
    """Dense (n_rows, n_items) float64 values of one statistic, NaN where the row has none (log1p for counts)."""
    dense = np.full((n_rows, n_items), np.nan, dtype=np.float64)
    rows = agg["row_idx"].to_numpy().astype(np.int64)
    cols = agg["col"].to_numpy().astype(np.int64)
    dense[rows, cols] = agg[stat].to_numpy().astype(np.float64)  # nulls arrive as nan
    if stat in _LOG_STATS:
        dense = np.log1p(np.clip(dense, 0.0, None))
    return dense


def fit_labs(agg: pl.DataFrame, train_rows: np.ndarray, config: Any) -> dict[str, Any]:
    """Choose the lab items and fit each statistic's standardisation on the train rows that have the item.

    Returns
    -------
    dict
        ``items``, ``df`` (train rows with the item), ``mean`` and ``std`` per statistic (lists over items);
        or ``absent`` and ``reason``.
    """
    items = fit_vocabulary(agg, train_rows, config.min_count, config.max_items)
    if items.height == 0:
        return {"absent": True, "reason": f"no lab item reaches min_count={config.min_count} in train rows"}
    agg = agg.join(items.select("token", "col"), on="token", how="inner")
    state: dict[str, Any] = {"items": items["token"].to_list(), "df": items["df"].to_list(), "mean": {}, "std": {}}
    for stat in config.stats:
        train = _stat_matrix(agg, stat, len(train_rows), items.height)[train_rows]
        with np.errstate(invalid="ignore"):
            present = np.isfinite(train)
            n_present = present.sum(axis=0)
            mean = np.where(n_present > 0, np.nansum(train, axis=0) / np.maximum(n_present, 1), 0.0)
            var = np.where(
                n_present > 0,
                np.nansum((train - mean[None, :]) ** 2, axis=0) / np.maximum(n_present, 1),
                1.0,
            )
        std = np.sqrt(var)
        state["mean"][stat] = mean.tolist()
        state["std"][stat] = np.where(std > 1e-12, std, 1.0).tolist()
    return state


def build_labs(
    agg: pl.DataFrame, n_rows: int, train_rows: np.ndarray, config: Any, state: dict[str, Any] | None = None
) -> ModalityMatrix:
    """Lab features.

    Parameters
    ----------
    agg : polars.DataFrame
        Output of :func:`aggregate_labs` for all rows.
    n_rows : int
    train_rows : ndarray of shape (n_rows,), bool
    config : LabsConfig
        ``max_items``, ``min_count``, ``stats`` (subset of :data:`LAB_STATS`), ``missing_indicators``,
        ``window_hours`` (only results stored within this many hours before the prediction time; None = all).
    state : dict, optional
        A state from :func:`fit_labs`, applied unchanged; None fits one on ``train_rows``.

    Returns
    -------
    ModalityMatrix with columns ``<item>__<stat>`` for each item and stat, then ``<item>__missing``.
    """
    if state is None:
        state = fit_labs(agg, train_rows, config)
    if state.get("absent"):
        return empty_modality("labs", n_rows, state["reason"])
    names = state["items"]
    items = pl.DataFrame(
        {"token": names, "col": np.arange(len(names), dtype=np.uint32)},
        schema={"token": pl.String, "col": pl.UInt32},
    )
    agg = agg.join(items, on="token", how="inner")
    used = agg.select("row_idx", "n", "max_time")
    n_items = len(names)
    blocks: list[np.ndarray] = []
    col_names: list[str] = []
    stats_info: dict[str, dict[str, list[float]]] = {}
    for stat in config.stats:
        mean, std = np.asarray(state["mean"][stat]), np.asarray(state["std"][stat])
        standardised = (_stat_matrix(agg, stat, n_rows, n_items) - mean[None, :]) / std[None, :]
        standardised[~np.isfinite(standardised)] = 0.0
        blocks.append(standardised.astype(np.float32))
        col_names += [f"{name}__{stat}" for name in names]
        stats_info[stat] = {
            "train_mean": [round(float(v), 6) for v in mean],
            "train_std": [round(float(v), 6) for v in std],
        }
    if config.missing_indicators:
        missing = np.ones((n_rows, n_items), dtype=np.float32)
        missing[agg["row_idx"].to_numpy().astype(np.int64), agg["col"].to_numpy().astype(np.int64)] = 0.0
        blocks.append(missing)
        col_names += [f"{name}__missing" for name in names]
    n_events, max_time = row_provenance(used, n_rows)
    info = {
        "items": names,
        "train_rows_with_item": state["df"],
        "window_hours": config.window_hours,
        "standardisation": stats_info,
    }
    return ModalityMatrix(np.concatenate(blocks, axis=1), col_names, n_events, max_time, info, state=state)

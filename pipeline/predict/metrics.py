"""Binary-outcome metrics with subject-level bootstrap confidence intervals.

Every metric here accepts optional non-negative ``weight`` per row. A bootstrap over *subjects* is then a
reweighting: a resample draws subjects with replacement and gives each row the number of times its
subject was drawn. Rows of one subject therefore move together, so duplicating a subject's rows does not
narrow the interval (as row resampling would).

All functions are plain numpy (no scikit-learn at import) and return ``nan`` when a metric is undefined
(e.g. AUROC with one class only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]


def _prep(y, p, weight=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=np.float64).ravel()
    if not (len(y) == len(p) == len(w)):
        raise ValueError(f"y, p and weight lengths differ: {len(y)}, {len(p)}, {len(w)}")
    return y, p, w


def auroc(y, p, weight=None) -> float:
    """Area under the ROC curve (Mann–Whitney form, ties count one half).

    Parameters
    ----------
    y : array of shape (n,)
        Binary outcome (0/1 or bool).
    p : array of shape (n,)
        Scores; higher means more likely positive.
    weight : array of shape (n,), optional
        Row weights (bootstrap counts).
    """
    y, p, w = _prep(y, p, weight)
    uniq, inv = np.unique(p, return_inverse=True)
    wpos = np.bincount(inv, weights=w * y, minlength=len(uniq))
    wneg = np.bincount(inv, weights=w * (1.0 - y), minlength=len(uniq))
    tot_pos, tot_neg = wpos.sum(), wneg.sum()
    if tot_pos <= 0 or tot_neg <= 0:
        return float("nan")
    below = np.cumsum(wneg) - wneg  # negatives with strictly lower score
    return float(np.sum(wpos * (below + 0.5 * wneg)) / (tot_pos * tot_neg))


def auprc(y, p, weight=None) -> float:
    """Average precision (step-wise area under the precision–recall curve, as scikit-learn computes it)."""
    y, p, w = _prep(y, p, weight)
    uniq, inv = np.unique(-p, return_inverse=True)  # ascending -p = descending score
    wpos = np.bincount(inv, weights=w * y, minlength=len(uniq))
    wneg = np.bincount(inv, weights=w * (1.0 - y), minlength=len(uniq))
    tot_pos = wpos.sum()
    if tot_pos <= 0:
        return float("nan")
    tp = np.cumsum(wpos)
    fp = np.cumsum(wneg)
    denom = tp + fp
    precision = np.divide(tp, denom, out=np.zeros_like(tp), where=denom > 0)
    recall = tp / tot_pos
    drec = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(drec * precision))


def brier(y, p, weight=None) -> float:
    """Mean squared difference between predicted probability and outcome."""
    y, p, w = _prep(y, p, weight)
    if w.sum() <= 0:
        return float("nan")
    return float(np.sum(w * (p - y) ** 2) / w.sum())


def _logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return np.log(p / (1 - p))


def _irls(X: np.ndarray, y: np.ndarray, w: np.ndarray, offset: np.ndarray, max_iter: int = 50) -> np.ndarray:
    """Weighted logistic regression by Newton's method (tiny ridge for stability)."""
    beta = np.zeros(X.shape[1])
    for _ in range(max_iter):
        eta = X @ beta + offset
        mu = 1.0 / (1.0 + np.exp(-np.clip(eta, -30, 30)))
        grad = X.T @ (w * (y - mu))
        hess = (X * (w * mu * (1 - mu))[:, None]).T @ X + 1e-9 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


def calibration_intercept_slope(y, p, weight=None) -> tuple[float, float]:
    """Calibration intercept (calibration-in-the-large) and slope.

    The slope is the coefficient of ``logit(p)`` in a logistic regression of ``y`` on ``logit(p)``;
    the intercept is the constant of a logistic regression with ``logit(p)`` as offset (slope fixed at 1).
    Perfect calibration gives (0, 1); a slope below 1 means over-confident predictions.
    """
    y, p, w = _prep(y, p, weight)
    if np.sum(w * y) <= 0 or np.sum(w * (1 - y)) <= 0:
        return float("nan"), float("nan")
    lp = _logit(p)
    ones = np.ones((len(y), 1))
    intercept = _irls(ones, y, w, lp)[0]
    slope = _irls(np.column_stack([ones, lp]), y, w, np.zeros_like(lp))[1]
    return float(intercept), float(slope)


def ece(y, p, weight=None, n_bins: int = 10) -> float:
    """Compute the expected calibration error over ``n_bins`` equal-width probability bins (weighted |obs − pred|)."""
    y, p, w = _prep(y, p, weight)
    if w.sum() <= 0:
        return float("nan")
    b = np.minimum((p * n_bins).astype(int), n_bins - 1)
    yb = np.bincount(b, weights=w * y, minlength=n_bins)
    pb = np.bincount(b, weights=w * p, minlength=n_bins)
    return float(np.sum(np.abs(yb - pb)) / w.sum())


def calibration_curve(y, p, n_bins: int = 10) -> list[dict]:
    """Observed vs predicted risk in ``n_bins`` quantile bins: list of {x (mean predicted), y (observed), n}."""
    y, p, _ = _prep(y, p)
    if len(y) == 0:
        return []
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, min(n_bins, len(y))):
        if len(chunk):
            out.append({"x": float(p[chunk].mean()), "y": float(y[chunk].mean()), "n": int(len(chunk))})
    return out


# ----------------------------------------------------------------------------------------------------
# Subject bootstrap
# ----------------------------------------------------------------------------------------------------


def subject_bootstrap_weights(subject_ids, n_resamples: int, seed: int) -> np.ndarray:
    """Row weights for ``n_resamples`` bootstrap resamples over subjects.

    Returns
    -------
    weights : array of shape (n_resamples, n_rows)
        ``weights[b, i]`` = how many times row ``i``'s subject was drawn in resample ``b``.
    """
    _, inv = np.unique(np.asarray(subject_ids), return_inverse=True)
    n_subj = int(inv.max()) + 1 if len(inv) else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, max(n_subj, 1), size=(n_resamples, n_subj))
    counts = np.zeros((n_resamples, n_subj))
    for b in range(n_resamples):
        counts[b] = np.bincount(draws[b], minlength=n_subj)
    return counts[:, inv]


def row_bootstrap_weights(n_rows: int, n_resamples: int, seed: int) -> np.ndarray:
    """Row weights for a naive bootstrap over rows (for comparison only; do not use for reporting)."""
    return subject_bootstrap_weights(np.arange(n_rows), n_resamples, seed)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile bootstrap interval."""

    value: float
    lo: float
    hi: float
    n_valid: int  # resamples where the metric was defined

    def as_dict(self, name: str) -> dict[str, float]:
        """Return ``{name: value, name_lo: lo, name_hi: hi}``."""
        return {name: self.value, f"{name}_lo": self.lo, f"{name}_hi": self.hi}


def _percentiles(values: np.ndarray, alpha: float) -> tuple[float, float, int]:
    ok = values[np.isfinite(values)]
    if len(ok) < 2:
        return float("nan"), float("nan"), len(ok)
    lo, hi = np.percentile(ok, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi), len(ok)


def bootstrap_metric(metric: MetricFn, y, p, weights: np.ndarray, alpha: float = 0.05) -> Estimate:
    """Point estimate of ``metric`` and its percentile interval over bootstrap ``weights`` (B, n)."""
    value = metric(y, p, None)
    values = np.array([metric(y, p, w) for w in weights])
    lo, hi, n_valid = _percentiles(values, alpha)
    return Estimate(float(value), lo, hi, n_valid)


def paired_bootstrap(
    metric: MetricFn, y, p_a, p_b, weights: np.ndarray, alpha: float = 0.05
) -> dict[str, float]:
    """Difference ``metric(a) − metric(b)`` on the same resamples, with interval and two-sided p-value.

    The p-value is twice the smaller share of resampled differences on either side of zero (bounded
    below by 1/(B+1)).
    """
    diff = metric(y, p_a, None) - metric(y, p_b, None)
    diffs = np.array([metric(y, p_a, w) - metric(y, p_b, w) for w in weights])
    lo, hi, n_valid = _percentiles(diffs, alpha)
    ok = diffs[np.isfinite(diffs)]
    if len(ok):
        p_value = min(1.0, 2 * min(np.mean(ok <= 0), np.mean(ok >= 0)))
        p_value = max(p_value, 1.0 / (len(ok) + 1))
    else:
        p_value = float("nan")
    return {"diff": float(diff), "diff_lo": lo, "diff_hi": hi, "p_value": float(p_value), "n_valid": n_valid}


def roc_band(y, p, weights: np.ndarray, grid: np.ndarray, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """ROC curve (TPR at each FPR of ``grid``) with a pointwise bootstrap band."""

    def tpr_at(w) -> np.ndarray:
        yy, pp, ww = _prep(y, p, w)
        order = np.argsort(-pp, kind="stable")
        tp = np.concatenate([[0.0], np.cumsum((ww * yy)[order])])
        fp = np.concatenate([[0.0], np.cumsum((ww * (1 - yy))[order])])
        if tp[-1] <= 0 or fp[-1] <= 0:
            return np.full(len(grid), np.nan)
        return np.interp(grid, fp / fp[-1], tp / tp[-1])

    point = tpr_at(None)
    curves = np.array([tpr_at(w) for w in weights]) if len(weights) else np.empty((0, len(grid)))
    lo, hi = _band(curves, alpha, len(grid))
    return {"x": grid, "y": point, "y_lo": lo, "y_hi": hi}


def pr_band(y, p, weights: np.ndarray, grid: np.ndarray, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Precision–recall curve (interpolated precision at each recall of ``grid``) with a bootstrap band."""

    def prec_at(w) -> np.ndarray:
        yy, pp, ww = _prep(y, p, w)
        order = np.argsort(-pp, kind="stable")
        tp = np.cumsum((ww * yy)[order])
        fp = np.cumsum((ww * (1 - yy))[order])
        if len(tp) == 0 or tp[-1] <= 0:
            return np.full(len(grid), np.nan)
        recall = tp / tp[-1]
        precision = tp / np.maximum(tp + fp, 1e-12)
        # interpolated precision: best precision at recall >= r
        prec_interp = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, grid, side="left")
        idx = np.minimum(idx, len(recall) - 1)
        return prec_interp[idx]

    point = prec_at(None)
    curves = np.array([prec_at(w) for w in weights]) if len(weights) else np.empty((0, len(grid)))
    lo, hi = _band(curves, alpha, len(grid))
    return {"x": grid, "y": point, "y_lo": lo, "y_hi": hi}


def _band(curves: np.ndarray, alpha: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    ok = curves[np.all(np.isfinite(curves), axis=1)] if len(curves) else curves
    if len(ok) < 2:
        return np.full(n, np.nan), np.full(n, np.nan)
    lo, hi = np.percentile(ok, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return lo, hi


def calibration_summary(y, p) -> dict[str, float]:
    """Brier, calibration intercept and slope, and ECE as one dict (point estimates)."""
    intercept, slope = calibration_intercept_slope(y, p)
    return {"calibration_intercept": intercept, "calibration_slope": slope, "ece": ece(y, p)}


METRICS: dict[str, MetricFn] = {"auroc": auroc, "auprc": auprc, "brier": brier}

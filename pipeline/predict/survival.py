"""Time-to-event models on a representation (lifelines).

The cohort gives each row ``event_time_days`` and ``event_type`` in {"outcome", "competing", "censored"}.
The Cox model is *cause-specific*: the outcome is the event, competing events and censoring are both
censored. Discrimination is the concordance index on held_out (bootstrap CI over subjects). For figures:
Kaplan–Meier curves of outcome-free survival by tertile of predicted risk, and the Aalen–Johansen
cumulative incidence of the outcome with the competing event accounted for, by the same tertiles.
lifelines is imported inside the functions.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from hcl.preprocessing import column_scale

logger = logging.getLogger(__name__)

MIN_DURATION_DAYS = 1e-3
TERTILES = ("low", "middle", "high")


def event_codes(event_type) -> np.ndarray:
    """0 = censored, 1 = outcome, 2 = competing (shape (n,))."""
    et = np.asarray(event_type, dtype=object)
    return np.select([et == "outcome", et == "competing"], [1, 2], default=0).astype(int)


def _durations(t) -> tuple[np.ndarray, int]:
    t = np.asarray(t, dtype=float)
    bad = ~np.isfinite(t) | (t < MIN_DURATION_DAYS)
    return np.where(bad, MIN_DURATION_DAYS, t), int(bad.sum())


def fit_cox(
    X_train: np.ndarray,
    time_train,
    event_train,
    X_held: np.ndarray,
    time_held,
    event_held,
    subject_held,
    penalizer: float = 0.1,
    n_resamples: int = 200,
    seed: int = 0,
    max_columns: int = 20,
) -> dict[str, Any]:
    """Cause-specific Cox PH on train; concordance, KM and CIF curves on held_out.

    Parameters
    ----------
    X_train, X_held : arrays of shape (n_train, d), (n_held, d)
    time_train, time_held : durations in days, shape (n,)
    event_train, event_held : ``event_type`` strings, shape (n,)
    subject_held : subject ids of held_out rows, for the bootstrap
    penalizer : L2 penalty of the Cox fit (stabilises many-column representations); multiplied by 10 and
        retried (twice at most) when the Newton iterations do not converge.
    max_columns : a representation wider than this enters the Cox model through its first ``max_columns``
        principal components (fitted on train, after standardisation).

    Returns
    -------
    dict with ``c_index``, ``c_index_lo``, ``c_index_hi``, ``n_events_train``, ``n_events_held_out``,
    ``n_clipped_durations``, ``km`` and ``cif`` (lists of {group, t, y} rows), ``risk_held_out`` (n_held,).
    """
    import pandas as pd

    Z_train, Z_held, n_pc = _design(X_train, X_held, max_columns)
    cols = [f"x{j}" for j in range(Z_train.shape[1])]
    t_tr, clipped_tr = _durations(time_train)
    t_ho, clipped_ho = _durations(time_held)
    e_tr = event_codes(event_train)
    e_ho = event_codes(event_held)
    out: dict[str, Any] = {
        "n_events_train": int((e_tr == 1).sum()),
        "n_events_held_out": int((e_ho == 1).sum()),
        "n_competing_held_out": int((e_ho == 2).sum()),
        "n_clipped_durations": clipped_tr + clipped_ho,
        "n_cox_columns": int(Z_train.shape[1]),
        "principal_components": bool(n_pc),
    }
    nan_result = {
        "c_index": float("nan"),
        "c_index_lo": float("nan"),
        "c_index_hi": float("nan"),
        "km": [],
        "cif": [],
        "risk_held_out": np.full(len(t_ho), np.nan),
    }
    if out["n_events_train"] == 0:
        logger.warning("survival: no outcome event in train; Cox model not fitted")
        return {**out, **nan_result}
    df = pd.DataFrame(Z_train, columns=cols)
    df["T"] = t_tr
    df["E"] = (e_tr == 1).astype(int)
    cph, pen = _fit_cph(df, penalizer)
    if cph is None:
        logger.warning(
            "survival: Cox model not fitted. Check: 1) extreme or constant columns in the representation; "
            "2) collinear columns; 3) very few events (%d in train); 4) raise predict.cox_penalizer",
            out["n_events_train"],
        )
        return {**out, **nan_result, "error": "Cox fit did not converge"}
    out["cox_penalizer"] = pen
    risk = np.asarray(cph.predict_partial_hazard(pd.DataFrame(Z_held, columns=cols))).ravel()
    c, lo, hi = _concordance(t_ho, e_ho, risk, subject_held, n_resamples, seed)
    tert = risk_tertiles(risk)
    out.update(
        c_index=c,
        c_index_lo=lo,
        c_index_hi=hi,
        km=km_by_group(t_ho, e_ho, tert),
        cif=cif_by_group(t_ho, e_ho, tert),
        risk_held_out=risk,
    )
    return out


def _fit_cph(df, penalizer: float):
    """Fit a Cox model on ``df`` (columns + ``T``, ``E``); ×10 the penalty and retry, twice at most.

    Returns the fitted model and its penalty, or (None, None) when no attempt converged.
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    for attempt in range(3):
        pen = penalizer * 10**attempt
        try:
            cph = CoxPHFitter(penalizer=pen)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cph.fit(df, duration_col="T", event_col="E")
            return cph, pen
        except ConvergenceError as exc:
            logger.warning(
                "survival: Cox fit did not converge with penalizer %g (%s)",
                pen,
                str(exc).splitlines()[0][:120],
            )
    return None, None


def _concordance(t_ho, e_ho, risk, subject_held, n_resamples: int, seed: int) -> tuple[float, float, float]:
    """Held_out concordance index of ``risk`` for the outcome, with a subject-bootstrap 95% interval."""
    from lifelines.utils import concordance_index

    from pipeline.predict.metrics import subject_bootstrap_weights

    e1 = (e_ho == 1).astype(int)

    def cidx(idx: np.ndarray | None = None) -> float:
        if idx is None:
            idx = np.arange(len(t_ho))
        if e1[idx].sum() == 0:
            return float("nan")
        try:
            return float(concordance_index(t_ho[idx], -risk[idx], e1[idx]))
        except ZeroDivisionError:
            return float("nan")

    c = cidx()
    vals = []
    if n_resamples > 0 and len(t_ho):
        weights = subject_bootstrap_weights(subject_held, n_resamples, seed)
        for w in weights:
            vals.append(cidx(np.repeat(np.arange(len(t_ho)), w.astype(int))))
    vals = np.array([v for v in vals if np.isfinite(v)])
    lo, hi = np.percentile(vals, [2.5, 97.5]) if len(vals) >= 2 else (np.nan, np.nan)
    return c, float(lo), float(hi)


def _design(X_train: np.ndarray, X_held: np.ndarray, max_columns: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Standardise on train and reduce to principal components when wider than ``max_columns``.

    Values are clipped at ±10 SD, so a wild value cannot dominate. Returns (Z_train, Z_held, number of
    components or 0).
    """
    mean, scale = column_scale(X_train)
    Z_train = np.clip((X_train - mean) / scale, -10, 10)
    Z_held = np.clip((X_held - mean) / scale, -10, 10)
    keep = np.isfinite(scale)
    Z_train, Z_held = Z_train[:, keep], Z_held[:, keep]
    if Z_train.shape[1] <= max_columns:
        return Z_train, Z_held, 0
    centre = Z_train.mean(axis=0)
    _, _, vt = np.linalg.svd(Z_train - centre, full_matrices=False)
    basis = vt[:max_columns].T
    return (Z_train - centre) @ basis, (Z_held - centre) @ basis, max_columns


def risk_tertiles(risk: np.ndarray) -> np.ndarray:
    """Label each row "low"/"middle"/"high" by tertile of ``risk`` (ties broken by order)."""
    n = len(risk)
    ranks = np.empty(n, dtype=int)
    ranks[np.argsort(risk, kind="stable")] = np.arange(n)
    idx = np.minimum((3 * ranks) // max(n, 1), 2)
    return np.array(TERTILES, dtype=object)[idx]


def km_by_group(time: np.ndarray, events: np.ndarray, group: np.ndarray) -> list[dict[str, Any]]:
    """Kaplan–Meier outcome-free survival per group: rows {group, t, y, y_lo, y_hi}."""
    from lifelines import KaplanMeierFitter

    rows = []
    for g in TERTILES:
        m = group == g
        if not m.any():
            continue
        kmf = KaplanMeierFitter()
        kmf.fit(time[m], (events[m] == 1).astype(int))
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_
        for t, y, lo, hi in zip(sf.index, sf.values, ci.iloc[:, 0].values, ci.iloc[:, 1].values, strict=True):
            rows.append({"group": g, "t": float(t), "y": float(y), "y_lo": float(lo), "y_hi": float(hi)})
    return rows


def cif_by_group(time: np.ndarray, events: np.ndarray, group: np.ndarray) -> list[dict[str, Any]]:
    """Aalen–Johansen cumulative incidence of the outcome (competing events accounted for) per group."""
    from lifelines import AalenJohansenFitter

    rows = []
    for g in TERTILES:
        m = group == g
        if not m.any() or not (events[m] == 1).any():
            continue
        # jitter=False would raise on tied times; lifelines jitters ties deterministically with a seed.
        ajf = AalenJohansenFitter(calculate_variance=False, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ajf.fit(time[m], events[m], event_of_interest=1)
        cif = ajf.cumulative_density_.iloc[:, 0]
        for t, y in zip(cif.index, cif.values, strict=True):
            rows.append({"group": g, "t": float(t), "y": float(y)})
    return rows

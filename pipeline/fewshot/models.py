"""The k-shot downstream models: fitted on a k-shot train draw, chosen on a k-shot tuning draw.

Each is the predict stage's ``Pipeline(StandardScaler, model)`` (:func:`pipeline.predict.models.build_pipeline`),
the scaler fitted on the k-shot train rows, with settings for few rows:

``logistic``     L2 logistic regression; ``C`` from ``fewshot.logistic_c`` chosen by AUROC on the k-shot
                 tuning rows (ties go to the smaller ``C``, the stronger penalty).
``group_lasso``  :class:`hcl.selection.GroupLassoClassifier`, one group per structure block; its penalty is
                 chosen by its own stratified K-fold CV on the k-shot train rows with
                 ``K = min(fewshot.group_lasso_cv, rows of the smaller class)``. With one row in a class
                 (k = 1) no 2-fold CV exists: the model is not fitted at that k, and the metrics say why.
                 A representation with fewer than ``fewshot.group_lasso_min_groups`` blocks (``concat``,
                 ``pca``: one block) leaves nothing to select, so the group lasso is not fitted on it either.
``hgb``          histogram gradient boosting with fixed small-sample settings (untuned: the tuning draw is
                 not used): ``min_samples_leaf`` grows with the draw (``rows // 8``, between 1 and 20),
                 early stopping only from ``fewshot.hgb_early_stopping_rows`` train rows up.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.predict.metrics import auroc
from pipeline.predict.models import build_pipeline, structure_groups

logger = logging.getLogger(__name__)

FEWSHOT_MODELS = ("logistic", "group_lasso", "hgb")


@dataclass
class KShotFit:
    """One model fitted on one k-shot draw.

    Attributes
    ----------
    estimator : sklearn.pipeline.Pipeline or None
        The fitted pipeline; None when the model could not be fitted at this k (see ``skipped``).
    hyperparameters : dict
        What was chosen or set for this draw.
    tuning_auroc : float
        AUROC of the fitted model on the k-shot tuning rows (NaN when they hold one class).
    selected_structures : list of str or None
        The group lasso's kept structures (None for other models).
    skipped : str or None
        Why the model was not fitted.
    """

    estimator: Any
    hyperparameters: dict[str, Any]
    tuning_auroc: float
    selected_structures: list[str] | None = None
    skipped: str | None = None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class for the rows of ``X`` (unstandardised)."""
        return np.asarray(self.estimator.predict_proba(X))[:, 1]


def _tuning_auroc(pipe: Any, X_tune: np.ndarray, y_tune: np.ndarray) -> float:
    if len(y_tune) == 0 or y_tune.min() == y_tune.max():
        return float("nan")
    return auroc(y_tune, pipe.predict_proba(X_tune)[:, 1])


def _logistic(X_train, y_train, X_tune, y_tune, settings: dict, seed: int) -> KShotFit:
    cs = sorted(float(c) for c in settings["logistic_c"])
    if len(y_tune) == 0 or y_tune.min() == y_tune.max():
        c = cs[len(cs) // 2]
        logger.warning("logistic: the tuning draw holds one class; using the middle C = %g", c)
        cs = [c]
    best: tuple[float, Any, float] | None = None
    for c in cs:  # ascending: a tie keeps the smaller C
        pipe = build_pipeline("logistic", seed).set_params(model__C=c).fit(X_train, y_train)
        score = _tuning_auroc(pipe, X_tune, y_tune)
        if best is None or (np.isfinite(score) and (not np.isfinite(best[2]) or score > best[2])):
            best = (c, pipe, score)
    c, pipe, score = best
    return KShotFit(pipe, {"C": c}, score)


def _group_lasso(X_train, y_train, X_tune, y_tune, groups, settings: dict, seed: int) -> KShotFit:
    n_groups = len(set(groups))
    if n_groups < int(settings["group_lasso_min_groups"]):
        reason = f"{n_groups} structure block(s): nothing for the group lasso to select between"
        return KShotFit(None, {}, float("nan"), None, reason)
    smaller = int(min(y_train.sum(), len(y_train) - y_train.sum()))
    cv = min(int(settings["group_lasso_cv"]), smaller)
    if cv < 2:
        reason = f"{smaller} row(s) in the smaller class: no 2-fold CV for the group lasso's penalty"
        return KShotFit(None, {}, float("nan"), None, reason)
    pipe = build_pipeline("group_lasso", seed).set_params(
        model__cv=cv,
        model__n_alphas=int(settings["group_lasso_n_alphas"]),
        model__max_iter=int(settings["group_lasso_max_iter"]),
    )
    pipe.fit(X_train, y_train, model__groups=np.asarray(groups))
    selected = [str(s) for s in pipe.named_steps["model"].selected_]
    hyper = {"cv": cv, "alpha": float(pipe.named_steps["model"].alpha_)}
    return KShotFit(pipe, hyper, _tuning_auroc(pipe, X_tune, y_tune), selected)


def _hgb(X_train, y_train, X_tune, y_tune, settings: dict, seed: int) -> KShotFit:
    n = len(y_train)
    hyper = {
        "min_samples_leaf": int(np.clip(n // 8, 1, 20)),
        "early_stopping": bool(n >= int(settings["hgb_early_stopping_rows"])),
        "max_iter": int(settings["hgb_max_iter"]),
        "max_leaf_nodes": 7,
        "learning_rate": 0.1,
        "l2_regularization": 1.0,
    }
    pipe = build_pipeline("hgb", seed).set_params(**{f"model__{k}": v for k, v in hyper.items()})
    pipe.fit(X_train, y_train)
    return KShotFit(pipe, hyper, _tuning_auroc(pipe, X_tune, y_tune))


def fit_kshot(
    name: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_tune: np.ndarray,
    y_tune: np.ndarray,
    columns: Sequence[str],
    settings: dict[str, Any],
    seed: int,
) -> KShotFit:
    """Fit model ``name`` on a k-shot train draw (choosing what it chooses on the k-shot tuning draw).

    Parameters
    ----------
    name : str
        One of :data:`FEWSHOT_MODELS`.
    X_train, X_tune : arrays of shape (n_train, d), (n_tune, d)
        Unstandardised rows of the two draws.
    y_train, y_tune : arrays of 0/1
        Their labels; ``y_train`` holds both classes.
    columns : sequence of str
        The representation's columns ``<structure>__<k>`` (the group lasso's groups).
    settings : dict
        ``logistic_c``, ``group_lasso_cv``, ``group_lasso_n_alphas``, ``group_lasso_max_iter``,
        ``group_lasso_min_groups``, ``hgb_max_iter``,
        ``hgb_early_stopping_rows`` (the fields of :class:`pipeline.fewshot.FewshotConfig`).
    seed : int
        Random state of the model.

    Returns
    -------
    KShotFit

    Raises
    ------
    pipeline.predict.models.ModelUnavailable
        The model's implementation cannot be imported.
    """
    from sklearn.exceptions import ConvergenceWarning

    y_train = np.asarray(y_train, dtype=int)
    y_tune = np.asarray(y_tune, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # few rows are often separable: the group lasso's weakest penalties then stop at max_iter (the 1-SE
        # rule rarely picks them); one warning per fit would drown the log
        warnings.filterwarnings("ignore", message="group-lasso FISTA hit max_iter")
        if name == "logistic":
            return _logistic(X_train, y_train, X_tune, y_tune, settings, seed)
        if name == "group_lasso":
            groups = structure_groups(list(columns))
            return _group_lasso(X_train, y_train, X_tune, y_tune, groups, settings, seed)
        if name == "hgb":
            return _hgb(X_train, y_train, X_tune, y_tune, settings, seed)
    raise ValueError(f"unknown few-shot model {name!r}; known: {list(FEWSHOT_MODELS)}")

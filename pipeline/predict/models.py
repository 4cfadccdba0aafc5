"""Downstream classifiers: fit on ``train``, choose hyper-parameters on ``tuning``.

Four models, all deterministic for a given seed, each a scikit-learn ``Pipeline(StandardScaler, model)``
(the scaler is fitted on train rows):

``logistic``     L2 logistic regression, ``C`` chosen on tuning.
``group_lasso``  :class:`hcl.selection.GroupLassoClassifier`, one group per structure block; its penalty is
                 chosen by K-fold CV on train (1-SE rule); reports the structures it keeps (``selected_``).
``hgb``          histogram gradient boosting, early stopping on a seeded internal validation split.
``mlp``          a small multi-layer perceptron (one hidden layer), ``alpha`` chosen on tuning.

Hyper-parameters are chosen by :class:`~sklearn.model_selection.GridSearchCV` over a
:class:`~sklearn.model_selection.PredefinedSplit` (fit on train, score on tuning, lowest log-loss wins); the
winner is then refitted on train only, so held_out and tuning stay out of the fit. Linear models are exported
as plain JSON weights (:func:`linear_weights`, served by :mod:`pipeline.serving`), so loading them never
unpickles anything. scikit-learn is imported inside the functions that need it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.predict.metrics import auroc
from pipeline.schema import EMBEDDING_COLUMN_SEPARATOR
from pipeline.serving import LINEAR_FORMAT, LinearProbabilityModel, _load_pyfunc  # noqa: F401 - loader of older runs

logger = logging.getLogger(__name__)

MODEL_NAMES = ("logistic", "group_lasso", "hgb", "mlp")
LINEAR_MODELS = ("logistic", "group_lasso")


class ModelUnavailable(RuntimeError):
    """A model cannot be built here (its implementation is not importable); the caller skips it."""


@dataclass
class FittedModel:
    """A model fitted on train, with its chosen hyper-parameters and tuning scores.

    Attributes
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    estimator : sklearn.pipeline.Pipeline
        ``Pipeline([("scale", StandardScaler()), ("model", …)])`` fitted on train rows.
    columns : list of str
        The representation's columns ``<structure>__<k>``.
    groups : list of str
        The structure of each column.
    hyperparameters : dict
        The chosen grid point.
    tuning_log_loss, tuning_auroc : float
        Scores of the chosen model on the tuning split.
    selected_structures : list of str or None
        The group lasso's kept structures (None for other models).
    grid_scores : list of dict
        Every grid point with its tuning log-loss.
    """

    name: str
    estimator: Any
    columns: list[str]
    groups: list[str]
    hyperparameters: dict[str, Any]
    tuning_log_loss: float
    tuning_auroc: float
    selected_structures: list[str] | None = None
    grid_scores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mean_(self) -> np.ndarray:
        """Train column means of the pipeline's scaler."""
        return self.estimator.named_steps["scale"].mean_

    @property
    def scale_(self) -> np.ndarray:
        """Train column scales of the pipeline's scaler (1 for a column constant on train)."""
        return self.estimator.named_steps["scale"].scale_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class.

        Parameters
        ----------
        X : array of shape (n, d)
            Rows with the columns of :attr:`columns`, unstandardised.

        Returns
        -------
        p : array of shape (n,)
        """
        return np.asarray(self.estimator.predict_proba(np.asarray(X, dtype=np.float64)))[:, 1]


def structure_groups(columns: Sequence[str]) -> list[str]:
    """Group (structure) of each column ``<structure>__<k>``; a column without the separator is its own group."""
    sep = EMBEDDING_COLUMN_SEPARATOR
    return [c.rsplit(sep, 1)[0] if sep in c else c for c in columns]


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _grid(name: str, seed: int) -> list[dict[str, Any]]:
    if name == "logistic":
        return [{"C": c} for c in (0.001, 0.01, 0.1, 1.0, 10.0)]
    if name == "hgb":
        return [
            {"learning_rate": lr, "max_leaf_nodes": leaves, "max_iter": 300, "l2_regularization": 1.0}
            for lr in (0.05, 0.1)
            for leaves in (7, 31)
        ]
    if name == "mlp":
        return [{"alpha": a, "hidden_layer_sizes": (32,)} for a in (1e-2, 1e-1, 1.0, 10.0)]
    if name == "group_lasso":
        # the estimator picks its penalty by K-fold CV on the train rows; tuning only scores it
        return [{"selection_rule": "1se"}]
    raise ValueError(f"unknown model {name!r}; known: {list(MODEL_NAMES)}")


def _build(name: str, seed: int) -> Any:
    """Build the unfitted estimator ``name`` with the settings that no grid point changes."""
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=2000, random_state=seed)
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        # internal early stopping (seeded validation split) instead of always running max_iter rounds
        return HistGradientBoostingClassifier(
            early_stopping=True, validation_fraction=0.1, n_iter_no_change=10, random_state=seed
        )
    if name == "mlp":
        from sklearn.neural_network import MLPClassifier

        # no early stopping: sklearn scores its validation split by accuracy, which plateaus at once
        # when events are rare and stops the MLP after a few epochs (measured AUROC 0.54 vs 0.77)
        return MLPClassifier(max_iter=300, early_stopping=False, random_state=seed)
    if name == "group_lasso":
        try:
            from hcl.selection import GroupLassoClassifier
        except ImportError as exc:
            raise ModelUnavailable(f"hcl.selection.GroupLassoClassifier is not importable ({exc})") from None
        return GroupLassoClassifier(random_state=seed)
    raise ValueError(f"unknown model {name!r}; known: {list(MODEL_NAMES)}")


def build_pipeline(name: str, seed: int) -> Any:
    """Return the unfitted ``Pipeline([("scale", StandardScaler()), ("model", …)])`` of model ``name``.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    seed : int
        Random state of the model.

    Returns
    -------
    sklearn.pipeline.Pipeline

    Raises
    ------
    ModelUnavailable
        The model's implementation cannot be imported.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", _build(name, seed))])


_pipeline = build_pipeline


def _choose(
    pipe: Any, grid: list[dict[str, Any]], X_train, y_train, X_tune, y_tune, fit_params: dict
) -> tuple[dict[str, Any], list[float]]:
    """Choose the grid point with the lowest tuning log-loss (first on ties); return it and every loss.

    ``GridSearchCV`` over a ``PredefinedSplit``: each point is fitted on the train rows and scored on the
    tuning rows; ``refit=False``, because its refit would train on train and tuning together.
    """
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GridSearchCV, PredefinedSplit

    X = np.vstack([X_train, X_tune])
    y = np.concatenate([y_train, np.asarray(y_tune, dtype=int)])
    fold = np.concatenate([np.full(len(y_train), -1), np.zeros(len(y_tune), dtype=int)])
    search = GridSearchCV(
        pipe,
        [{f"model__{k}": [v] for k, v in g.items()} for g in grid],
        scoring=make_scorer(_log_loss, greater_is_better=False, response_method="predict_proba"),
        cv=PredefinedSplit(fold),
        refit=False,
        error_score="raise",
    )
    search.fit(X, y, **fit_params)
    losses = [-float(v) for v in search.cv_results_["mean_test_score"]]
    return grid[int(search.best_index_)], losses


def fit_model(
    name: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_tune: np.ndarray,
    y_tune: np.ndarray,
    columns: Sequence[str],
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> FittedModel:
    """Fit model ``name`` on train for every grid point; keep the one with the lowest tuning log-loss.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    X_train, X_tune : arrays of shape (n_train, d), (n_tune, d)
        Unstandardised rows (the pipeline's scaler is fitted on ``X_train``).
    y_train, y_tune : arrays of shape (n_train,), (n_tune,) with values 0/1
    columns : sequence of str
        The d column names ``<structure>__<k>`` (define the groups of the group lasso).
    seed : int
        Random state of every estimator.
    extra : dict, optional
        Fixed keyword arguments added to every grid point (e.g. ``{"cv": 3}`` for the group lasso).

    Returns
    -------
    FittedModel

    Raises
    ------
    ModelUnavailable
        The model's implementation cannot be imported.
    """
    from sklearn.exceptions import ConvergenceWarning

    columns = list(columns)
    groups = structure_groups(columns)
    X_train = np.asarray(X_train, dtype=np.float64)
    X_tune = np.asarray(X_tune, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=int)
    y_tune = np.asarray(y_tune, dtype=float)
    tune_ok = 0 < y_tune.sum() < len(y_tune)
    grid = [{**g, **(extra or {})} for g in _grid(name, seed)]
    if not tune_ok:
        grid = [grid[len(grid) // 2]]
        logger.warning("%s: tuning split has a single class; using the middle grid point %s", name, grid[0])
    pipe = _pipeline(name, seed)
    fit_params = {"model__groups": np.asarray(groups)} if name == "group_lasso" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(grid) > 1:
            hyper, losses = _choose(pipe, grid, X_train, y_train, X_tune, y_tune, fit_params)
        else:
            hyper, losses = grid[0], []
        pipe.set_params(**{f"model__{k}": v for k, v in hyper.items()})
        pipe.fit(X_train, y_train, **fit_params)
    p = pipe.predict_proba(X_tune)[:, 1] if len(y_tune) else np.zeros(0)
    loss = _log_loss(y_tune, p) if len(y_tune) else float("nan")
    auc = auroc(y_tune, p) if tune_ok else float("nan")
    losses = losses or [loss]
    scores = [
        {**{k: _jsonable(v) for k, v in g.items()}, "tuning_log_loss": v}
        for g, v in zip(grid, losses, strict=True)
    ]
    selected = None
    if name == "group_lasso":
        sel = getattr(pipe.named_steps["model"], "selected_", None)
        selected = [str(s) for s in sel] if sel is not None else None
    return FittedModel(
        name=name,
        estimator=pipe,
        columns=columns,
        groups=groups,
        hyperparameters={k: _jsonable(v) for k, v in hyper.items()},
        tuning_log_loss=loss,
        tuning_auroc=auc,
        selected_structures=selected,
        grid_scores=scores,
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if hasattr(v, "item"):
        return v.item()
    return v


# ----------------------------------------------------------------------------------------------------
# Safe export of linear models: JSON weights, no pickle.
# ----------------------------------------------------------------------------------------------------


def linear_weights(model: FittedModel) -> dict[str, Any]:
    """Export the fitted linear model as plain numbers: ``p = sigmoid(((x − mean)/scale) · coef + intercept)``.

    Parameters
    ----------
    model : FittedModel
        A fitted ``logistic`` or ``group_lasso`` model.

    Returns
    -------
    dict
        ``{"format", "columns", "mean", "scale", "coef", "intercept"}``, served by
        :class:`pipeline.serving.LinearProbabilityModel`.

    Raises
    ------
    ValueError
        The model is not linear or exposes no usable ``coef_``/``intercept_``.
    """
    if model.name not in LINEAR_MODELS:
        raise ValueError(f"model {model.name!r} is not linear")
    est = model.estimator.named_steps["model"]
    coef = getattr(est, "coef_by_group_", None)
    if coef is None:
        coef = getattr(est, "coef_", None)
    intercept = getattr(est, "intercept_", 0.0)
    if isinstance(coef, dict):  # structure -> coefficients of that block
        order: dict[str, list[int]] = {}
        for j, g in enumerate(model.groups):
            order.setdefault(g, []).append(j)
        flat = np.zeros(len(model.columns))
        for g, idx in order.items():
            flat[idx] = np.asarray(coef.get(g, np.zeros(len(idx))), dtype=float).ravel()
        coef = flat
    if coef is None:
        raise ValueError(f"model {model.name!r} has no coef_")
    coef = np.asarray(coef, dtype=float).ravel()
    if len(coef) != len(model.columns):
        raise ValueError(f"model {model.name!r}: {len(coef)} coefficients for {len(model.columns)} columns")
    scale = np.asarray(model.scale_, dtype=float)  # StandardScaler: 1 for a column constant on train
    return {
        "format": LINEAR_FORMAT,
        "columns": list(model.columns),
        "mean": [float(v) for v in model.mean_],
        "scale": [float(v) for v in scale],
        "coef": [float(v) for v in coef],
        "intercept": float(np.asarray(intercept, dtype=float).ravel()[0]),
    }

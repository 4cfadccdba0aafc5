"""Downstream classifiers: fit on ``train``, choose hyper-parameters on ``tuning``.

Four models, all deterministic for a given seed:

``logistic``     L2 logistic regression on standardised columns, ``C`` chosen on tuning.
``group_lasso``  :class:`hcl.selection.GroupLassoClassifier`, one group per structure block; its penalty is
                 chosen by K-fold CV on train (1-SE rule); reports the structures it keeps (``selected_``).
                 Skipped with a warning when :mod:`hcl.selection` is not available.
``hgb``          histogram gradient boosting (no early stopping, so no internal random split).
``mlp``          a small multi-layer perceptron (one hidden layer), ``alpha`` chosen on tuning.

Linear models (logistic, group lasso) are exported as plain JSON weights (:func:`linear_weights`) and served
by :class:`LinearProbabilityModel`, so loading them never unpickles anything. scikit-learn is imported
inside the functions that need it.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcl.preprocessing import column_scale
from pipeline.predict.metrics import auroc

logger = logging.getLogger(__name__)

MODEL_NAMES = ("logistic", "group_lasso", "hgb", "mlp")
LINEAR_MODELS = ("logistic", "group_lasso")


class ModelUnavailable(RuntimeError):
    """A model cannot be built here (its implementation is not importable); the caller skips it."""


@dataclass
class FittedModel:
    """A model fitted on train, with its chosen hyper-parameters and tuning scores."""

    name: str
    estimator: Any
    columns: list[str]
    groups: list[str]
    hyperparameters: dict[str, Any]
    tuning_log_loss: float
    tuning_auroc: float
    mean_: np.ndarray
    scale_: np.ndarray
    selected_structures: list[str] | None = None
    grid_scores: list[dict[str, Any]] = field(default_factory=list)

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
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        if self.name == "group_lasso":
            return np.asarray(self.estimator.predict_proba(_blocks(Z, self.columns, self.groups)))[:, 1]
        return self.estimator.predict_proba(Z)[:, 1]


def structure_groups(columns: Sequence[str]) -> list[str]:
    """Group (structure) of each column ``<structure>__<k>``; a column without ``__`` is its own group."""
    return [c.rsplit("__", 1)[0] if "__" in c else c for c in columns]


def _blocks(Z: np.ndarray, columns: Sequence[str], groups: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, list[int]] = {}
    for j, g in enumerate(groups):
        out.setdefault(g, []).append(j)
    return {g: Z[:, idx] for g, idx in out.items()}


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


def _build(name: str, hyper: dict[str, Any], seed: int) -> Any:
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=hyper["C"], max_iter=2000, random_state=seed)
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        # internal early stopping (seeded validation split) instead of always running max_iter rounds
        return HistGradientBoostingClassifier(
            early_stopping=True, validation_fraction=0.1, n_iter_no_change=10, random_state=seed, **hyper
        )
    if name == "mlp":
        from sklearn.neural_network import MLPClassifier

        # no early stopping: sklearn scores its validation split by accuracy, which plateaus at once
        # when events are rare and stops the MLP after a few epochs (measured AUROC 0.54 vs 0.77)
        return MLPClassifier(max_iter=300, early_stopping=False, random_state=seed, **hyper)
    if name == "group_lasso":
        try:
            from hcl.selection import GroupLassoClassifier
        except ImportError as exc:
            raise ModelUnavailable(f"hcl.selection.GroupLassoClassifier is not importable ({exc})") from None
        return GroupLassoClassifier(random_state=seed, **hyper)
    raise ValueError(f"unknown model {name!r}; known: {list(MODEL_NAMES)}")


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
    X_train, X_tune : arrays of shape (n_train, d), (n_tune, d)
    y_train, y_tune : arrays of shape (n_train,), (n_tune,) with values 0/1
    columns : the d column names ``<structure>__<k>`` (define the groups of the group lasso)
    seed : random state of every estimator
    extra : fixed keyword arguments added to every grid point (e.g. ``{"cv": 3}`` for the group lasso)

    Raises
    ------
    ModelUnavailable
        The model's implementation cannot be imported.
    """
    from sklearn.exceptions import ConvergenceWarning

    columns = list(columns)
    groups = structure_groups(columns)
    mean, scale = column_scale(X_train)
    Ztr = (X_train - mean) / scale
    Ztu = (X_tune - mean) / scale
    y_train = np.asarray(y_train, dtype=int)
    y_tune = np.asarray(y_tune, dtype=float)
    tune_ok = 0 < y_tune.sum() < len(y_tune)
    grid = [{**g, **(extra or {})} for g in _grid(name, seed)]
    if not tune_ok:
        grid = [grid[len(grid) // 2]]
        logger.warning("%s: tuning split has a single class; using the middle grid point %s", name, grid[0])
    best: tuple[float, dict, Any, float] | None = None
    scores = []
    for hyper in grid:
        est = _build(name, hyper, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if name == "group_lasso":
                est.fit(_blocks(Ztr, columns, groups), y_train)
                p = np.asarray(est.predict_proba(_blocks(Ztu, columns, groups)))[:, 1]
            else:
                est.fit(Ztr, y_train)
                p = est.predict_proba(Ztu)[:, 1]
        loss = _log_loss(y_tune, p) if len(y_tune) else float("nan")
        auc = auroc(y_tune, p) if tune_ok else float("nan")
        scores.append({**{k: _jsonable(v) for k, v in hyper.items()}, "tuning_log_loss": loss})
        if best is None or (tune_ok and loss < best[0]):
            best = (loss, hyper, est, auc)
    loss, hyper, est, auc = best
    selected = None
    if name == "group_lasso":
        sel = getattr(est, "selected_", None)
        selected = [str(s) for s in sel] if sel is not None else None
    return FittedModel(
        name=name,
        estimator=est,
        columns=columns,
        groups=groups,
        hyperparameters={k: _jsonable(v) for k, v in hyper.items()},
        tuning_log_loss=loss,
        tuning_auroc=auc,
        mean_=mean,
        scale_=scale,
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
    """The fitted linear model as plain numbers: ``p = sigmoid(((x − mean)/scale) · coef + intercept)``.

    Raises
    ------
    ValueError
        The model is not linear or exposes no usable ``coef_``/``intercept_``.
    """
    if model.name not in LINEAR_MODELS:
        raise ValueError(f"model {model.name!r} is not linear")
    est = model.estimator
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
    # a column constant on train has scale inf (it standardises to 0); JSON has no inf, and coefficient 0
    # with scale 1 predicts the same
    constant = ~np.isfinite(model.scale_)
    scale = np.where(constant, 1.0, model.scale_)
    coef = np.where(constant, 0.0, coef)
    return {
        "format": "ehr-hcl-linear-v1",
        "columns": list(model.columns),
        "mean": [float(v) for v in model.mean_],
        "scale": [float(v) for v in scale],
        "coef": [float(v) for v in coef],
        "intercept": float(np.asarray(intercept, dtype=float).ravel()[0]),
    }


class LinearProbabilityModel:
    """Serve a linear model from its JSON weights; ``predict`` returns the positive-class probability."""

    def __init__(self, weights: dict[str, Any]):
        self.columns = list(weights["columns"])
        self.mean = np.asarray(weights["mean"], dtype=float)
        self.scale = np.asarray(weights["scale"], dtype=float)
        self.coef = np.asarray(weights["coef"], dtype=float)
        self.intercept = float(weights["intercept"])

    def predict(self, model_input: Any, params: dict | None = None) -> np.ndarray:
        """Probabilities, shape (n,), for a DataFrame with :attr:`columns` (or an (n, d) array)."""
        if hasattr(model_input, "columns"):
            X = np.asarray(model_input[self.columns], dtype=float)
        else:
            X = np.asarray(model_input, dtype=float)
        eta = ((X - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-eta))


def _load_pyfunc(data_path: str) -> LinearProbabilityModel:
    """MLflow pyfunc loader (``loader_module="pipeline.predict.models"``): JSON in, model out."""
    path = Path(data_path)
    if path.is_dir():
        path = path / "weights.json"
    weights = json.loads(path.read_text())
    if weights.get("format") != "ehr-hcl-linear-v1":
        raise ValueError(f"{path}: not an ehr-hcl linear model (format={weights.get('format')!r})")
    return LinearProbabilityModel(weights)

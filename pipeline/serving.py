"""The logged linear model: its JSON weights format, the class that serves it, and MLflow's loader.

Linear models (logistic regression, group lasso) are logged as plain JSON weights,
``p = sigmoid(((x − mean) / scale) · coef + intercept)``, behind an MLflow pyfunc *loader module*
(this module), so loading a logged model never unpickles anything. ``predict`` writes the weights,
``tracking`` logs them, and anyone with the project installed loads them with
``mlflow.pyfunc.load_model``. It imports no stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LINEAR_FORMAT", "LinearProbabilityModel", "load_weights", "_load_pyfunc"]

#: the ``format`` field of a weights file this module serves
LINEAR_FORMAT = "ehr-hcl-linear-v1"


class LinearProbabilityModel:
    """Serve a linear model from its JSON weights; ``predict`` returns the positive-class probability.

    Parameters
    ----------
    weights : dict
        ``{"format", "columns", "mean", "scale", "coef", "intercept"}`` as written by
        :func:`pipeline.predict.models.linear_weights`.
    """

    def __init__(self, weights: dict[str, Any]):
        self.columns = list(weights["columns"])
        self.mean = np.asarray(weights["mean"], dtype=float)
        self.scale = np.asarray(weights["scale"], dtype=float)
        self.coef = np.asarray(weights["coef"], dtype=float)
        self.intercept = float(weights["intercept"])

    def predict(self, model_input: Any, params: dict | None = None) -> np.ndarray:
        """Probabilities of the positive class.

        Parameters
        ----------
        model_input : DataFrame or array of shape (n, d)
            A DataFrame with :attr:`columns` (in any order), or an array with the columns in that order.
        params : dict, optional
            Unused (MLflow's pyfunc signature).

        Returns
        -------
        ndarray of shape (n,)
        """
        if hasattr(model_input, "columns"):
            X = np.asarray(model_input[self.columns], dtype=float)
        else:
            X = np.asarray(model_input, dtype=float)
        eta = ((X - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-eta))


def load_weights(data_path: str | Path) -> dict[str, Any]:
    """Read a weights file (or the ``weights.json`` in a folder) and check its format.

    Parameters
    ----------
    data_path : str or Path
        ``weights.json`` or the folder that holds it.

    Returns
    -------
    dict
        The weights.

    Raises
    ------
    ValueError
        The file is not an ehr-hcl linear model.
    """
    path = Path(data_path)
    if path.is_dir():
        path = path / "weights.json"
    weights = json.loads(path.read_text())
    if weights.get("format") != LINEAR_FORMAT:
        raise ValueError(f"{path}: not an ehr-hcl linear model (format={weights.get('format')!r})")
    return weights


def _load_pyfunc(data_path: str) -> LinearProbabilityModel:
    """MLflow pyfunc loader (``loader_module="pipeline.serving"``): JSON in, model out."""
    return LinearProbabilityModel(load_weights(data_path))

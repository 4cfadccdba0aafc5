"""Column standardisation shared by the estimators (and by callers who prepare their inputs the same way)."""

from __future__ import annotations

import numpy as np

# A column whose standard deviation is below this share of its magnitude is constant up to rounding:
# dividing by that remainder turned one rare code outside the fit rows into ~1e18 (the demo's raw features).
_CONSTANT_RTOL = 1e-8


def column_scale(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column of ``rows`` (n, d), for ``(x - mean) / scale``.

    A column constant on ``rows`` (up to rounding) gets scale ``inf``, so it standardises to zero on any
    row: it carried nothing on the fit rows, and a value it takes elsewhere must not reach a model.
    """
    rows = np.asarray(rows, dtype=np.float64)
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    constant = scale <= _CONSTANT_RTOL * np.maximum(1.0, np.abs(mean))
    return mean, np.where(constant, np.inf, scale)

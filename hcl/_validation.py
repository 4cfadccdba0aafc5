"""Shared input checks for :mod:`hcl` estimators.

Every estimator takes ``X`` as a mapping ``{modality_name: array (n, d_m)}``. The functions here turn
such a mapping into a dict of C-contiguous float64 arrays in a fixed modality order, or raise
:class:`hcl.exceptions.ValidationError` with a one-line message that names the modality, its shape and
what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hcl.exceptions import ValidationError

__all__ = ["check_X", "check_modalities", "is_int", "observed_rows"]


def is_int(v) -> bool:
    """Return whether ``v`` is an integer (Python or numpy), not a bool.

    Parameters
    ----------
    v : object

    Returns
    -------
    bool
    """
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _shape(a) -> str:
    return "x".join(str(s) for s in np.shape(a))


def check_X(
    X,
    modalities: Sequence[str] | None = None,
    dims: Mapping[str, int] | Sequence[int] | None = None,
    allow_nan_rows: bool = False,
    *,
    min_rows: int = 1,
) -> dict[str, np.ndarray]:
    """Validate a modality mapping and return it as float64 arrays.

    Parameters
    ----------
    X : mapping of str to array-like of shape (n, d_m)
        One 2-D array per modality, all with the same number of rows ``n``.
    modalities : sequence of str, optional
        The modality names the estimator was fitted on. When given, ``X`` must have exactly these keys and
        the result follows this order; otherwise the order of ``X`` is kept.
    dims : mapping of str to int or sequence of int, optional
        Expected number of columns per modality (a sequence follows ``modalities``).
    allow_nan_rows : bool, default False
        If True, a row that is entirely NaN in one modality means "modality missing for that row" and is
        accepted (a row must still have at least one observed modality). NaN inside an otherwise observed
        row, and infinities, are always errors.
    min_rows : int, default 1
        Fewest rows accepted.

    Returns
    -------
    dict of str to ndarray of shape (n, d_m), dtype float64
    """
    order = _modality_order(X, modalities)
    dims = _dims_by_name(dims, order)
    out: dict[str, np.ndarray] = {}
    n_rows = None
    first = None
    for m in order:
        a = _as_float_matrix(m, X[m], dims)
        n, d = a.shape
        if n_rows is None:
            n_rows, first = n, m
        elif n != n_rows:
            raise ValidationError(
                f"modality {m!r} has {n} rows (shape {n}x{d}) but {first!r} has {n_rows}; "
                "rows must be aligned across modalities"
            )
        _check_values(m, a, allow_nan_rows)
        out[m] = np.ascontiguousarray(a)
    if n_rows < min_rows:
        raise ValidationError(
            f"X has {n_rows} rows (modality {first!r}, shape {n_rows}x{out[first].shape[1]}) "
            f"but at least {min_rows} are needed; pass more rows"
        )
    if allow_nan_rows:
        obs = np.zeros(n_rows, dtype=bool)
        for a in out.values():
            obs |= ~np.isnan(a[:, 0])
        if not obs.all():
            raise ValidationError(
                f"{int((~obs).sum())} rows of X (first at row {int(np.argmax(~obs))}) have no observed "
                f"modality among {order}; drop them"
            )
    return out


def _modality_order(X, modalities) -> list[str]:
    """Check the mapping and its keys; returns the modality order (``modalities`` if given)."""
    if not isinstance(X, Mapping):
        raise ValidationError(
            f"X must be a mapping {{modality_name: array (n, d)}}, got {type(X).__name__}; "
            "pass e.g. {'codes': A, 'labs': B}"
        )
    if len(X) == 0:
        raise ValidationError("X is an empty mapping; pass at least one modality {name: array (n, d)}")
    keys = list(X.keys())
    for k in keys:
        if not isinstance(k, str) or not k:
            raise ValidationError(f"modality names must be non-empty strings, got {k!r}")
        if "+" in k:
            raise ValidationError(
                f"modality name {k!r} contains '+', which joins modality names in structures"
            )
    if modalities is None:
        return keys
    modalities = list(modalities)
    missing = [m for m in modalities if m not in X]
    extra = [k for k in keys if k not in modalities]
    if missing or extra:
        raise ValidationError(
            f"X has modalities {keys} but the model was fitted on {modalities}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {extra}" if extra else "")
            + "; pass exactly the fitted modalities (a wholly missing modality: rows of NaN)"
        )
    return modalities


def _dims_by_name(dims, order):
    """``dims`` as a mapping modality -> columns (a sequence follows ``order``)."""
    if dims is None or isinstance(dims, Mapping):
        return dims
    dims = list(dims)
    if len(dims) != len(order):
        raise ValidationError(f"dims has {len(dims)} entries but there are {len(order)} modalities {order}")
    return dict(zip(order, dims, strict=True))


def _as_float_matrix(m: str, raw, dims) -> np.ndarray:
    """Modality ``m`` as a 2-D float64 array with at least one column (and ``dims[m]`` if given)."""
    try:
        a = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"modality {m!r} (type {type(raw).__name__}) cannot be converted to a float array: {exc}"
        ) from None
    if a.ndim != 2:
        raise ValidationError(
            f"modality {m!r} has shape ({_shape(a)}), expected a 2-D array (n, d); "
            "reshape a single feature with a[:, None]"
        )
    n, d = a.shape
    if d == 0:
        raise ValidationError(f"modality {m!r} has shape ({n}x{d}): no columns")
    if dims is not None and m in dims and int(dims[m]) != d:
        raise ValidationError(
            f"modality {m!r} has shape ({n}x{d}) but the model expects {int(dims[m])} columns; "
            "pass the same features as at fit time"
        )
    return a


def _check_values(m: str, a: np.ndarray, allow_nan_rows: bool) -> None:
    """No infinities; NaN only as whole rows (a missing modality) and only if ``allow_nan_rows``."""
    n, d = a.shape
    if np.isinf(a).any():
        row = int(np.where(np.isinf(a).any(axis=1))[0][0])
        raise ValidationError(
            f"modality {m!r} (shape {n}x{d}) contains infinite values (first at row {row}); remove or clip them"
        )
    nan = np.isnan(a)
    if not nan.any():
        return
    row_any = nan.any(axis=1)
    if not allow_nan_rows:
        raise ValidationError(
            f"modality {m!r} (shape {n}x{d}) contains NaN in {int(row_any.sum())} rows "
            f"(first at row {int(np.argmax(row_any))}); impute them or drop those rows"
        )
    partial = row_any & ~nan.all(axis=1)
    if partial.any():
        raise ValidationError(
            f"modality {m!r} (shape {n}x{d}) has {int(partial.sum())} rows partly NaN (first at row "
            f"{int(np.argmax(partial))}); a missing modality must be a whole row of NaN, "
            "impute single missing values"
        )


def check_modalities(X, fitted_modalities=None, fitted_dims=None, **kwargs) -> dict[str, np.ndarray]:
    """Alias of :func:`check_X` with the argument names used at transform time."""
    return check_X(X, modalities=fitted_modalities, dims=fitted_dims, **kwargs)


def observed_rows(X: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Boolean mask (n,) per modality: True where the row is observed (not a whole row of NaN)."""
    return {m: ~np.isnan(a).all(axis=1) for m, a in X.items()}

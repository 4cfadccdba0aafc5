"""Saving and loading fitted estimators: one folder, JSON for the settings, safetensors for the arrays.

A saved estimator is a folder holding

- ``config.json``: the format version, the class name, ``get_params()`` under ``params`` and, beside them
  at the top level, the JSON-able learned state (structure ranks, modality names, histories, summary rows);
- ``weights.safetensors``: every learned array, by name (float64 stays float64).

Nothing is ever unpickled on load. The folder is written under a temporary name and renamed, so a crash
never leaves half a model that a later load would trust.

Estimators take part through :class:`PersistenceMixin`: they implement ``_get_state()`` (returns
``(state, arrays)``) and ``_set_state(state, arrays)``; ``save`` and ``load`` are shared.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hcl.exceptions import NotFittedError, ValidationError

__all__ = ["CONFIG_FILE", "ARRAYS_FILE", "FORMAT_VERSION", "PersistenceMixin", "save_folder", "load_folder"]

CONFIG_FILE = "config.json"
ARRAYS_FILE = "weights.safetensors"
FORMAT_VERSION = 2
#: top-level keys of ``config.json`` that are not learned state
_RESERVED = ("format_version", "class", "params")


def to_jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, paths as strings and numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _replace_folder(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path``, replacing an older one in two renames."""
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        os.replace(path, old / "previous")
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def save_folder(
    path: str | os.PathLike,
    estimator_class: str,
    params: Mapping[str, Any],
    state: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
) -> Path:
    """Write one estimator's folder atomically.

    Parameters
    ----------
    path : str or path-like
        The folder to create (an existing folder is replaced whole).
    estimator_class : str
        The class name, checked again on load.
    params : mapping
        Constructor parameters (``get_params()``); must be JSON-able after :func:`to_jsonable`.
    state : mapping
        Learned, JSON-able attributes, written at the top level of ``config.json`` (their names must not
        be ``format_version``, ``class`` or ``params``).
    arrays : mapping of str to ndarray
        Learned arrays, saved in their own dtype.

    Returns
    -------
    Path
        ``path``.
    """
    from safetensors.numpy import save_file

    clash = [k for k in state if k in _RESERVED]
    if clash:
        raise ValueError(f"{estimator_class}: learned state may not use the reserved names {clash}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        config = {
            "format_version": FORMAT_VERSION,
            "class": estimator_class,
            "params": to_jsonable(dict(params)),
            **to_jsonable(dict(state)),
        }
        # keys in insertion order, not sorted: the order of modalities and structures in a dict is part
        # of the model (it orders blocks, columns and design matrices)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / ARRAYS_FILE))
        _replace_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_folder(
    path: str | os.PathLike, estimator_class: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Read a folder written by :func:`save_folder`.

    Parameters
    ----------
    path : str or path-like
        The folder.
    estimator_class : str
        The class the caller expects; another class's folder is an error.

    Returns
    -------
    params : dict
    state : dict
    arrays : dict of str to ndarray

    Raises
    ------
    ValidationError
        A file is missing, not valid JSON, of another format version or of another class.
    """
    from safetensors.numpy import load_file

    path = Path(path)
    config_file, arrays_file = path / CONFIG_FILE, path / ARRAYS_FILE
    for f in (config_file, arrays_file):
        if not f.is_file():
            raise ValidationError(f"{f} not found; pass a folder written by {estimator_class}.save()")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{config_file} is not valid JSON ({exc}); save the model again") from None
    if config.get("format_version") != FORMAT_VERSION:
        raise ValidationError(
            f"{config_file}: format_version {config.get('format_version')!r} is not {FORMAT_VERSION}; "
            "save the model again with this version of hcl"
        )
    if config.get("class") != estimator_class:
        raise ValidationError(
            f"{config_file}: holds a {config.get('class')!r}, not a {estimator_class!r}; "
            f"load it with hcl.{config.get('class')}.load()"
        )
    state = {k: v for k, v in config.items() if k not in _RESERVED}
    return dict(config["params"]), state, dict(load_file(str(arrays_file)))


class PersistenceMixin:
    """``save(path)`` and ``load(path)`` for estimators that implement ``_get_state`` / ``_set_state``.

    ``_get_state()`` returns ``(state, arrays)``: JSON-able learned attributes and a flat mapping of
    learned arrays. ``_set_state(state, arrays)`` restores them on a freshly constructed estimator.
    ``_params_to_json(params)`` may turn a parameter that JSON cannot hold into one it can (a random
    generator into ``None``), and ``_params_from_json(params)`` may turn JSON lists back into tuples where
    a parameter needs one.
    """

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _params_to_json(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    @classmethod
    def _params_from_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted estimator to folder ``path`` (``config.json`` + ``weights.safetensors``).

        Parameters
        ----------
        path : str or path-like
            The folder; an existing one is replaced atomically.

        Returns
        -------
        Path
            ``path``.
        """
        check = getattr(self, "_check_fitted", None)
        if check is None:
            raise NotFittedError(f"{type(self).__name__} has no _check_fitted(); it cannot be saved")
        check()
        state, arrays = self._get_state()
        params = self._params_to_json(self.get_params(deep=False))
        return save_folder(path, type(self).__name__, params, state, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Load an estimator written by :meth:`save`; nothing is unpickled.

        Parameters
        ----------
        path : str or path-like
            A folder written by :meth:`save`.

        Returns
        -------
        estimator
            Fitted, with ``transform`` giving exactly what the saved estimator gave.
        """
        params, state, arrays = load_folder(path, cls.__name__)
        known = set(cls._get_param_names())
        model = cls(**cls._params_from_json({k: v for k, v in params.items() if k in known}))
        model._set_state(state, arrays)
        return model

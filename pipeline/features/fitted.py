"""What the features stage fits, saved so that other rows get it unchanged.

``fitted.json`` holds, per modality, the full-precision state: the codes and drug vocabularies (and IDF
weights), the lab items and each statistic's standardisation, the note encoder (MiniLM fits nothing; the
TF-IDF vocabulary is in the JSON and its IDF and SVD arrays in ``fitted_arrays.safetensors``). The features of
the pretraining population write it; every cohort's features are built with ``--fitted`` pointing there, so
one vocabulary and one set of scalers serve every task (issue 14).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from pipeline.exceptions import ConfigError, MissingInputError
from pipeline.io import write_json

FITTED_FILE = "fitted.json"
ARRAYS_FILE = "fitted_arrays.safetensors"
#: config keys that do not change what is fitted (performance knobs)
_RUN_ONLY_KEYS = ("cache_dir", "join_batch_rows")


def _fit_config(config: Any) -> dict[str, Any]:
    dumped = config.model_dump()
    for key in _RUN_ONLY_KEYS:
        dumped.pop(key, None)
    return dumped


def write_fitted(folder: Path, results: dict[str, Any], config: Any, fitted_on: dict[str, Any]) -> None:
    """Write ``fitted.json`` (and the arrays file when a modality has arrays) into ``folder``.

    Parameters
    ----------
    folder : Path
        The (temporary) features folder.
    results : dict of str to ModalityMatrix
        Each modality's matrix; its ``state`` is what was fitted.
    config : FeaturesConfig
    fitted_on : dict
        Where the state was fitted (rows, source).
    """
    modalities: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for modality, res in results.items():
        state = dict(res.state or {"absent": True, "reason": res.info.get("reason", "")})
        if "arrays" in state:
            names = sorted(state["arrays"])
            for name in names:
                arrays[f"{modality}/{name}"] = np.ascontiguousarray(state["arrays"][name])
            state["arrays"] = names
        modalities[modality] = state
    write_json({"config": _fit_config(config), "fitted_on": fitted_on, "modalities": modalities}, folder / FITTED_FILE)
    if arrays:
        save_file(arrays, str(folder / ARRAYS_FILE))


def read_fitted(folder: Path, config: Any) -> dict[str, Any]:
    """Read a features folder's fitted state and check it was fitted with the same features config.

    Returns
    -------
    dict
        ``modalities`` (state per modality, arrays loaded) and ``fitted_on`` (rows, source folder, digest).

    Raises
    ------
    MissingInputError
        No ``fitted.json`` in ``folder``.
    ConfigError
        The state was fitted with another features config, or lacks a configured modality.
    """
    folder = Path(folder)
    path = folder / FITTED_FILE
    if not path.is_file():
        raise MissingInputError(
            f"{path}: not found; build the features of the pretraining population first "
            "(`ehr-hcl features --labels data/pretraining/population.parquet ...`)"
        )
    raw = path.read_bytes()
    doc = json.loads(raw)
    want = json.loads(json.dumps(_fit_config(config), default=str))
    for key in sorted(set(want) | set(doc["config"])):
        if want.get(key) != doc["config"].get(key):
            raise ConfigError(
                f"{path}: fitted with features.{key} = {doc['config'].get(key)!r} but this run has "
                f"{want.get(key)!r}; rebuild the pretraining features with the same `features` params"
            )
    missing = [m for m in config.modalities if m not in doc["modalities"]]
    if missing:
        raise ConfigError(f"{path}: modality {missing[0]!r} was not fitted; rebuild the pretraining features")
    arrays = load_file(str(folder / ARRAYS_FILE)) if (folder / ARRAYS_FILE).is_file() else {}
    modalities = {}
    for modality, state in doc["modalities"].items():
        state = dict(state)
        if "arrays" in state:
            state["arrays"] = {name: arrays[f"{modality}/{name}"] for name in state["arrays"]}
        modalities[modality] = state
    fitted_on = {
        "rows": doc["fitted_on"]["rows"],
        "source": folder.as_posix(),
        "digest": hashlib.sha256(raw).hexdigest()[:16],
    }
    return {"modalities": modalities, "fitted_on": fitted_on}

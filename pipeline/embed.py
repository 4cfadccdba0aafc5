"""The ``embed`` stage: fit representation methods on train rows, transform every row.

Input: a features folder (``<modality>.parquet`` + ``mask.parquet``, rows aligned with the labels).
Output: ``<output>/<method>.parquet`` with float32 columns ``<structure>__<k>`` in label row order, an
``embed_summary.json`` beside them, and per method a folder under ``--models`` with the fitted model in
``model/`` (written by the estimator's own ``save``: JSON config + safetensors arrays, no pickles),
``summary.csv`` and ``variance_explained.csv`` (modality x structure).
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import logging
import shutil
import time
from importlib import import_module
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from safetensors.numpy import load_file, save_file

from hcl.preprocessing import column_scale
from pipeline.exceptions import ConfigError, MissingInputError
from pipeline.io import atomic_dir, write_json
from pipeline.schema import EMBEDDING_COLUMN_SEPARATOR

log = logging.getLogger(__name__)

# method name -> (module, class). The pipeline swaps representation methods by these names.
METHODS: dict[str, tuple[str, str]] = {
    "hcl": ("hcl.deep", "HCL"),
    "linear_hcl": ("hcl.linear", "LinearHCL"),
    "concat": ("hcl.baselines", "Concat"),
    "pca": ("hcl.baselines", "PCA"),
    "clip": ("hcl.baselines", "CLIP"),
    "shared_private": ("hcl.baselines", "SharedPrivate"),
    "jive": ("hcl.baselines", "JIVE"),
}
MIN_COMPLETE_ROWS = 100
# methods that take absent modalities as NaN rows (a mask) instead of imputed values
HANDLES_MISSING = {"hcl", "clip", "shared_private", "linear_hcl"}


class EmbedConfig(BaseModel):
    """``embed`` section of params.yaml. Each method's keyword arguments go under its own name."""

    model_config = ConfigDict(extra="forbid")

    methods: list[str] = Field(default_factory=lambda: ["hcl", "linear_hcl", "concat", "pca"])
    fit_on: Literal["pretraining", "cohort"] = Field(
        "pretraining",
        description="fit each method once on the pretraining population, or on each cohort's train rows",
    )
    seed: int = 0
    hcl: dict[str, Any] = Field(default_factory=dict)
    linear_hcl: dict[str, Any] = Field(default_factory=dict)
    concat: dict[str, Any] = Field(default_factory=dict)
    pca: dict[str, Any] = Field(default_factory=dict)
    clip: dict[str, Any] = Field(default_factory=dict)
    shared_private: dict[str, Any] = Field(default_factory=dict)
    jive: dict[str, Any] = Field(default_factory=dict)


def load_features(features_dir: Path) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Modality matrices (float64, NaN rows where the modality is absent) and the mask frame."""
    mask_path = features_dir / "mask.parquet"
    if not mask_path.exists():
        raise MissingInputError(f"{mask_path}: not found; run `ehr-hcl features` first")
    mask = pd.read_parquet(mask_path)
    X: dict[str, np.ndarray] = {}
    for modality in mask.columns:
        path = features_dir / f"{modality}.parquet"
        if not path.exists():
            raise MissingInputError(f"{path}: not found although mask.parquet lists modality {modality!r}")
        frame = pd.read_parquet(path)
        if len(frame) != len(mask):
            raise MissingInputError(
                f"{path}: {len(frame)} rows but mask.parquet has {len(mask)}; rerun `ehr-hcl features`"
            )
        values = frame.to_numpy(dtype=np.float64, copy=True)
        values[~mask[modality].to_numpy(dtype=bool)] = np.nan
        X[modality] = values
    return X, mask


def usable_modalities(X: dict[str, np.ndarray], train: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Drop modalities that cannot be learned from (no columns, or absent on every train row)."""
    kept, dropped = {}, {}
    for name, values in X.items():
        observed = ~np.isnan(values[train]).any(axis=1) if values.shape[1] else np.zeros(train.sum(), bool)
        if values.shape[1] == 0:
            dropped[name] = "no feature columns"
        elif observed.sum() < 2:
            dropped[name] = f"present on {int(observed.sum())} train rows"
        else:
            kept[name] = values
    return kept, dropped


def column_scales(X: dict[str, np.ndarray], train: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each modality's column mean and scale over its train rows where it is present."""
    out = {}
    for name, values in X.items():
        rows = values[train]
        out[name] = column_scale(rows[~np.isnan(rows).any(axis=1)])
    return out


def standardise(X: dict[str, np.ndarray], train: np.ndarray) -> dict[str, np.ndarray]:
    """Centre and scale each column with train-row statistics; constant columns are dropped to zero."""
    return {name: (X[name] - mean) / scale for name, (mean, scale) in column_scales(X, train).items()}


def make_estimator(method: str, kwargs: dict[str, Any], seed: int, params_source: str = "params.yaml"):
    """Construct the estimator of ``method`` with its params.yaml keyword arguments.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`.
    kwargs : dict
        Keyword arguments from ``embed.<method>``; each must be a parameter of the class.
    seed : int
        ``random_state`` unless ``kwargs`` sets it (for estimators that take one).
    params_source : str, default "params.yaml"
        Named in error messages.

    Returns
    -------
    estimator
        Unfitted; ``verbose=False`` unless ``kwargs`` says otherwise.

    Raises
    ------
    ConfigError
        An unknown method or parameter (with the closest valid name).
    """
    if method not in METHODS:
        hint = difflib.get_close_matches(method, METHODS, n=1)
        raise ConfigError(
            f"{params_source}: embed.methods contains unknown method {method!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; choose from {sorted(METHODS)}"
        )
    module, cls_name = METHODS[method]
    cls = getattr(import_module(module), cls_name)
    accepted = inspect.signature(cls).parameters
    for key in kwargs:
        if key not in accepted:
            hint = difflib.get_close_matches(key, accepted, n=1)
            raise ConfigError(
                f"{params_source}: embed.{method}.{key} is not a parameter of {cls_name}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; valid: {sorted(accepted)}"
            )
    kwargs = dict(kwargs)
    if "random_state" in accepted:
        kwargs.setdefault("random_state", seed)
    if "verbose" in accepted:
        kwargs.setdefault("verbose", False)
    return cls(**kwargs)


def block_frame(blocks: dict[str, np.ndarray]) -> pd.DataFrame:
    """Blocks as one float32 frame with columns ``<structure><separator><k>``.

    Parameters
    ----------
    blocks : dict of str to ndarray (n, r_S)
        ``transform``'s output.

    Returns
    -------
    pandas.DataFrame
    """
    columns: dict[str, np.ndarray] = {}
    for structure, values in blocks.items():
        values = np.asarray(values, dtype=np.float32)
        for k in range(values.shape[1]):
            columns[f"{structure}{EMBEDDING_COLUMN_SEPARATOR}{k}"] = values[:, k]
    return pd.DataFrame(columns)


def block_r2(X: dict[str, np.ndarray], blocks: dict[str, np.ndarray], train: np.ndarray) -> pd.DataFrame:
    """R² of each modality's (standardised) train rows regressed on each block.

    Ridge-free least squares on train rows where the modality is present; rows x columns =
    modality x structure. A uniform, method-agnostic view of which block carries which modality, written
    as ``variance_explained.csv`` for estimators without a model-based ``variance_explained_`` (that one,
    :func:`hcl.metrics.variance_explained`, is computed from loadings, not from blocks).

    Parameters
    ----------
    X : dict of str to ndarray (n, d_m)
        Standardised modalities, NaN rows where absent.
    blocks : dict of str to ndarray (n, r_S)
        The method's blocks on the same rows.
    train : ndarray (n,) bool
        The rows to fit on.

    Returns
    -------
    pandas.DataFrame
        Index ``modality``, one column per structure, values in [0, 1].
    """
    table = pd.DataFrame(0.0, index=list(X), columns=list(blocks))
    for modality, values in X.items():
        rows = train & ~np.isnan(values).any(axis=1)
        target = values[rows]
        total = float(((target - target.mean(axis=0)) ** 2).sum())
        if total <= 0:
            continue
        for structure, block in blocks.items():
            design = np.column_stack([np.ones(rows.sum()), np.asarray(block, dtype=np.float64)[rows]])
            coef, *_ = np.linalg.lstsq(design, target, rcond=None)
            resid = target - design @ coef
            table.loc[modality, structure] = max(0.0, 1.0 - float((resid**2).sum()) / total)
    table.index.name = "modality"
    return table


PREPROCESSING_FILE = "preprocessing.json"
SCALER_FILE = "scaler.safetensors"


def save_preprocessing(
    folder: Path, X_kept: dict[str, np.ndarray], train: np.ndarray, dropped: dict[str, str]
) -> dict[str, np.ndarray]:
    """Fit the per-column standardisation on the train rows, save it with the modality choice, return X scaled.

    ``preprocessing.json`` lists the modalities kept (in order) and those dropped with why;
    ``scaler.safetensors`` holds ``<modality>/mean`` and ``<modality>/scale``. Applied unchanged to every
    cohort by :func:`load_preprocessing`.
    """
    arrays, X = {}, {}
    for name, (mean, scale) in column_scales(X_kept, train).items():
        arrays[f"{name}/mean"], arrays[f"{name}/scale"] = np.asarray(mean), np.asarray(scale)
        X[name] = (X_kept[name] - mean) / scale
    write_json(
        {"modalities": list(X_kept), "columns": {m: int(v.shape[1]) for m, v in X_kept.items()}, "dropped": dropped},
        folder / PREPROCESSING_FILE,
    )
    save_file(arrays, str(folder / SCALER_FILE))
    return X


def load_preprocessing(models_dir: Path, X_raw: dict[str, np.ndarray], features_dir: Path) -> dict[str, np.ndarray]:
    """Standardise a features folder's modalities with the scaler saved beside the fitted models.

    Raises
    ------
    MissingInputError
        The models folder has no preprocessing files (not written by ``ehr-hcl embed``).
    ConfigError
        A modality the models need is missing, or has another width (features built with another vocabulary).
    """
    meta_path = Path(models_dir) / PREPROCESSING_FILE
    if not meta_path.is_file():
        raise MissingInputError(f"{meta_path}: not found; fit the representations first (`ehr-hcl pretrain`)")
    meta = json.loads(meta_path.read_text())
    arrays = load_file(str(Path(models_dir) / SCALER_FILE))
    X = {}
    for name in meta["modalities"]:
        if name not in X_raw:
            raise ConfigError(f"{features_dir}: modality {name!r} missing; the models in {models_dir} need it")
        if X_raw[name].shape[1] != meta["columns"][name]:
            raise ConfigError(
                f"{features_dir}/{name}.parquet: {X_raw[name].shape[1]} columns but the models in {models_dir} "
                f"were fit on {meta['columns'][name]}; build the features with --fitted data/features/pretraining"
            )
        X[name] = (X_raw[name] - arrays[f"{name}/mean"]) / arrays[f"{name}/scale"]
    return X


def _rows_and_train(labels_path: Path, features_dir: Path) -> tuple[dict[str, np.ndarray], pd.DataFrame, np.ndarray]:
    """Read the labels (first: the usual missing input), then the features; return X, mask and train rows."""
    labels_path = Path(labels_path)
    if not labels_path.exists():
        raise MissingInputError(f"{labels_path}: not found; run `ehr-hcl cohort` (or `ehr-hcl population`) first")
    labels = pd.read_parquet(labels_path, columns=["split"])
    X_raw, mask = load_features(features_dir)
    if len(labels) != len(mask):
        raise MissingInputError(
            f"{features_dir}: {len(mask)} feature rows but {labels_path} has {len(labels)}; rerun `ehr-hcl features`"
        )
    return X_raw, mask, (labels["split"] == "train").to_numpy()


def fit_models(
    features_dir: Path, labels_path: Path, models_dir: Path, config: EmbedConfig, params_source: str = "params.yaml"
) -> dict[str, Any]:
    """Fit every method of ``config.methods`` on the train rows of a features folder; save them atomically.

    ``models_dir`` gets the preprocessing (modalities kept, scaler) and per method ``<method>/model``
    (the estimator's own ``save``: JSON config + safetensors, no pickles), ``summary.csv`` and
    ``variance_explained.csv`` (modality x structure, on the fit rows).
    """
    features_dir = Path(features_dir)
    X_raw, _mask, train = _rows_and_train(labels_path, features_dir)
    if train.sum() < 10:
        raise ConfigError(f"{labels_path}: only {int(train.sum())} train rows; need at least 10 to fit representations")
    X_kept, dropped = usable_modalities(X_raw, train)
    for name, why in dropped.items():
        log.warning("embed: modality %r left out (%s); it is reported as absent", name, why)
    if len(X_kept) < 2:
        raise ConfigError(
            f"{features_dir}: only {sorted(X_kept)} usable; HCL needs at least two modalities (dropped: {dropped})"
        )
    complete = train & np.all([~np.isnan(v).any(axis=1) for v in X_kept.values()], axis=0)
    summary: dict[str, Any] = {
        "fit_rows": int(train.sum()),
        "complete_fit_rows": int(complete.sum()),
        "modalities": {m: int(v.shape[1]) for m, v in X_kept.items()},
        "dropped_modalities": dropped,
        "methods": {},
    }
    with atomic_dir(models_dir) as tmp:
        X = save_preprocessing(tmp, X_kept, train, dropped)
        # absent modality rows at the train mean (0 after standardising), for methods without a mask
        X_imputed = {m: np.nan_to_num(v, nan=0.0) for m, v in X.items()}
        for method in config.methods:
            kwargs = getattr(config, method, None) if method in METHODS else None
            estimator = make_estimator(method, kwargs or {}, config.seed, params_source)
            X_fit = _fit_input(method, X if method in HANDLES_MISSING else X_imputed, X_imputed, train, complete)
            checkpoint = _checkpoint_dir(Path(models_dir), method, estimator, X_fit)
            if checkpoint is not None:
                estimator.set_params(checkpoint_dir=str(checkpoint))
            start = time.perf_counter()
            log.info("embed: fitting %s on %d rows, modalities %s", method, len(next(iter(X_fit.values()))), list(X))
            estimator.fit(X_fit)
            if checkpoint is not None:  # finished: the next fit with these inputs starts from scratch
                estimator.set_params(checkpoint_dir=None)
                shutil.rmtree(checkpoint, ignore_errors=True)
            folder = tmp / method
            folder.mkdir()
            estimator.save(folder / "model")
            blocks = estimator.transform(X if method in HANDLES_MISSING else X_imputed)
            _write_model_tables(folder, estimator, X, blocks, train)
            summary["methods"][method] = {s: int(np.asarray(b).shape[1]) for s, b in blocks.items()}
            log.info("embed: %s fitted: %d blocks in %.1f s", method, len(blocks), time.perf_counter() - start)
        write_json(summary, tmp / "fit_summary.json")
    return summary


def _write_model_tables(folder: Path, estimator, X: dict, blocks: dict, rows: np.ndarray) -> None:
    """Write ``variance_explained.csv`` (model-based, else block R² on ``rows``) and ``summary.csv``."""
    ve = getattr(estimator, "variance_explained_", None)
    if not isinstance(ve, pd.DataFrame):
        ve = block_r2(X, blocks, rows)
    ve.to_csv(folder / "variance_explained.csv", float_format="%.6g")
    est_summary = getattr(estimator, "summary", None)
    if isinstance(est_summary, pd.DataFrame):
        est_summary.to_csv(folder / "summary.csv", float_format="%.6g")


def load_model(method: str, folder: Path):
    """Load a fitted method saved by :func:`fit_models`."""
    if method not in METHODS:
        raise ConfigError(f"{folder}: unknown method {method!r}; choose from {sorted(METHODS)}")
    module, cls_name = METHODS[method]
    path = Path(folder) / method / "model"
    if not path.exists():
        raise MissingInputError(f"{path}: not found; params `embed.methods` lists {method!r}: refit (`dvc repro`)")
    return getattr(import_module(module), cls_name).load(path)


def embed(
    features_dir: Path,
    labels_path: Path,
    output_dir: Path,
    models_dir: Path,
    config: EmbedConfig,
    params_source: str = "params.yaml",
    pretrained: Path | None = None,
) -> dict:
    """Write every method's embeddings of one cohort's rows.

    With ``config.fit_on == "pretraining"`` the methods fitted once on the pretraining population
    (``pretrained``, from :func:`fit_models`) are applied unchanged and copied to ``models_dir`` with
    this cohort's block R²; with ``"cohort"`` they are fitted here on the cohort's train rows.
    """
    features_dir = Path(features_dir)
    X_raw, mask, train = _rows_and_train(labels_path, features_dir)
    for method in config.methods:  # an unknown method or parameter is said before any fit or transform
        make_estimator(method, getattr(config, method, None) or {}, config.seed, params_source)
    if config.fit_on == "cohort":
        fitted = fit_models(features_dir, labels_path, models_dir, config, params_source)
        source = Path(models_dir)
    elif pretrained is None:
        raise ConfigError(
            f"{params_source}: embed.fit_on is 'pretraining' but no --pretrained models folder was given; "
            "pass --pretrained models/pretraining (from `ehr-hcl pretrain`) or set embed.fit_on: cohort"
        )
    else:
        source, fitted = Path(pretrained), None
    X = load_preprocessing(source, X_raw, features_dir)
    X_imputed = {m: np.nan_to_num(v, nan=0.0) for m, v in X.items()}
    prep = json.loads((source / PREPROCESSING_FILE).read_text())
    summary: dict[str, Any] = {
        "rows": int(len(mask)),
        "train_rows": int(train.sum()),
        "fit_on": config.fit_on,
        "modalities": {m: int(v.shape[1]) for m, v in X.items()},
        "dropped_modalities": prep["dropped"],
        "methods": {},
    }
    with atomic_dir(output_dir) as out_tmp:
        copies = {}
        for method in config.methods:
            estimator = load_model(method, source)
            blocks = estimator.transform(X if method in HANDLES_MISSING else X_imputed)
            frame = block_frame(blocks)
            if not np.isfinite(frame.to_numpy()).all():
                raise RuntimeError(f"{method} produced non-finite embeddings")
            frame.to_parquet(out_tmp / f"{method}.parquet", index=False, compression="zstd")
            copies[method] = blocks
            summary["methods"][method] = {
                "structures": {s: int(np.asarray(b).shape[1]) for s, b in blocks.items()},
                "columns": int(frame.shape[1]),
            }  # no timings here: reruns must be byte-identical
            log.info("embed: %s -> %d blocks, %d columns", method, len(blocks), frame.shape[1])
        write_json(summary, out_tmp / "embed_summary.json")
        if fitted is None:
            _copy_models(source, Path(models_dir), copies, X, train)
    return summary


def _copy_models(source: Path, models_dir: Path, fitted: dict[str, dict], X: dict, train: np.ndarray) -> None:
    """Copy the pretrained models into the cohort's models folder, with this cohort's block R² on train rows."""
    with atomic_dir(models_dir) as tmp:
        for name in (PREPROCESSING_FILE, SCALER_FILE, "fit_summary.json"):
            shutil.copy2(source / name, tmp / name)
        for method, blocks in fitted.items():
            shutil.copytree(source / method, tmp / method)
            block_r2(X, blocks, train).to_csv(tmp / method / "cohort_block_r2.csv", float_format="%.6g")
        write_json({"fit_on": "pretraining", "models": source.as_posix()}, tmp / "fitted_on.json")


def _checkpoint_dir(models_dir: Path, method: str, estimator, X_fit: dict[str, np.ndarray]) -> Path | None:
    """Return the checkpoint folder of a deep method's fit, or None for methods without checkpoints.

    Per-epoch checkpoints live outside the atomic output folder, keyed by the fit's parameters and data,
    so a killed `embed` resumes where it stopped and a changed one never does.
    """
    if "checkpoint_dir" not in estimator.get_params():
        return None
    digest = hashlib.sha256(method.encode())
    digest.update(json.dumps(estimator.get_params(), sort_keys=True, default=str).encode())
    for name in sorted(X_fit):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(X_fit[name]).tobytes())
    models_dir = Path(models_dir)
    return models_dir.parent / ".checkpoints" / models_dir.name / f"{method}-{digest.hexdigest()[:16]}"


def _fit_input(
    method: str, X_input: dict, X_imputed: dict, train: np.ndarray, complete: np.ndarray
) -> dict[str, np.ndarray]:
    """Select the train rows a method is fit on.

    LinearHCL estimates cross-modal covariances, which mean-imputed rows would shrink toward zero, so
    it fits on complete train rows when there are enough; every other method fits on all train rows.
    """
    if method != "linear_hcl":
        return {m: v[train] for m, v in X_input.items()}
    if complete.sum() >= MIN_COMPLETE_ROWS:
        return {m: v[complete] for m, v in X_input.items()}
    log.warning(
        "embed: linear_hcl fits on all %d train rows with absent modalities imputed at the train mean "
        "(only %d complete rows)", int(train.sum()), int(complete.sum())
    )
    return {m: v[train] for m, v in X_imputed.items()}

"""The ``fewshot`` stage: label efficiency of every representation, EHRSHOT's k-shot protocol.

For each replicate r (seed: r combined with ``fewshot.seed``) and each k of ``fewshot.ks``: draw k positives
and k negatives from the cohort's train rows and k + k from its tuning rows (:mod:`pipeline.fewshot.draws`:
nested across k, capped when a class is smaller), fit each model on the train draw (choosing what it chooses
on the tuning draw, :mod:`pipeline.fewshot.models`) and score it on the **full** held_out split: AUROC and
AUPRC, each with its subject-bootstrap 95% interval (the predict stage's bootstrap, one shared set of
resamples). Per representation x model x k: mean, sd, min and max across replicates. ``k = "all"`` takes
every train and tuning row, which is the same draw in every replicate, so it is fitted once (replicate 0).

Paired differences, per model and k and replicate (same draws, same held_out rows): every HCL representation
(``fewshot.hcl_methods``) minus ``concat`` (raw features), and minus the best non-HCL representation. "Best"
is the non-HCL representation with the highest *mean held_out* AUROC at that model and k: this names the
strongest competitor for a reported comparison; nothing is selected or tuned on held_out.

The stage runs in three steps: :func:`evaluate` (pure), :func:`pipeline.fewshot.outputs.write_outputs`
(metrics JSON, plot table, figure) and :func:`pipeline.fewshot.track.track` (MLflow).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm import tqdm

from pipeline.fewshot.draws import ALL, Draw, k_label, replicate_draws, replicate_seed
from pipeline.fewshot.models import FEWSHOT_MODELS, fit_kshot
from pipeline.predict import metrics as M
from pipeline.predict.inputs import read_embeddings, read_labels, representation_paths
from pipeline.predict.models import ModelUnavailable
from pipeline.predict.run import HCL_METHODS, PredictConfig, SplitData, split_data

logger = logging.getLogger(__name__)

FewshotModel = Literal["logistic", "group_lasso", "hgb"]
DEFAULT_KS: list[int | str] = [1, 2, 4, 8, 16, 32, 64, 128, ALL]
#: the representation every HCL method is compared with: the raw features
REFERENCE = "concat"
BEST_RULE = (
    "best non-HCL = highest mean held_out AUROC across replicates at that model and k "
    "(names the strongest competitor for reporting; no choice is made on held_out)"
)


class FewshotConfig(BaseModel):
    """The ``fewshot`` section of ``params.yaml``.

    Attributes
    ----------
    ks : shots per class; positive integers and ``"all"`` (every train and tuning row), sorted on reading.
    replicates : independent draws per k (replicate r draws with seed r combined with ``seed``).
    models : downstream models (logistic, group_lasso, hgb).
    bootstrap_resamples : subject-level bootstrap resamples of held_out for each replicate's intervals.
    seed : combined with the replicate index for the draws, the models and the bootstrap.
    alpha : 1 − confidence level of every interval.
    hcl_methods : the representations that are HCL; every other one is a baseline.
    logistic_c : the grid of the logistic regression's ``C``.
    group_lasso_cv, group_lasso_n_alphas : the group lasso's own CV folds (at most the smaller class's draw)
        and penalty path length.
    group_lasso_max_iter : iterations of its solver per penalty (few rows rarely need more).
    group_lasso_min_groups : representations with fewer structure blocks are not given to the group lasso
        (one block leaves nothing to select).
    hgb_max_iter : boosting rounds of the gradient boosting.
    hgb_early_stopping_rows : train draws from this size up stop the boosting on an internal 10% split.
    decimals : floats in the metrics JSON are rounded to this many decimals.
    """

    model_config = ConfigDict(extra="forbid")

    ks: list[int | Literal["all"]] = Field(default_factory=lambda: list(DEFAULT_KS), min_length=1)
    replicates: int = Field(5, ge=1, le=1000)
    models: list[FewshotModel] = Field(default_factory=lambda: list(FEWSHOT_MODELS), min_length=1)
    bootstrap_resamples: int = Field(200, ge=0, le=100_000)
    seed: int = 0
    alpha: float = Field(0.05, gt=0, lt=1)
    hcl_methods: list[str] = Field(default_factory=lambda: list(HCL_METHODS))
    logistic_c: list[float] = Field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0], min_length=1)
    group_lasso_cv: int = Field(3, ge=2)
    group_lasso_n_alphas: int = Field(12, ge=2)
    group_lasso_max_iter: int = Field(1000, ge=10)
    group_lasso_min_groups: int = Field(2, ge=1)
    hgb_max_iter: int = Field(100, ge=1)
    hgb_early_stopping_rows: int = Field(200, ge=20)
    decimals: int = Field(6, ge=1, le=12)

    @field_validator("ks", mode="before")
    @classmethod
    def _parse_ks(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        out: list[int | str] = []
        for k in value:
            text = str(k).strip().lower()
            if text == ALL:
                out.append(ALL)
            elif text.isdigit() and int(text) >= 1:
                out.append(int(text))
            else:
                raise ValueError(f"k = {k!r}: each k must be a positive integer or 'all'")
        if len(set(out)) != len(out):
            raise ValueError(f"ks = {list(value)!r} lists a k twice")
        return sorted((k for k in out if k != ALL), key=int) + [k for k in out if k == ALL]

    @field_validator("logistic_c")
    @classmethod
    def _positive_c(cls, value: list[float]) -> list[float]:
        if any(c <= 0 for c in value):
            raise ValueError("every C must be > 0")
        return value

    def settings(self) -> dict[str, Any]:
        """Return the model settings that :func:`pipeline.fewshot.models.fit_kshot` reads."""
        return self.model_dump(
            include={
                "logistic_c",
                "group_lasso_cv",
                "group_lasso_n_alphas",
                "group_lasso_max_iter",
                "group_lasso_min_groups",
                "hgb_max_iter",
                "hgb_early_stopping_rows",
            }
        )

    def replicates_for(self, k: int | str) -> int:
        """Replicates at ``k``: one for ``"all"`` (the same rows in every replicate), else ``replicates``."""
        return 1 if k == ALL else self.replicates


class FewshotInputs(BaseModel):
    """What one ``fewshot`` run reads and writes.

    Attributes
    ----------
    cohort : the task name (MLflow experiment).
    labels_path : ``data/cohorts/<cohort>/labels.parquet``.
    embeddings_dir : folder of ``<representation>.parquet`` files, rows aligned with the labels.
    metrics_path : the metrics JSON (e.g. ``metrics/fewshot/<cohort>.json``), written atomically.
    plots_dir : folder for ``auroc.csv`` (mean and replicate range of AUROC against k) and ``auroc.png``.
    params : params to log on the parent MLflow run.
    tags : extra tags for the parent run.
    progress : show a progress bar.
    """

    model_config = ConfigDict(extra="forbid")

    cohort: str
    labels_path: Path
    embeddings_dir: Path
    metrics_path: Path
    plots_dir: Path
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    progress: bool = True


# ----------------------------------------------------------------------------------------------------
# Draws, fits and scores (pure: no files, no MLflow)
# ----------------------------------------------------------------------------------------------------


def all_draws(data: SplitData, config: FewshotConfig) -> list[tuple[dict[str, Draw], dict[str, Draw]]]:
    """Draw the (train, tuning) draws of every replicate, keyed by k label."""
    return [
        replicate_draws(data.y, data.train, data.tuning, config.ks, replicate_seed(config.seed, r))
        for r in range(config.replicates)
    ]


def draw_summary(draws: list[tuple[dict[str, Draw], dict[str, Draw]]], config: FewshotConfig) -> dict:
    """Rows per class of every draw, and which k were capped (also logged)."""
    out: dict[str, Any] = {}
    for k in config.ks:
        key = k_label(k)
        reps = []
        for r in range(config.replicates_for(k)):
            tr, tu = draws[r][0][key], draws[r][1][key]
            reps.append(
                {
                    "train_positives": tr.n_positive,
                    "train_negatives": tr.n_negative,
                    "tuning_positives": tu.n_positive,
                    "tuning_negatives": tu.n_negative,
                }
            )
        capped_train = any(draws[r][0][key].capped for r in range(config.replicates_for(k)))
        capped_tuning = any(draws[r][1][key].capped for r in range(config.replicates_for(k)))
        if capped_train or capped_tuning:
            logger.warning(
                "fewshot: k = %s is capped (%s): a class has fewer rows than k; %s",
                key,
                " and ".join(s for s, c in (("train", capped_train), ("tuning", capped_tuning)) if c),
                reps[0],
            )
        out[key] = {"replicates": reps, "capped_train": capped_train, "capped_tuning": capped_tuning}
    return out


def score_replicate(
    data: SplitData, X: np.ndarray, columns: list[str], model: str, train: Draw, tune: Draw, config, seed: int
) -> dict[str, Any]:
    """Fit ``model`` on one draw and score it on the full held_out split (AUROC, AUPRC with CIs)."""
    fit = fit_kshot(
        model,
        X[train.rows],
        data.y[train.rows],
        X[tune.rows],
        data.y[tune.rows],
        columns,
        config.settings(),
        seed,
    )
    if fit.skipped is not None:
        return {"skipped": fit.skipped}
    y_ho = data.y[data.held_out]
    p = fit.predict_proba(X[data.held_out])
    out: dict[str, Any] = {"hyperparameters": fit.hyperparameters, "tuning_auroc": fit.tuning_auroc}
    for name in ("auroc", "auprc"):
        out.update(M.bootstrap_metric(M.METRICS[name], y_ho, p, data.weights, config.alpha).as_dict(name))
    if fit.selected_structures is not None:
        out["selected_structures"] = fit.selected_structures
    return out


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, sd (n − 1; 0 for one value), min and max of the finite ``values``, and how many there were."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "sd": sd, "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}


def evaluate_representation(
    data: SplitData, X: np.ndarray, columns: list[str], draws, config: FewshotConfig, bar
) -> dict[str, dict[str, Any]]:
    """Every model x k x replicate of one representation: ``{model: {k: {replicates, auroc, auprc}}}``."""
    out: dict[str, dict[str, Any]] = {}
    for model in config.models:
        for k in config.ks:
            key, reps = k_label(k), []
            for r in range(config.replicates_for(k)):
                train, tune = draws[r][0][key], draws[r][1][key]
                res = score_replicate(
                    data, X, columns, model, train, tune, config, replicate_seed(config.seed, r)
                )
                reps.append({"replicate": r, **res})
                bar.update(1)
            cell: dict[str, Any] = {"replicates": reps}
            for name in ("auroc", "auprc"):
                cell[name] = spread([x.get(name) for x in reps])
            skipped = [x["skipped"] for x in reps if "skipped" in x]
            if skipped:
                cell["skipped"] = skipped[0]
            out.setdefault(model, {})[key] = cell
    return out


def paired_differences(results: dict, config: FewshotConfig) -> dict:
    """Per HCL representation, model and k: AUROC minus ``concat``'s and minus the best non-HCL's, per replicate.

    Returns
    -------
    dict
        ``{rep: {model: {k: {"vs_concat": {...}, "vs_best_non_hcl": {...}}}}}``; each entry holds
        ``baseline``, ``per_replicate`` (None where either side is undefined) and mean/sd/min/max.
    """
    hcl = [r for r in results if r in config.hcl_methods]
    others = [r for r in results if r not in config.hcl_methods]
    out: dict[str, Any] = {}

    def diff(rep: str, base: str, model: str, key: str) -> dict[str, Any]:
        a = results[rep][model][key]["replicates"]
        b = results[base][model][key]["replicates"]
        per = [
            (x["auroc"] - y["auroc"]) if x.get("auroc") is not None and y.get("auroc") is not None else None
            for x, y in zip(a, b, strict=True)
        ]
        return {"baseline": base, "per_replicate": per, **spread(per)}

    for model in config.models:
        for k in config.ks:
            key = k_label(k)
            means = [
                (results[r][model][key]["auroc"]["mean"], r)
                for r in others
                if results[r][model][key]["auroc"]["mean"] is not None
            ]
            best = min(means, key=lambda t: (-t[0], t[1]))[1] if means else None  # ties: first by name
            for rep in hcl:
                cell = {}
                if REFERENCE in results and "skipped" not in results[REFERENCE][model][key]:
                    cell["vs_concat"] = diff(rep, REFERENCE, model, key)
                if best is not None:
                    cell["vs_best_non_hcl"] = diff(rep, best, model, key)
                out.setdefault(rep, {}).setdefault(model, {})[key] = cell
    return out


def evaluate(
    cohort: str, data: SplitData, rep_paths: list[Path], config: FewshotConfig, progress: bool = True
) -> dict[str, Any]:
    """Run the protocol on every representation; return the metrics dict (before rounding).

    Parameters
    ----------
    cohort : str
        The task name (written into the metrics).
    data : SplitData
        The labels, their splits and the held_out bootstrap weights.
    rep_paths : list of Path
        The representations' parquet files.
    config : FewshotConfig
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        cohort, config, split counts, draws, results, paired differences.
    """
    draws = all_draws(data, config)
    fits_per_rep = len(config.models) * sum(config.replicates_for(k) for k in config.ks)
    result: dict[str, Any] = {
        "cohort": cohort,
        "config": config.model_dump(),
        "n": data.counts,
        "representations": [p.stem for p in rep_paths],
        "baselines": [p.stem for p in rep_paths if p.stem not in config.hcl_methods],
        "ks": [k_label(k) for k in config.ks],
        "draws": draw_summary(draws, config),
        "results": {},
        "skipped_models": {},
        "best_non_hcl_rule": BEST_RULE,
    }
    config = _available_models(config, result["skipped_models"])
    with tqdm(total=len(rep_paths) * fits_per_rep, desc="fewshot", unit="fit", disable=not progress) as bar:
        for path in rep_paths:
            X, columns = read_embeddings(path, len(data.labels))
            result["results"][path.stem] = evaluate_representation(data, X, columns, draws, config, bar)
    result["paired"] = paired_differences(result["results"], config)
    return result


def _available_models(config: FewshotConfig, skipped: dict[str, str]) -> FewshotConfig:
    """Drop (and record in ``skipped``) the models whose implementation cannot be imported here."""
    from pipeline.predict.models import build_pipeline

    keep = []
    for model in config.models:
        try:
            build_pipeline(model, 0)
        except ModelUnavailable as exc:
            logger.warning("fewshot: model %s skipped: %s", model, exc)
            skipped[model] = str(exc)
            continue
        keep.append(model)
    return config.model_copy(update={"models": keep})


def load_data(labels_path: Path, config: FewshotConfig) -> SplitData:
    """Read the labels and split them, with the held_out bootstrap weights (the predict stage's reader)."""
    labels = read_labels(labels_path)
    predict_config = PredictConfig(
        bootstrap_resamples=config.bootstrap_resamples, seed=config.seed, alpha=config.alpha, survival=False
    )
    return split_data(labels, labels_path, predict_config)


def fewshot(inputs: FewshotInputs, config: FewshotConfig, tracking=None) -> dict[str, Any]:
    """Run the k-shot protocol for one cohort, write its files and track it.

    Parameters
    ----------
    inputs : FewshotInputs
        The cohort, its files and what to tag the MLflow runs with.
    config : FewshotConfig
        The ``fewshot`` section of ``params.yaml``.
    tracking : pipeline.tracking.TrackingConfig, optional
        Where to log runs; None skips MLflow.

    Returns
    -------
    dict
        The metrics written to ``inputs.metrics_path`` (rounded, JSON-safe).

    Raises
    ------
    MissingInputError, InputSchemaError, CohortError
    """
    from pipeline.fewshot.outputs import write_outputs

    data = load_data(inputs.labels_path, config)
    rep_paths = representation_paths(inputs.embeddings_dir)
    result = evaluate(inputs.cohort, data, rep_paths, config, inputs.progress)
    result, files = write_outputs(result, inputs.metrics_path, inputs.plots_dir, config.decimals)
    if tracking is not None:
        from pipeline.fewshot.track import track

        track(result, inputs, config, tracking, files)
    return result

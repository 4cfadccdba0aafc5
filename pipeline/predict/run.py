"""The ``predict`` stage: representations × models → metrics with CIs, plots, MLflow runs.

For every ``<embeddings_dir>/<representation>.parquet`` and every configured model: fit on ``train``,
choose hyper-parameters on ``tuning``, report on ``held_out`` only. Confidence intervals come from one
shared set of subject-level bootstrap resamples of held_out, so paired comparisons use the same draws.

The stage runs in three steps: :func:`evaluate` (pure: one :class:`PairResult` per representation × model,
and the comparisons between them), :func:`pipeline.predict.outputs.write_outputs` (metrics JSON, plot
tables and figures) and :func:`pipeline.predict.track.track` (one MLflow step at the end).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from pipeline.exceptions import CohortError
from pipeline.predict import metrics as M
from pipeline.predict.inputs import read_embeddings, read_labels, representation_paths
from pipeline.predict.models import MODEL_NAMES, FittedModel, ModelUnavailable, fit_model
from pipeline.predict.truth import OutcomeTruth, outcome_truth
from pipeline.schema import SPLITS

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

ModelName = Literal["logistic", "group_lasso", "hgb", "mlp"]
#: the embed methods that are HCL; every other representation is a baseline
HCL_METHODS = ("hcl", "linear_hcl")


class PredictConfig(BaseModel):
    """The ``predict`` section of ``params.yaml``.

    Attributes
    ----------
    models : downstream models to fit on every representation.
    bootstrap_resamples : subject-level bootstrap resamples for overall CIs and paired tests.
    subgroup_resamples : resamples for subgroup CIs (fewer: many small groups).
    survival_resamples : resamples for the concordance-index CI.
    seed : random state of models and bootstraps.
    alpha : 1 − confidence level of every interval.
    subgroups : label columns to stratify by (absent or all-null columns are skipped).
    min_subgroup_size, min_subgroup_events : smaller subgroups are flagged ``small`` (not to be over-read).
    survival : fit cause-specific Cox models and draw KM / cumulative-incidence curves.
    group_lasso_cv, group_lasso_n_alphas : folds and penalty-path length of the group lasso's internal
        cross-validation on train (its cost grows with both).
    cox_penalizer : L2 penalty of the Cox fit.
    cox_max_columns : wider representations enter the Cox model through this many principal components.
    hcl_methods : the representations (embed method names) that are HCL; all others are baselines.
    calibration_bins : quantile bins of the calibration curve (ECE uses equal-width bins).
    curve_points : grid size of the ROC / PR curves written for plotting.
    log_models : log every fitted model to MLflow (the champion is always logged).
    small_sample_rows : held_out sizes below this trigger the small-sample caveat in the JSON.
    """

    model_config = ConfigDict(extra="forbid")

    models: list[ModelName] = Field(default_factory=lambda: list(MODEL_NAMES))
    bootstrap_resamples: int = Field(1000, ge=0, le=100_000)
    subgroup_resamples: int = Field(200, ge=0, le=100_000)
    survival_resamples: int = Field(200, ge=0, le=100_000)
    seed: int = 0
    alpha: float = Field(0.05, gt=0, lt=1)
    subgroups: list[str] = Field(default_factory=lambda: ["sex", "age_band", "admission_type", "insurance"])
    min_subgroup_size: int = Field(50, ge=1)
    min_subgroup_events: int = Field(10, ge=0)
    survival: bool = True
    group_lasso_cv: int = Field(5, ge=2)
    group_lasso_n_alphas: int = Field(20, ge=2)
    cox_penalizer: float = Field(0.1, ge=0)
    cox_max_columns: int = Field(20, ge=1)
    hcl_methods: list[str] = Field(default_factory=lambda: list(HCL_METHODS))
    calibration_bins: int = Field(10, ge=2)
    curve_points: int = Field(101, ge=11)
    log_models: bool = True
    small_sample_rows: int = Field(500, ge=0)


class PredictInputs(BaseModel):
    """What one ``predict`` run reads and writes.

    Attributes
    ----------
    cohort : the task name (MLflow experiment and registered model name).
    labels_path : ``data/cohorts/<cohort>/labels.parquet``; its folder holds ``cohort.yaml``, whose outcome
        (``outcome.key``) selects the synthetic truth's oracle column and outcome structures.
    embeddings_dir : folder of ``<representation>.parquet`` files, rows aligned with the labels.
    metrics_path : JSON written atomically (DVC metrics).
    plots_dir : folder for ``roc.csv``, ``pr.csv``, ``calibration.csv``, ``km.csv``, ``cif.csv``,
        ``subgroups.csv`` (held_out AUROC per subgroup level, small groups flagged) and PNGs.
    truth_path : synthetic truth ``admissions.parquet`` (hadm_id + true probabilities), with
        ``structure.json`` beside it, for the oracle AUROC and the structure-selection check; None to skip.
    features_dir : the cohort's features folder (``<modality>.parquet``, ``mask.parquet``); when given, the
        parent MLflow run lists each modality's feature matrix as a dataset input too (the evaluation reads
        only the representations). None to skip.
    params : params to log on the parent MLflow run (nested dicts are flattened).
    tags : extra tags for the parent run (e.g. cohort_yaml_sha256, data_source).
    progress : show a progress bar.
    """

    model_config = ConfigDict(extra="forbid")

    cohort: str
    labels_path: Path
    embeddings_dir: Path
    metrics_path: Path
    plots_dir: Path
    truth_path: Path | None = None
    features_dir: Path | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    progress: bool = True


@dataclass
class SplitData:
    """The labels split into train / tuning / held_out, with the held_out bootstrap draws."""

    labels: pd.DataFrame
    y: np.ndarray
    train: np.ndarray
    tuning: np.ndarray
    held_out: np.ndarray
    counts: dict[str, dict[str, int]]
    weights: np.ndarray
    survival: bool

    @property
    def labels_held_out(self) -> pd.DataFrame:
        """The held_out rows of the labels, index reset."""
        return self.labels.iloc[self.held_out].reset_index(drop=True)


@dataclass
class PairResult:
    """The evaluation of one (representation, model) pair on held_out."""

    representation: str
    model: FittedModel
    metrics: dict[str, Any]
    p_held_out: np.ndarray
    subgroups: dict[str, dict[str, Any]]
    roc: dict[str, np.ndarray]
    pr: dict[str, np.ndarray]
    calibration: list[dict]


@dataclass
class Evaluation:
    """Everything the stage computed: the metrics dict and what the writer and the tracking step need."""

    result: dict[str, Any]
    pairs: list[PairResult] = field(default_factory=list)
    examples: dict[str, Any] = field(default_factory=dict)
    survival_rows: dict[str, list[dict]] = field(default_factory=lambda: {"km": [], "cif": []})


def is_baseline(representation: str, config: PredictConfig) -> bool:
    """Whether ``representation`` is a baseline (not one of ``config.hcl_methods``)."""
    return representation not in config.hcl_methods


# ----------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------


def split_data(labels: pd.DataFrame, labels_path: Path, config: PredictConfig) -> SplitData:
    """Split the labels and draw the held_out bootstrap weights.

    Raises
    ------
    CohortError
        train lacks a class, or held_out is empty.
    """
    y = labels["boolean_value"].astype(bool).to_numpy().astype(int)
    split = labels["split"].astype(str).to_numpy()
    idx = {s: np.where(split == s)[0] for s in SPLITS}
    counts = {
        s: {
            "rows": int(len(i)),
            "positives": int(y[i].sum()),
            "subjects": int(labels["subject_id"].iloc[i].nunique()),
        }
        for s, i in idx.items()
    }
    tr, ho = idx["train"], idx["held_out"]
    if len(tr) == 0 or y[tr].min() == y[tr].max():
        raise CohortError(
            f"{labels_path}: the train split has {counts['train']['rows']} rows and {counts['train']['positives']} positives; "
            "models need both classes in train: widen the cohort or change the split fractions"
        )
    if len(ho) == 0:
        raise CohortError(f"{labels_path}: the held_out split is empty; change the split fractions")
    if y[ho].sum() == 0 or y[ho].sum() == len(ho):
        logger.warning(
            "held_out has a single class (%d positives of %d rows): AUROC/AUPRC are undefined",
            counts["held_out"]["positives"],
            len(ho),
        )
    subj_ho = labels["subject_id"].to_numpy()[ho]
    weights = M.subject_bootstrap_weights(subj_ho, config.bootstrap_resamples, config.seed)
    has_surv = config.survival and {"event_time_days", "event_type"} <= set(labels.columns)
    if config.survival and not has_surv:
        logger.warning("survival: labels have no event_time_days/event_type columns; survival skipped")
    return SplitData(labels, y, tr, idx["tuning"], ho, counts, weights, has_surv)


# ----------------------------------------------------------------------------------------------------
# Evaluation of one pair (pure: no files, no MLflow)
# ----------------------------------------------------------------------------------------------------


def held_out_metrics(y: np.ndarray, p: np.ndarray, weights: np.ndarray, alpha: float) -> dict[str, float]:
    """AUROC, AUPRC, Brier with CIs; calibration intercept/slope and ECE (point); prevalence and n."""
    out: dict[str, float] = {"n": int(len(y)), "n_positive": int(np.sum(y))}
    for name, fn in M.METRICS.items():
        out.update(M.bootstrap_metric(fn, y, p, weights, alpha).as_dict(name))
    out.update(M.calibration_summary(y, p))
    out["mean_predicted"] = float(np.mean(p)) if len(p) else float("nan")
    return out


def subgroup_metrics(
    labels_ho: pd.DataFrame, y: np.ndarray, p: np.ndarray, config: PredictConfig, seed: int
) -> dict[str, dict[str, Any]]:
    """Held_out AUROC (with CI) and Brier per level of each subgroup column; small groups flagged."""
    out: dict[str, dict[str, Any]] = {}
    for col in config.subgroups:
        if col not in labels_ho.columns or labels_ho[col].isna().all():
            continue
        values = labels_ho[col].astype("string").fillna("missing").to_numpy()
        for level in sorted(set(values)):
            m = values == level
            n, npos = int(m.sum()), int(y[m].sum())
            w = M.subject_bootstrap_weights(
                labels_ho["subject_id"].to_numpy()[m], config.subgroup_resamples, seed
            )
            est = M.bootstrap_metric(M.auroc, y[m], p[m], w, config.alpha)
            small = (
                n < config.min_subgroup_size
                or npos < config.min_subgroup_events
                or (n - npos) < config.min_subgroup_events
            )
            out[f"{col}={level}"] = {
                "column": col,
                "level": str(level),
                "n": n,
                "n_positive": npos,
                "auroc": est.value,
                "auroc_lo": est.lo,
                "auroc_hi": est.hi,
                "brier": M.brier(y[m], p[m]),
                "small": bool(small),
            }
    return out


def evaluate_pair(
    data: SplitData, rep: str, X: np.ndarray, columns: list[str], model_name: str, config: PredictConfig
) -> PairResult:
    """Fit ``model_name`` on one representation and evaluate it on held_out.

    Parameters
    ----------
    data : SplitData
        The labels and their splits.
    rep : str
        The representation's name.
    X : array of shape (n, d)
        The representation, rows aligned with ``data.labels``.
    columns : list of str
        Its column names ``<structure>__<k>``.
    model_name : str
        One of :data:`pipeline.predict.models.MODEL_NAMES`.
    config : PredictConfig

    Returns
    -------
    PairResult

    Raises
    ------
    ModelUnavailable
        The model cannot be built here.
    """
    tr, tu, ho = data.train, data.tuning, data.held_out
    extra = (
        {"cv": config.group_lasso_cv, "n_alphas": config.group_lasso_n_alphas}
        if model_name == "group_lasso"
        else None
    )
    model = fit_model(
        model_name, X[tr], data.y[tr], X[tu], data.y[tu], columns, seed=config.seed, extra=extra
    )
    y_ho = data.y[ho]
    p = model.predict_proba(X[ho])
    res = held_out_metrics(y_ho, p, data.weights, config.alpha)
    res.update(
        tuning_auroc=model.tuning_auroc,
        tuning_log_loss=model.tuning_log_loss,
        hyperparameters=model.hyperparameters,
        baseline=is_baseline(rep, config),
    )
    if model.selected_structures is not None:
        res["selected_structures"] = model.selected_structures
        if not model.selected_structures:
            logger.warning(
                "%s + %s kept no block: its cross-validated penalty chose the empty model, so it "
                "predicts the train prevalence (held_out AUROC 0.5)",
                rep,
                model_name,
            )
    groups = subgroup_metrics(data.labels_held_out, y_ho, p, config, config.seed)
    grid = np.linspace(0, 1, config.curve_points)
    return PairResult(
        representation=rep,
        model=model,
        metrics=res,
        p_held_out=p,
        subgroups=groups,
        roc=M.roc_band(y_ho, p, data.weights, grid, config.alpha),
        pr=M.pr_band(y_ho, p, data.weights, grid, config.alpha),
        calibration=M.calibration_curve(y_ho, p, config.calibration_bins),
    )


def summary_rows(X_train: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """Input example of summary rows: train column means, and means ∓ one standard deviation.

    Aggregates only (a per-column quantile could be one patient's actual value on a small cohort).
    """
    import pandas as pd

    mean, sd = X_train.mean(axis=0), X_train.std(axis=0)
    return pd.DataFrame(np.vstack([mean - sd, mean, mean + sd]), columns=columns).astype("float64")


def _survival(data: SplitData, X: np.ndarray, config: PredictConfig) -> dict:
    from pipeline.predict.survival import fit_cox

    labels, tr, ho = data.labels, data.train, data.held_out
    t = labels["event_time_days"].to_numpy(dtype=float)
    e = labels["event_type"].astype(str).to_numpy()
    return fit_cox(
        X[tr],
        t[tr],
        e[tr],
        X[ho],
        t[ho],
        e[ho],
        labels["subject_id"].to_numpy()[ho],
        penalizer=config.cox_penalizer,
        n_resamples=config.survival_resamples,
        seed=config.seed,
        max_columns=config.cox_max_columns,
    )


# ----------------------------------------------------------------------------------------------------
# Evaluation of every pair, and the comparisons between them
# ----------------------------------------------------------------------------------------------------


def evaluate(
    cohort: str,
    data: SplitData,
    rep_paths: list[Path],
    config: PredictConfig,
    truth: OutcomeTruth | None = None,
    progress: bool = True,
) -> Evaluation:
    """Evaluate every representation × model; compare them with the best baseline and the oracle.

    Parameters
    ----------
    cohort : str
        The task name (written into the metrics).
    data : SplitData
        The labels and their splits (see :func:`split_data`).
    rep_paths : list of Path
        The representations' parquet files.
    config : PredictConfig
    truth : OutcomeTruth, optional
        The synthetic truth of this cohort's outcome (oracle AUROC, outcome structures).
    progress : bool
        Show a progress bar (closed before any error propagates).

    Returns
    -------
    Evaluation
        ``result`` is the metrics dict (before JSON cleaning).
    """
    result: dict[str, Any] = {
        "cohort": cohort,
        "n": data.counts,
        "representations": [p.stem for p in rep_paths],
        "baselines": [p.stem for p in rep_paths if is_baseline(p.stem, config)],
        "results": {},
        "survival": {},
        "paired": {},
        "skipped_models": {},
        "small_sample": bool(len(data.held_out) < config.small_sample_rows),
    }
    ev = Evaluation(result)
    with tqdm(
        total=len(rep_paths) * len(config.models), desc="predict", unit="model", disable=not progress
    ) as bar:
        for rep_path in rep_paths:
            _evaluate_representation(ev, data, rep_path, config, bar)
    _paired(result, ev.pairs, data.y[data.held_out], data.weights, config)
    result["champion"] = _choose_champion(result)
    if truth is not None:
        result["oracle"] = truth.oracle(
            data.labels_held_out, data.y[data.held_out], data.weights, config.alpha
        )
        _selection_vs_truth(result, truth)
    return ev


def _evaluate_representation(
    ev: Evaluation, data: SplitData, rep_path: Path, config: PredictConfig, bar
) -> None:
    rep = rep_path.stem
    X, columns = read_embeddings(rep_path, len(data.labels))
    ev.examples[rep] = summary_rows(X[data.train], columns)  # input example of logged models: summaries only
    surv = None
    if data.survival:
        surv = _survival(data, X, config)
        ev.result["survival"][rep] = {
            k: v for k, v in surv.items() if k not in ("km", "cif", "risk_held_out")
        }
        ev.survival_rows["km"] += [{"representation": rep, **r} for r in surv["km"]]
        ev.survival_rows["cif"] += [{"representation": rep, **r} for r in surv["cif"]]
    for model_name in config.models:
        bar.update(1)
        try:
            pair = evaluate_pair(data, rep, X, columns, model_name, config)
        except ModelUnavailable as exc:
            logger.warning("%s: model %s skipped: %s", rep, model_name, exc)
            ev.result["skipped_models"][model_name] = str(exc)
            continue
        if surv is not None:
            pair.metrics.update(
                c_index=surv["c_index"], c_index_lo=surv["c_index_lo"], c_index_hi=surv["c_index_hi"]
            )
        pair.metrics["n_subgroups_small"] = sum(1 for g in pair.subgroups.values() if g["small"])
        ev.result["results"].setdefault(rep, {})[model_name] = pair.metrics
        ev.pairs.append(pair)


def _paired(
    result: dict, pairs: list[PairResult], y: np.ndarray, weights: np.ndarray, config: PredictConfig
) -> None:
    """Per model: each representation vs the best baseline (by held_out AUROC) of that model."""
    preds = {(p.representation, p.model.name): p.p_held_out for p in pairs}
    for model_name in config.models:
        base = [
            (result["results"][r][model_name]["auroc"], r)
            for r in result["baselines"]
            if model_name in result["results"].get(r, {})
            and np.isfinite(result["results"][r][model_name]["auroc"])
        ]
        if not base:
            continue
        _, best = max(base)
        for rep in result["results"]:
            if rep == best or (rep, model_name) not in preds:
                continue
            pair = M.paired_bootstrap(
                M.auroc, y, preds[(rep, model_name)], preds[(best, model_name)], weights, config.alpha
            )
            result["paired"].setdefault(rep, {})[model_name] = {"baseline": best, **pair}


def _choose_champion(result: dict) -> dict | None:
    """Best representation × model by *tuning* AUROC (held_out stays untouched by the choice)."""
    best = None
    for rep, models in result["results"].items():
        for model_name, res in models.items():
            score = res.get("tuning_auroc")
            score = -res.get("tuning_log_loss", np.inf) if score is None or not np.isfinite(score) else score
            if best is None or score > best[0]:
                best = (score, rep, model_name)
    if best is None:
        return None
    return {"representation": best[1], "model": best[2], "selected_by": "tuning_auroc"}


def _selection_vs_truth(result: dict, truth: OutcomeTruth) -> None:
    """Compare group-lasso selections with the generator's structures of this outcome (synthetic data).

    Adds ``selection_precision`` / ``selection_recall`` to each non-baseline group-lasso result and
    ``truth_outcome_structures`` to the top level.
    """
    if truth.structures is None:
        return
    true = set(truth.structures)
    result["truth_outcome_structures"] = sorted(true)
    for models in result["results"].values():
        res = models.get("group_lasso")
        if not res or res.get("selected_structures") is None or res.get("baseline"):
            continue  # baselines' groups are not structures
        sel = set(res["selected_structures"])
        res["selection_precision"] = len(sel & true) / len(sel) if sel else float("nan")
        res["selection_recall"] = len(sel & true) / len(true) if true else float("nan")


# ----------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------


def predict(inputs: PredictInputs, config: PredictConfig, tracking=None) -> dict:
    """Fit, evaluate, write and track every representation × model for one cohort (task).

    Parameters
    ----------
    inputs : PredictInputs
        The cohort, its files and what to tag the MLflow runs with.
    config : PredictConfig
        The ``predict`` section of ``params.yaml``.
    tracking : pipeline.tracking.TrackingConfig, optional
        Where to log runs; None skips MLflow.

    Returns
    -------
    dict
        The metrics dict also written to ``inputs.metrics_path``.

    Raises
    ------
    MissingInputError, InputSchemaError, CohortError
    """
    from pipeline.predict.outputs import write_outputs

    labels = read_labels(inputs.labels_path)
    rep_paths = representation_paths(inputs.embeddings_dir)
    data = split_data(labels, inputs.labels_path, config)
    truth = outcome_truth(inputs.truth_path, inputs.labels_path) if inputs.truth_path is not None else None
    ev = evaluate(inputs.cohort, data, rep_paths, config, truth, inputs.progress)
    figures = write_outputs(ev, inputs.metrics_path, inputs.plots_dir)
    if tracking is not None:
        from pipeline.predict.track import track

        track(ev, inputs, config, tracking, rep_paths, figures)
    return ev.result

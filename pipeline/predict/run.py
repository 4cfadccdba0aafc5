"""The ``predict`` stage: representations × models → metrics with CIs, plots, MLflow runs.

For every ``<embeddings_dir>/<representation>.parquet`` and every configured model: fit on ``train``,
choose hyper-parameters on ``tuning``, report on ``held_out`` only. Confidence intervals come from one
shared set of subject-level bootstrap resamples of held_out, so paired comparisons use the same draws.
"""

from __future__ import annotations

import copy
import logging
import math
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.exceptions import CohortError, InputSchemaError, MissingInputError
from pipeline.io import atomic_path, write_json
from pipeline.predict import metrics as M
from pipeline.predict.models import LINEAR_MODELS, MODEL_NAMES, FittedModel, ModelUnavailable, fit_model
from pipeline.schema import SPLITS

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

ModelName = Literal["logistic", "group_lasso", "hgb", "mlp"]
REQUIRED_LABEL_COLUMNS = ("subject_id", "hadm_id", "boolean_value", "split")


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
    hcl_prefixes : representation names starting with one of these are HCL; all others are baselines.
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
    hcl_prefixes: list[str] = Field(default_factory=lambda: ["hcl", "linear_hcl"])
    calibration_bins: int = Field(10, ge=2)
    curve_points: int = Field(101, ge=11)
    log_models: bool = True
    small_sample_rows: int = Field(500, ge=0)


def is_baseline(representation: str, config: PredictConfig) -> bool:
    return not any(representation.startswith(p) for p in config.hcl_prefixes)


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


def read_labels(path: Path) -> pd.DataFrame:
    """labels.parquet with its required columns checked."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: labels file not found; run `ehr-hcl cohort` first")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any parquet failure is a bad input file
        raise InputSchemaError(
            f"{path}: cannot read parquet ({type(exc).__name__}: {exc}); rebuild the cohort"
        ) from None
    missing = [c for c in REQUIRED_LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise InputSchemaError(
            f"{path}: column(s) {missing} missing; expected at least {list(REQUIRED_LABEL_COLUMNS)}"
        )
    bad_split = sorted(set(df["split"].astype(str)) - set(SPLITS))
    if bad_split:
        raise InputSchemaError(
            f"{path}: column 'split' has value(s) {bad_split[:5]}; allowed: {list(SPLITS)}"
        )
    if df["boolean_value"].isna().any():
        raise InputSchemaError(
            f"{path}: column 'boolean_value' has {int(df['boolean_value'].isna().sum())} null value(s); labels must be true/false"
        )
    return df


def read_embeddings(path: Path, n_rows: int) -> tuple[np.ndarray, list[str]]:
    """One representation: (n, d) float64 matrix and its column names, checked against the labels."""
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001
        raise InputSchemaError(
            f"{path}: cannot read parquet ({type(exc).__name__}: {exc}); rerun `ehr-hcl embed`"
        ) from None
    if len(df) != n_rows:
        raise InputSchemaError(
            f"{path}: {len(df)} rows but labels have {n_rows}; rerun `ehr-hcl embed` for this cohort"
        )
    if df.shape[1] == 0:
        raise InputSchemaError(f"{path}: no columns; expected float columns '<structure>__<k>'")
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            raise InputSchemaError(f"{path}: column {col!r} has dtype {df[col].dtype}; expected float32")
    X = df.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        j = int(np.where(bad.any(axis=0))[0][0])
        raise InputSchemaError(
            f"{path}: column {df.columns[j]!r} has {int(bad[:, j].sum())} NaN/inf value(s); the embed stage must write finite values"
        )
    return X, [str(c) for c in df.columns]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _finite(x: Any) -> Any:
    """JSON-safe: NaN/inf become None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    return _finite(obj)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------


def evaluate(y: np.ndarray, p: np.ndarray, weights: np.ndarray, alpha: float) -> dict[str, float]:
    """AUROC, AUPRC, Brier with CIs; calibration intercept/slope and ECE (point); prevalence and n."""
    out: dict[str, float] = {"n": int(len(y)), "n_positive": int(np.sum(y))}
    for name, fn in M.METRICS.items():
        out.update(M.bootstrap_metric(fn, y, p, weights, alpha).as_dict(name))
    out.update(M.calibration_summary(y, p))
    out["mean_predicted"] = float(np.mean(p)) if len(p) else float("nan")
    return out


def _subgroups(
    labels_ho: pd.DataFrame, y: np.ndarray, p: np.ndarray, config: PredictConfig, seed: int
) -> dict[str, dict[str, Any]]:
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


def _summary_rows(X_train: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """Input example of summary rows: train column means, and means ∓ one standard deviation.

    Aggregates only (a per-column quantile could be one patient's actual value on a small cohort).
    """
    import pandas as pd

    mean, sd = X_train.mean(axis=0), X_train.std(axis=0)
    return pd.DataFrame(np.vstack([mean - sd, mean, mean + sd]), columns=columns).astype("float64")


def _sklearn_pipeline(model: FittedModel):
    """A scikit-learn Pipeline (StandardScaler with the fitted mean/scale + the estimator): sklearn types only."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    scaler.mean_ = model.mean_.copy()
    scaler.scale_ = model.scale_.copy()
    scaler.var_ = model.scale_**2
    scaler.n_features_in_ = len(model.columns)
    scaler.feature_names_in_ = np.asarray(model.columns, dtype=object)
    scaler.n_samples_seen_ = 1
    estimator = copy.copy(model.estimator)
    if hasattr(estimator, "_optimizer"):
        # MLPClassifier keeps its Adam state for partial_fit; prediction does not need it, and skops does
        # not trust that type, so the logged copy drops it (scikit-learn types only in the file).
        del estimator._optimizer
    return Pipeline([("scale", scaler), ("model", estimator)])


def _oracle(
    truth_path: Path, cohort: str, labels_ho: pd.DataFrame, y: np.ndarray, weights, alpha
) -> dict | None:
    import pandas as pd

    truth_path = Path(truth_path)
    if not truth_path.exists():
        raise MissingInputError(
            f"{truth_path}: oracle truth file not found; rerun `ehr-hcl synth` or drop --truth"
        )
    if "mortality" in cohort:
        col = "p_mortality"
    elif "readmission" in cohort:
        col = "p_readmission_30d"
    else:
        logger.warning(
            "oracle: cohort %r names neither mortality nor readmission; oracle AUROC skipped", cohort
        )
        return None
    truth = pd.read_parquet(truth_path)
    for c in ("hadm_id", col):
        if c not in truth.columns:
            raise InputSchemaError(
                f"{truth_path}: column {c!r} missing; expected hadm_id, p_mortality, p_readmission_30d"
            )
    p = labels_ho[["hadm_id"]].merge(
        truth[["hadm_id", col]].drop_duplicates("hadm_id"), on="hadm_id", how="left"
    )[col]
    missing = int(p.isna().sum())
    if missing:
        logger.warning(
            "oracle: %d held_out admission(s) have no true probability; oracle AUROC on the rest", missing
        )
    ok = p.notna().to_numpy()
    est = M.bootstrap_metric(M.auroc, y[ok], p.to_numpy()[ok], weights[:, ok], alpha)
    return {**est.as_dict("auroc"), "column": col, "n_missing": missing}


# ----------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------


def predict(
    cohort: str,
    labels_path: Path,
    embeddings_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    config: PredictConfig,
    tracking,
    truth_path: Path | None = None,
    params_flat: dict | None = None,
    tags: dict | None = None,
    progress: bool = True,
) -> dict:
    """Fit, evaluate, plot and track every representation × model for one cohort (task).

    Parameters
    ----------
    cohort : the task name (MLflow experiment and registered model name).
    labels_path : ``data/cohorts/<cohort>/labels.parquet``.
    embeddings_dir : folder of ``<representation>.parquet`` files, rows aligned with the labels.
    metrics_path : JSON written atomically (DVC metrics).
    plots_dir : folder for ``roc.csv``, ``pr.csv``, ``calibration.csv``, ``km.csv``, ``cif.csv``,
        ``subgroups.csv`` (held_out AUROC per subgroup level, small groups flagged) and PNGs.
    config : :class:`PredictConfig`.
    tracking : :class:`pipeline.tracking.TrackingConfig`, or None to skip MLflow.
    truth_path : parquet with hadm_id, p_mortality, p_readmission_30d (synthetic data) for the oracle AUROC.
    params_flat : params to log on the parent run (nested dicts are flattened).
    tags : extra tags for the parent run (e.g. cohort_yaml_sha256, data_source).

    Returns
    -------
    The metrics dict also written to ``metrics_path``.

    Raises
    ------
    MissingInputError, InputSchemaError, CohortError
    """
    embeddings_dir = Path(embeddings_dir)
    plots_dir = Path(plots_dir)
    labels = read_labels(labels_path)
    if not embeddings_dir.is_dir():
        raise MissingInputError(f"{embeddings_dir}: embeddings folder not found; run `ehr-hcl embed` first")
    rep_paths = sorted(embeddings_dir.glob("*.parquet"))
    if not rep_paths:
        raise MissingInputError(
            f"{embeddings_dir}: no <representation>.parquet files; run `ehr-hcl embed` first"
        )
    y_all = labels["boolean_value"].astype(bool).to_numpy().astype(int)
    split = labels["split"].astype(str).to_numpy()
    idx = {s: np.where(split == s)[0] for s in SPLITS}
    counts = {
        s: {
            "rows": int(len(i)),
            "positives": int(y_all[i].sum()),
            "subjects": int(labels["subject_id"].iloc[i].nunique()),
        }
        for s, i in idx.items()
    }
    tr, tu, ho = idx["train"], idx["tuning"], idx["held_out"]
    if len(tr) == 0 or y_all[tr].min() == y_all[tr].max():
        raise CohortError(
            f"{labels_path}: the train split has {counts['train']['rows']} rows and {counts['train']['positives']} positives; "
            "models need both classes in train: widen the cohort or change the split fractions"
        )
    if len(ho) == 0:
        raise CohortError(f"{labels_path}: the held_out split is empty; change the split fractions")
    if y_all[ho].sum() == 0 or y_all[ho].sum() == len(ho):
        logger.warning(
            "held_out has a single class (%d positives of %d rows): AUROC/AUPRC are undefined",
            counts["held_out"]["positives"],
            len(ho),
        )
    labels_ho = labels.iloc[ho].reset_index(drop=True)
    y_ho = y_all[ho]
    subj_ho = labels_ho["subject_id"].to_numpy()
    weights = M.subject_bootstrap_weights(subj_ho, config.bootstrap_resamples, config.seed)
    grid = np.linspace(0, 1, config.curve_points)
    has_surv = config.survival and {"event_time_days", "event_type"} <= set(labels.columns)
    if config.survival and not has_surv:
        logger.warning("survival: labels have no event_time_days/event_type columns; survival skipped")

    from pipeline import tracking as T

    result: dict[str, Any] = {
        "cohort": cohort,
        "n": counts,
        "representations": [p.stem for p in rep_paths],
        "baselines": [p.stem for p in rep_paths if is_baseline(p.stem, config)],
        "results": {},
        "survival": {},
        "paired": {},
        "skipped_models": {},
        "small_sample": bool(len(ho) < config.small_sample_rows),
    }
    preds: dict[tuple[str, str], np.ndarray] = {}
    fitted: dict[tuple[str, str], tuple[FittedModel, Any]] = {}
    run_ids: dict[tuple[str, str], str] = {}
    model_uris: dict[tuple[str, str], str | None] = {}
    roc_rows, pr_rows, cal_rows, km_rows, cif_rows, sub_rows = [], [], [], [], [], []

    parent_tags = {T.ROLE_TAG: "parent", "git_commit": _git_commit(), "cohort": cohort, **(tags or {})}
    parent_ctx = (
        T.tracked_run(
            tracking,
            cohort,
            f"predict-{cohort}",
            tags={k: v for k, v in parent_tags.items() if v is not None},
        )
        if tracking is not None
        else _null_ctx()
    )
    with parent_ctx:
        if tracking is not None:
            T.log_params({**(params_flat or {}), "predict": config.model_dump()})
        pairs = [(p, m) for p in rep_paths for m in config.models]
        bar = _progress(len(pairs), progress)
        for rep_path in rep_paths:
            rep = rep_path.stem
            X, columns = read_embeddings(rep_path, len(labels))
            X_tr, X_tu, X_ho = X[tr], X[tu], X[ho]
            example = _summary_rows(X_tr, columns)  # input example for logged models: summary rows only
            surv = None
            if has_surv:
                surv = _survival(labels, X, tr, ho, config)
                result["survival"][rep] = {
                    k: v for k, v in surv.items() if k not in ("km", "cif", "risk_held_out")
                }
                km_rows += [{"representation": rep, **r} for r in surv["km"]]
                cif_rows += [{"representation": rep, **r} for r in surv["cif"]]
            for model_name in config.models:
                bar.update(1)
                try:
                    extra = (
                        {"cv": config.group_lasso_cv, "n_alphas": config.group_lasso_n_alphas}
                        if model_name == "group_lasso"
                        else None
                    )
                    model = fit_model(
                        model_name, X_tr, y_all[tr], X_tu, y_all[tu], columns, seed=config.seed, extra=extra
                    )
                except ModelUnavailable as exc:
                    logger.warning("%s: model %s skipped: %s", rep, model_name, exc)
                    result["skipped_models"][model_name] = str(exc)
                    continue
                p = model.predict_proba(X_ho)
                preds[(rep, model_name)] = p
                fitted[(rep, model_name)] = (model, example)
                res = evaluate(y_ho, p, weights, config.alpha)
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
                if surv is not None:
                    res["c_index"] = surv["c_index"]
                    res["c_index_lo"] = surv["c_index_lo"]
                    res["c_index_hi"] = surv["c_index_hi"]
                result["results"].setdefault(rep, {})[model_name] = res
                groups = _subgroups(labels_ho, y_ho, p, config, config.seed)
                sub_rows += [{"representation": rep, "model": model_name, **g} for g in groups.values()]
                res["n_subgroups_small"] = sum(1 for g in groups.values() if g["small"])
                roc = M.roc_band(y_ho, p, weights, grid, config.alpha)
                pr = M.pr_band(y_ho, p, weights, grid, config.alpha)
                for rows, band in ((roc_rows, roc), (pr_rows, pr)):
                    for x, yy, lo, hi in zip(band["x"], band["y"], band["y_lo"], band["y_hi"], strict=True):
                        rows.append(
                            {
                                "representation": rep,
                                "model": model_name,
                                "x": x,
                                "y": yy,
                                "y_lo": lo,
                                "y_hi": hi,
                            }
                        )
                for b in M.calibration_curve(y_ho, p, config.calibration_bins):
                    cal_rows.append({"representation": rep, "model": model_name, **b})
                if tracking is not None:
                    run_ids[(rep, model_name)], model_uris[(rep, model_name)] = _log_child(
                        tracking, cohort, rep, model, res, example, config
                    )
        bar.close()

        _paired(result, preds, y_ho, weights, config)
        champion = _choose_champion(result)
        result["champion"] = champion
        if truth_path is not None:
            result["oracle"] = _oracle(truth_path, cohort, labels_ho, y_ho, weights, config.alpha)
            _selection_vs_truth(result, Path(truth_path).parent / "structure.json", cohort)
        result = _clean(result)
        write_json(result, metrics_path)
        figures = _write_plots(plots_dir, roc_rows, pr_rows, cal_rows, km_rows, cif_rows, sub_rows)

        if tracking is not None:
            T.log_metrics({f"n_{s}_{k}": v for s, c in counts.items() for k, v in c.items()})
            if result.get("oracle"):
                T.log_metrics(
                    {f"oracle_{k}": v for k, v in result["oracle"].items() if k.startswith("auroc")}
                )
            for (rep, model_name), rid in run_ids.items():
                pair = result["paired"].get(rep, {}).get(model_name)
                if pair:
                    T.log_metrics_to(
                        rid, {f"paired_auroc_{k}": v for k, v in pair.items() if k != "baseline"}
                    )
            if champion:
                best = result["results"][champion["representation"]][champion["model"]]
                T.log_metrics(
                    {
                        f"champion_{k}": best[k]
                        for k in ("auroc", "auroc_lo", "auroc_hi")
                        if best.get(k) is not None
                    }
                )
                T.set_tags({"champion": f"{champion['representation']}/{champion['model']}"})
            T.log_artifacts(figures + [Path(metrics_path)], artifact_path="figures")
            if champion and tracking.register_champion:
                key = (champion["representation"], champion["model"])
                model, example = fitted[key]
                uri = model_uris.get(key) or T.log_model_into_run(
                    tracking, run_ids[key], lambda: _log_model(model, example)
                )
                if uri:
                    # the registry version is logged, not put in the metrics JSON: it grows with every
                    # rerun, and identical inputs must give an identical metrics file
                    version = T.register_champion(tracking, uri, cohort)
                    logger.info("predict: %s/%s registered as %s@champion (version %s)", *key, cohort, version)
                else:
                    logger.warning("champion %s/%s could not be logged; not registered", *key)
    return result


class _null_ctx:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="predict", unit="model")


def _survival(
    labels: pd.DataFrame, X: np.ndarray, tr: np.ndarray, ho: np.ndarray, config: PredictConfig
) -> dict:
    from pipeline.predict.survival import fit_cox

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


def _selection_vs_truth(result: dict, structure_path: Path, cohort: str) -> None:
    """Compare group-lasso selections with the generator's outcome structures (synthetic data only).

    ``structure.json`` beside the truth file holds ``outcome_structures: {task: [structure, ...]}``; the
    task whose name is contained in the cohort name is used. Adds ``selection_precision`` /
    ``selection_recall`` to each group-lasso result and ``truth_outcome_structures`` to the top level.
    """
    import json

    if not structure_path.exists():
        return
    try:
        truth = json.loads(structure_path.read_text()).get("outcome_structures") or {}
    except (json.JSONDecodeError, AttributeError):
        logger.warning("%s: not the expected JSON; structure selection not checked", structure_path)
        return
    keys = sorted((k for k in truth if k in cohort), key=len, reverse=True)
    if not keys:
        return
    true = set(truth[keys[0]])
    result["truth_outcome_structures"] = sorted(true)
    for models in result["results"].values():
        res = models.get("group_lasso")
        if not res or res.get("selected_structures") is None or res.get("baseline"):
            continue  # baselines' groups are not structures
        sel = set(res["selected_structures"])
        res["selection_precision"] = len(sel & true) / len(sel) if sel else float("nan")
        res["selection_recall"] = len(sel & true) / len(true) if true else float("nan")


def _paired(result: dict, preds: dict, y: np.ndarray, weights: np.ndarray, config: PredictConfig) -> None:
    """Per model: each representation vs the best baseline (by held_out AUROC) of that model."""
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


def _log_child(
    tracking, cohort: str, rep: str, model: FittedModel, res: dict, example, config: PredictConfig
) -> tuple[str, str | None]:
    from pipeline import tracking as T

    tags = {T.ROLE_TAG: "child", "representation": rep, "model": model.name}
    with T.tracked_run(tracking, cohort, f"{rep}/{model.name}", nested=True, tags=tags) as run:
        T.log_params(
            {
                "representation": rep,
                "model": model.name,
                "n_columns": len(model.columns),
                **{f"hp.{k}": v for k, v in model.hyperparameters.items()},
            }
        )
        T.log_metrics({k: v for k, v in res.items() if not isinstance(v, dict | list)})
        if model.selected_structures is not None:
            T.set_tags({"selected_structures": ",".join(model.selected_structures)})
        uri = _log_model(model, example) if config.log_models else None
        return run.info.run_id, uri


def _log_model(model: FittedModel, example) -> str | None:
    """Log ``model`` into the active run (JSON weights for linear models, skops otherwise); returns its URI."""
    from pipeline import tracking as T
    from pipeline.predict.models import linear_weights

    if model.name in LINEAR_MODELS:
        try:
            weights = linear_weights(model)
        except ValueError as exc:
            logger.warning("%s: cannot export weights as JSON (%s); model not logged", model.name, exc)
            return None
        return T.log_linear_model(weights, example)
    return T.log_sklearn_model(_sklearn_pipeline(model), example)


def _write_plots(plots_dir: Path, roc, pr, cal, km, cif, subgroups) -> list[Path]:
    """CSV tables (DVC plots, and the subgroup table) and PNG figures; returns the PNG paths."""
    import pandas as pd

    from pipeline.report.figures import curve_figure, survival_figure

    plots_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "roc": pd.DataFrame(roc, columns=["representation", "model", "x", "y", "y_lo", "y_hi"]),
        "pr": pd.DataFrame(pr, columns=["representation", "model", "x", "y", "y_lo", "y_hi"]),
        "calibration": pd.DataFrame(cal, columns=["representation", "model", "x", "y", "n"]),
        "km": pd.DataFrame(km, columns=["representation", "group", "t", "y", "y_lo", "y_hi"]),
        "cif": pd.DataFrame(cif, columns=["representation", "group", "t", "y"]),
        "subgroups": pd.DataFrame(
            subgroups,
            columns=[
                "representation",
                "model",
                "column",
                "level",
                "n",
                "n_positive",
                "auroc",
                "auroc_lo",
                "auroc_hi",
                "brier",
                "small",
            ],
        ),
    }
    for name, df in tables.items():
        with atomic_path(plots_dir / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    pngs = {
        "roc.png": curve_figure(tables["roc"], "roc"),
        "pr.png": curve_figure(tables["pr"], "pr"),
        "calibration.png": curve_figure(tables["calibration"], "calibration"),
    }
    if len(tables["km"]):
        pngs["km.png"] = survival_figure(tables["km"], "outcome-free survival")
    if len(tables["cif"]):
        pngs["cif.png"] = survival_figure(tables["cif"], "cumulative incidence")
    out = []
    for name, data in pngs.items():
        with atomic_path(plots_dir / name) as tmp:
            tmp.write_bytes(data)
        out.append(plots_dir / name)
    return out


def read_metrics(metrics_path: Path, cohort: str) -> dict:
    """The metrics JSON that :func:`predict` wrote; a missing or corrupt file is a one-line user error."""
    import json

    metrics_path = Path(metrics_path)
    if not metrics_path.exists():
        raise MissingInputError(
            f"{metrics_path}: metrics not found; run `ehr-hcl predict` for cohort {cohort!r} first"
        )
    try:
        return json.loads(metrics_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputSchemaError(
            f"{metrics_path}: not valid JSON (line {exc.lineno}); rerun `ehr-hcl predict`"
        ) from None


def summarize_metrics(metrics_path: Path, cohort: str) -> str:
    """A few lines of text from a metrics JSON: held_out size, oracle, and every representation × model
    (AUROC [95% CI], AUPRC [95% CI], Brier, C-index), best AUROC first.

    Raises
    ------
    MissingInputError
        ``metrics_path`` does not exist.
    """

    from pipeline.compare import format_table

    m = read_metrics(metrics_path, cohort)

    def num(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    def ci(d: dict, k: str) -> str:
        return (
            "–" if d.get(k) is None else f"{num(d.get(k))} [{num(d.get(k + '_lo'))}, {num(d.get(k + '_hi'))}]"
        )

    ho = (m.get("n") or {}).get("held_out", {})
    head = f"{cohort}: held_out {ho.get('rows', '?')} rows, {ho.get('positives', '?')} events"
    if m.get("oracle"):
        head += f"; oracle AUROC {ci(m['oracle'], 'auroc')}"
    champ = m.get("champion") or {}
    if champ:
        head += f"; champion {champ.get('representation')}/{champ.get('model')}"
    rows = [
        (r.get("auroc") if r.get("auroc") is not None else -1.0, rep, model, r)
        for rep, models in (m.get("results") or {}).items()
        for model, r in models.items()
    ]
    rows.sort(key=lambda t: (-t[0], t[1], t[2]))
    table = format_table(
        [
            (rep, model, ci(r, "auroc"), ci(r, "auprc"), num(r.get("brier")), num(r.get("c_index")))
            for _, rep, model, r in rows
        ],
        ("representation", "model", "AUROC [95% CI]", "AUPRC [95% CI]", "Brier", "C-index"),
    )
    return head + "\n" + "\n".join("  " + line for line in table.splitlines())

"""The predict stage's one tracking step: the evaluation, as MLflow runs, after every file is written.

One parent run per call (params, tags, the cohort labels and every representation as dataset inputs, split
counts, oracle and champion metrics, the figures), one nested run per representation × model (its metrics,
paired test against the best baseline, hyper-parameters, and the model itself when ``log_models``), and the
champion registered under the task's name with the alias ``champion``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import tracking as T
from pipeline.workspace import git_commit

if TYPE_CHECKING:
    from pipeline.predict.models import FittedModel
    from pipeline.predict.run import Evaluation, PairResult, PredictConfig, PredictInputs

logger = logging.getLogger(__name__)


def track(
    ev: Evaluation,
    inputs: PredictInputs,
    config: PredictConfig,
    tracking: T.TrackingConfig,
    rep_paths: list[Path],
    artifacts: list[Path],
) -> None:
    """Log one predict run to MLflow.

    Parameters
    ----------
    ev : Evaluation
        The written evaluation (``ev.result`` is the metrics JSON's content).
    inputs : PredictInputs
        The cohort, its files, and the params and tags of the parent run.
    config : PredictConfig
    tracking : pipeline.tracking.TrackingConfig
    rep_paths : list of Path
        The representation files the evaluation read (logged as dataset inputs).
    artifacts : list of Path
        Figures and the metrics JSON, logged under ``figures/``.
    """
    cohort, result = inputs.cohort, ev.result
    tags = {T.ROLE_TAG: "parent", "git_commit": git_commit(), "cohort": cohort, **inputs.tags}
    run_ids: dict[tuple[str, str], str] = {}
    model_uris: dict[tuple[str, str], str | None] = {}
    with T.tracked_run(
        tracking, cohort, f"predict-{cohort}", tags={k: v for k, v in tags.items() if v is not None}
    ):
        T.log_params({**inputs.params, "predict": config.model_dump()})
        labels_input = T.log_dataset(inputs.labels_path, "labels", context="labels", targets="boolean_value")
        rep_inputs = {p.stem: T.log_dataset(p, p.stem, context="representation") for p in rep_paths}
        for path in feature_paths(inputs.features_dir):
            T.log_dataset(path, f"features/{path.stem}", context="features")
        for pair in ev.pairs:
            key = (pair.representation, pair.model.name)
            datasets = [labels_input, rep_inputs[pair.representation]]
            run_ids[key], model_uris[key] = _log_child(
                tracking, cohort, pair, result, ev.examples, datasets, config
            )
        T.log_metrics({f"n_{s}_{k}": v for s, c in result["n"].items() for k, v in c.items()})
        if result.get("oracle"):
            T.log_metrics({f"oracle_{k}": v for k, v in result["oracle"].items() if k.startswith("auroc")})
        champion = result.get("champion")
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
        T.log_artifacts(artifacts, artifact_path="figures")
        if champion and tracking.register_champion:
            _register(ev, tracking, cohort, champion, run_ids, model_uris)


def feature_paths(features_dir: Path | None) -> list[Path]:
    """List the modality matrices of a features folder (the columns of its ``mask.parquet``) and the mask."""
    if features_dir is None or not (Path(features_dir) / "mask.parquet").exists():
        return []
    import pyarrow.parquet as pq

    mask = Path(features_dir) / "mask.parquet"
    modalities = pq.read_schema(mask).names
    return [p for m in modalities if (p := Path(features_dir) / f"{m}.parquet").exists()] + [mask]


def _log_child(
    tracking: T.TrackingConfig,
    cohort: str,
    pair: PairResult,
    result: dict,
    examples: dict[str, Any],
    datasets: list,
    config: PredictConfig,
) -> tuple[str, str | None]:
    rep, model = pair.representation, pair.model
    res = result["results"][rep][model.name]
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
        T.log_inputs(datasets)
        T.log_metrics({k: v for k, v in res.items() if not isinstance(v, dict | list)})
        paired = (result.get("paired") or {}).get(rep, {}).get(model.name)
        if paired:
            T.log_metrics({f"paired_auroc_{k}": v for k, v in paired.items() if k != "baseline"})
        if model.selected_structures is not None:
            T.set_tags({"selected_structures": ",".join(model.selected_structures)})
        uri = log_model(model, examples[rep]) if config.log_models else None
        return run.info.run_id, uri


def _register(ev, tracking, cohort: str, champion: dict, run_ids: dict, model_uris: dict) -> None:
    key = (champion["representation"], champion["model"])
    pair = next(p for p in ev.pairs if (p.representation, p.model.name) == key)
    example = ev.examples[key[0]]
    uri = model_uris.get(key) or T.log_model_into_run(
        tracking, run_ids[key], lambda: log_model(pair.model, example)
    )
    if uri:
        # the registry version is logged, not put in the metrics JSON: it grows with every rerun, and
        # identical inputs must give an identical metrics file
        version = T.register_champion(tracking, uri, cohort)
        logger.info("predict: %s/%s registered as %s@champion (version %s)", *key, cohort, version)
    else:
        logger.warning("champion %s/%s could not be logged; not registered", *key)


def log_model(model: FittedModel, example) -> str | None:
    """Log ``model`` into the active run; returns its URI (None when it cannot be exported).

    Linear models are logged as JSON weights (served by :mod:`pipeline.serving`); the others as their
    fitted scikit-learn ``Pipeline(StandardScaler, model)`` in skops format (see :func:`served_pipeline`).
    """
    from pipeline.predict.models import LINEAR_MODELS, linear_weights

    if model.name in LINEAR_MODELS:
        try:
            weights = linear_weights(model)
        except ValueError as exc:
            logger.warning("%s: cannot export weights as JSON (%s); model not logged", model.name, exc)
            return None
        return T.log_linear_model(weights, example)
    return T.log_sklearn_model(served_pipeline(model, example), example)


def served_pipeline(model: FittedModel, example) -> Any:
    """Put the fitted ``Pipeline(StandardScaler, model)`` behind a column selector fitted on ``example``.

    The models were fitted on arrays; the selector gives the logged model its column names, so a DataFrame
    is read by name (any order; a missing column is an error), as the MLflow signature promises.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    select = ColumnTransformer([("columns", "passthrough", list(model.columns))], remainder="drop")
    return Pipeline([("columns", select.fit(example)), *model.estimator.steps])

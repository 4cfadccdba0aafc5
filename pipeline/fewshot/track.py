"""The fewshot stage's tracking step: one parent run per cohort, one nested run per representation x model x k.

The parent (tag ``ehr_hcl.role = fewshot_parent``, so ``ehr-hcl compare``'s view of the predict runs is not
mixed with these) holds the params, the labels and representations as dataset inputs, the figure and the
metrics JSON. Each child holds ``k`` and the replicate count as params, the mean/sd/min/max across replicates
as metrics, and the per-replicate AUROC, AUPRC and their interval ends as metric histories (step = replicate),
and the paired differences of the HCL representations.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import tracking as T
from pipeline.workspace import git_commit

if TYPE_CHECKING:
    from pipeline.fewshot.run import FewshotConfig, FewshotInputs

PARENT_ROLE = "fewshot_parent"
CHILD_ROLE = "fewshot_child"


def track(
    result: dict, inputs: FewshotInputs, config: FewshotConfig, tracking: T.TrackingConfig, files: list[Path]
) -> None:
    """Log one fewshot run to MLflow.

    Parameters
    ----------
    result : dict
        The written metrics.
    inputs : FewshotInputs
        The cohort, its files, and the params and tags of the parent run.
    config : FewshotConfig
    tracking : pipeline.tracking.TrackingConfig
    files : list of Path
        The figure and the metrics JSON, logged under ``fewshot/``.
    """
    cohort = inputs.cohort
    tags = {T.ROLE_TAG: PARENT_ROLE, "git_commit": git_commit(), "cohort": cohort, **inputs.tags}
    with T.tracked_run(
        tracking, cohort, f"fewshot-{cohort}", tags={k: v for k, v in tags.items() if v is not None}
    ):
        T.log_params({**inputs.params, "fewshot": config.model_dump()})
        T.log_dataset(inputs.labels_path, "labels", context="labels", targets="boolean_value")
        for rep in result["results"]:
            path = Path(inputs.embeddings_dir) / f"{rep}.parquet"
            if path.exists():
                T.log_dataset(path, rep, context="representation")
        T.log_metrics({f"n_{s}_{k}": v for s, c in result["n"].items() for k, v in c.items()})
        for rep, by_model in result["results"].items():
            for model, by_k in by_model.items():
                for k, cell in by_k.items():
                    paired = ((result.get("paired") or {}).get(rep) or {}).get(model, {}).get(k, {})
                    _log_child(rep, model, k, cell, paired)
        T.log_artifacts(files, artifact_path="fewshot")


def _log_child(rep: str, model: str, k: str, cell: dict, paired: dict) -> None:
    reps = cell["replicates"]
    metrics = {f"{m}_{s}": cell[m][s] for m in ("auroc", "auprc") for s in ("mean", "sd", "min", "max")}
    for name, diff in paired.items():
        metrics.update({f"{name}_{s}": diff.get(s) for s in ("mean", "min", "max")})
    T.log_child_run(
        f"fewshot/{rep}/{model}/k={k}",
        params={"representation": rep, "model": model, "k": k, "replicates": len(reps)},
        metrics=metrics,
        history={
            f"replicate_{m}{end}": [r.get(f"{m}{end}") for r in reps]
            for m in ("auroc", "auprc")
            for end in ("", "_lo", "_hi")
        },
        tags={
            T.ROLE_TAG: CHILD_ROLE,
            "representation": rep,
            "model": model,
            "k": k,
            "skipped": cell.get("skipped"),
        },
    )

"""``ehr-hcl compare``: a table of the latest runs from MLflow, best first.

One row per task × representation × model of the latest finished predict run of each task:
AUROC [95% CI], AUPRC [95% CI], Brier, C-index. Rows are sorted by task, then AUROC descending.
With ``--k``, the table is the few-shot stage's instead, read from ``metrics/fewshot/<task>.json``: per
representation × model at that k, the mean [min, max] across replicates and the paired differences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.results import fmt_ci, fmt_interval, fmt_num, format_table

COLUMNS = ("task", "representation", "model", "AUROC [95% CI]", "AUPRC [95% CI]", "Brier", "C-index")


def comparison_rows(runs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Format rows (see :data:`COLUMNS`) from :func:`pipeline.tracking.task_runs` output, best first."""
    ordered = sorted(
        runs,
        key=lambda r: (
            r["task"],
            -(r.get("auroc") if r.get("auroc") is not None else -1.0),
            r["representation"],
            r["model"],
        ),
    )
    return [
        (
            r["task"],
            r["representation"],
            r["model"],
            fmt_ci(r, "auroc"),
            fmt_ci(r, "auprc"),
            fmt_num(r.get("brier")),
            fmt_num(r.get("c_index")),
        )
        for r in ordered
    ]


def compare(task: str | None, tracking) -> str:
    """Build the comparison table for ``task`` (or every task) as text.

    Parameters
    ----------
    task : a task (= cohort, = MLflow experiment) name, or None for all tasks.
    tracking : :class:`pipeline.tracking.TrackingConfig`.

    Raises
    ------
    pipeline.exceptions.ConfigError
        ``task`` has no experiment in the store (the message lists the known tasks).
    """
    from pipeline.tracking import resolve_tracking_uri, task_runs

    uri = resolve_tracking_uri(tracking)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return f"no MLflow store at {uri}; run `ehr-hcl predict` first (or set tracking.tracking_uri in params.yaml)"
    runs = task_runs(tracking, task)
    if not runs:
        where = resolve_tracking_uri(tracking)
        return (
            f"no finished predict runs in {where}"
            + (f" for task {task!r}" if task else "")
            + "; run `ehr-hcl predict` first"
        )
    return format_table(comparison_rows(runs), COLUMNS)


FEWSHOT_COLUMNS = (
    "task",
    "representation",
    "model",
    "k",
    "replicates",
    "AUROC mean [min, max]",
    "AUPRC mean [min, max]",
    "ΔAUROC vs concat",
    "ΔAUROC vs best non-HCL",
)


def _spread(s: dict | None) -> str:
    """Format a ``{mean, min, max}`` spread as ``"0.812 [0.774, 0.851]"`` (``"–"`` when absent)."""
    if not s or s.get("mean") is None:
        return fmt_num(None)
    return fmt_interval(s.get("mean"), s.get("min"), s.get("max"))


def fewshot_rows(metrics: dict, task: str, k: str) -> list[tuple[str, ...]]:
    """Rows (see :data:`FEWSHOT_COLUMNS`) of one few-shot metrics dict at ``k``: per model, best mean AUROC first."""
    rows = []
    for rep, by_model in (metrics.get("results") or {}).items():
        for model, by_k in by_model.items():
            cell = by_k.get(k)
            if cell is None:
                continue
            paired = ((metrics.get("paired") or {}).get(rep) or {}).get(model, {}).get(k, {})
            best = paired.get("vs_best_non_hcl")
            mean = (cell.get("auroc") or {}).get("mean")
            rows.append(
                (
                    -(mean if mean is not None else -1.0),
                    (
                        task,
                        rep,
                        model,
                        k,
                        str((cell.get("auroc") or {}).get("n", 0)),
                        _spread(cell.get("auroc")),
                        _spread(cell.get("auprc")),
                        _spread(paired.get("vs_concat")),
                        (_spread(best) + f" ({best['baseline']})") if best else fmt_num(None),
                    ),
                )
            )
    rows.sort(key=lambda t: (t[1][2], t[0], t[1][1]))  # per model, best mean AUROC first
    return [r for _, r in rows]


def compare_fewshot(task: str | None, k: str, workspace) -> str:
    """Build the table of the few-shot results at ``k`` for ``task`` (or every task with few-shot metrics).

    Parameters
    ----------
    task : a cohort name, or None for every ``metrics/fewshot/<cohort>.json`` of the workspace.
    k : shots per class as written in the metrics (``"8"``, ``"all"``).
    workspace : :class:`pipeline.workspace.Workspace`.

    Raises
    ------
    pipeline.exceptions.MissingInputError
        No few-shot metrics file.
    pipeline.exceptions.ConfigError
        ``k`` is not one of the ks the metrics hold (the message lists them).
    """
    from pipeline.exceptions import ConfigError, MissingInputError
    from pipeline.results import read_metrics

    k = str(k).strip().lower()
    folder = workspace.root / "metrics" / "fewshot"
    paths = [workspace.fewshot_metrics(task)] if task else sorted(folder.glob("*.json"))
    if not paths or (task and not paths[0].exists()):
        raise MissingInputError(
            f"{paths[0] if task else folder}: no few-shot metrics; run `ehr-hcl fewshot` (or `dvc repro`) first"
        )
    rows = []
    for path in paths:
        metrics = read_metrics(path, path.stem)
        if k not in metrics.get("ks", []):
            raise ConfigError(f"--k {k}: {path} holds k in {metrics.get('ks')}; choose one of them")
        rows += fewshot_rows(metrics, path.stem, k)
    return format_table(rows, FEWSHOT_COLUMNS)

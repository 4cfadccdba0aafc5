"""``ehr-hcl compare``: a table of the latest runs from MLflow, best first.

One row per task × representation × model of the latest finished parent run of each task:
AUROC [95% CI], AUPRC [95% CI], Brier, C-index. Rows are sorted by task, then AUROC descending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.results import fmt_ci, fmt_num, format_table

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

"""The fewshot stage's files: the metrics JSON (DVC metrics), the AUROC-against-k table (DVC plots), the figure.

The JSON is made byte-reproducible: no timings, keys sorted (:func:`pipeline.io.write_json`), floats rounded
to ``fewshot.decimals``, NaN written as null. ``auroc.csv`` has one row per representation x model x k:
``mean`` is the mean held_out AUROC across replicates and ``lo``/``hi`` their min and max (the spread across
replicates, not a confidence interval); ``x`` is k on the plot's axis, ``"all"`` one doubling beyond the
largest k.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.fewshot.draws import ALL
from pipeline.io import atomic_path, write_json
from pipeline.predict.outputs import clean
from pipeline.results import fmt_num, format_table

PLOT_COLUMNS = ["representation", "model", "k", "x", "mean", "lo", "hi", "sd", "n"]


def rounded(obj: Any, decimals: int) -> Any:
    """Return a copy of ``obj`` with every float rounded to ``decimals`` (``-0.0`` written as ``0.0``)."""
    if isinstance(obj, dict):
        return {k: rounded(v, decimals) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v, decimals) for v in obj]
    if isinstance(obj, float):
        return round(obj, decimals) + 0.0
    return obj


def k_axis(ks: list[str]) -> dict[str, float]:
    """Position of each k label on the plot's axis: k itself, ``"all"`` at twice the largest k (1 if none)."""
    ints = [int(k) for k in ks if k != ALL]
    top = 2.0 * max(ints) if ints else 1.0
    return {k: (top if k == ALL else float(k)) for k in ks}


def plot_rows(result: dict, metric: str = "auroc") -> list[dict[str, Any]]:
    """Rows of the plot table (see :data:`PLOT_COLUMNS`) from a metrics dict."""
    axis = k_axis(result["ks"])
    rows = []
    for rep, by_model in result["results"].items():
        for model, by_k in by_model.items():
            for k in result["ks"]:
                s = by_k[k][metric]
                rows.append(
                    {
                        "representation": rep,
                        "model": model,
                        "k": k,
                        "x": axis[k],
                        "mean": s["mean"],
                        "lo": s["min"],
                        "hi": s["max"],
                        "sd": s["sd"],
                        "n": s["n"],
                    }
                )
    return rows


def write_outputs(
    result: dict, metrics_path: Path, plots_dir: Path, decimals: int
) -> tuple[dict, list[Path]]:
    """Write the metrics JSON, ``auroc.csv`` and ``auroc.png``, each atomically.

    Parameters
    ----------
    result : dict
        What :func:`pipeline.fewshot.run.evaluate` returned.
    metrics_path : Path
        The metrics JSON.
    plots_dir : Path
        Folder of ``auroc.csv`` and ``auroc.png``.
    decimals : int
        Floats are rounded to this many decimals.

    Returns
    -------
    result : dict
        The JSON-safe, rounded metrics as written.
    files : list of Path
        The figure and the metrics JSON (the artifacts the tracking step logs).
    """
    import pandas as pd

    from pipeline.fewshot.figures import kshot_figure

    result = rounded(clean(result), decimals)
    write_json(result, metrics_path)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(plot_rows(result), columns=PLOT_COLUMNS)
    with atomic_path(plots_dir / "auroc.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(plots_dir / "auroc.png") as tmp:
        tmp.write_bytes(kshot_figure(table))
    return result, [plots_dir / "auroc.png", Path(metrics_path)]


def summary_table(result: dict, model: str = "logistic") -> str:
    """Mean held_out AUROC by representation (rows) and k (columns) for one model, as text.

    Parameters
    ----------
    result : dict
        A fewshot metrics dict.
    model : str
        The model shown (the first model of the run when ``model`` was not run).

    Returns
    -------
    str
        A title line and the table.
    """
    models = list(dict.fromkeys(m for by_model in result["results"].values() for m in by_model))
    if not models:
        return f"{result['cohort']}: no few-shot results"
    model = model if model in models else models[0]
    rows = [
        (rep, *(fmt_num(by_model[model][k]["auroc"]["mean"]) for k in result["ks"]))
        for rep, by_model in result["results"].items()
        if model in by_model
    ]
    title = f"{result['cohort']}: mean held_out AUROC over replicates by k (shots per class), {model}"
    table = format_table(rows, ("representation", *(f"k={k}" for k in result["ks"])))
    return title + "\n" + "\n".join("  " + line for line in table.splitlines())

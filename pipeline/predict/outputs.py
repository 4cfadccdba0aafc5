"""The predict stage's files: the metrics JSON (DVC metrics), the plot tables (DVC plots) and the figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.io import atomic_path, write_json

if TYPE_CHECKING:
    from pipeline.predict.run import Evaluation

CURVE_COLUMNS = ["representation", "model", "x", "y", "y_lo", "y_hi"]
SUBGROUP_COLUMNS = [
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
]


def _finite(x: Any) -> Any:
    """JSON-safe: NaN/inf become None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def clean(obj: Any) -> Any:
    """Return a JSON-safe copy: string keys, lists for tuples, Python scalars for numpy ones, None for NaN/inf."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    return _finite(obj)


def plot_tables(ev: Evaluation) -> dict[str, Any]:
    """Build the plot tables (pandas DataFrames) of an evaluation: roc, pr, calibration, km, cif, subgroups."""
    import pandas as pd

    roc, pr, cal, sub = [], [], [], []
    for pair in ev.pairs:
        key = {"representation": pair.representation, "model": pair.model.name}
        for rows, band in ((roc, pair.roc), (pr, pair.pr)):
            for x, yy, lo, hi in zip(band["x"], band["y"], band["y_lo"], band["y_hi"], strict=True):
                rows.append({**key, "x": x, "y": yy, "y_lo": lo, "y_hi": hi})
        cal += [{**key, **b} for b in pair.calibration]
        sub += [{**key, **g} for g in pair.subgroups.values()]
    return {
        "roc": pd.DataFrame(roc, columns=CURVE_COLUMNS),
        "pr": pd.DataFrame(pr, columns=CURVE_COLUMNS),
        "calibration": pd.DataFrame(cal, columns=["representation", "model", "x", "y", "n"]),
        "km": pd.DataFrame(
            ev.survival_rows["km"], columns=["representation", "group", "t", "y", "y_lo", "y_hi"]
        ),
        "cif": pd.DataFrame(ev.survival_rows["cif"], columns=["representation", "group", "t", "y"]),
        "subgroups": pd.DataFrame(sub, columns=SUBGROUP_COLUMNS),
    }


def write_outputs(ev: Evaluation, metrics_path: Path, plots_dir: Path) -> list[Path]:
    """Write the metrics JSON, the plot tables (CSV) and the figures (PNG), each atomically.

    Parameters
    ----------
    ev : Evaluation
        What :func:`pipeline.predict.run.evaluate` computed; its ``result`` is replaced by the JSON-safe
        copy that is written.
    metrics_path : Path
        The metrics JSON.
    plots_dir : Path
        Folder of ``roc.csv``, ``pr.csv``, ``calibration.csv``, ``km.csv``, ``cif.csv``, ``subgroups.csv``
        and ``roc.png``, ``pr.png``, ``calibration.png`` (+ ``km.png``, ``cif.png`` with survival).

    Returns
    -------
    list of Path
        The metrics JSON and the PNG files (the artifacts the tracking step logs).
    """
    from pipeline.predict.figures import curve_figure, survival_figure

    ev.result = clean(ev.result)
    write_json(ev.result, metrics_path)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    tables = plot_tables(ev)
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
    return out + [Path(metrics_path)]

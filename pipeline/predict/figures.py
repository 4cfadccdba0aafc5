"""The predict stage's figures as PNG bytes (matplotlib, Agg backend), drawn from its plot tables.

Each function takes a pandas DataFrame in the layout of the corresponding CSV under ``plots/<cohort>/``
and returns PNG bytes; nothing here reads or writes files. The predict stage writes them as
``plots/<cohort>/*.png`` and logs them to MLflow; the report draws the same figures from the CSV tables.
Only aggregates are drawn.
"""

from __future__ import annotations

import io
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _panels(n: int, width: float = 4.2, height: float = 3.8):
    plt = _plt()
    n = max(n, 1)
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def curve_figure(df: Any, kind: str) -> bytes:
    """ROC (``kind="roc"``), precision–recall (``"pr"``) or calibration (``"calibration"``) curves.

    ``df`` columns: representation, model, x, y and, for roc/pr, y_lo, y_hi (bootstrap band).
    One panel per model, one line per representation.
    """
    models = list(dict.fromkeys(df["model"])) if len(df) else []
    fig, axes = _panels(len(models))
    labels = {
        "roc": ("false positive rate", "true positive rate"),
        "pr": ("recall", "precision"),
        "calibration": ("mean predicted risk", "observed frequency"),
    }[kind]
    for ax, model in zip(axes, models, strict=False):
        sub = df[df["model"] == model]
        for rep in dict.fromkeys(sub["representation"]):
            d = sub[sub["representation"] == rep]
            line = ax.plot(d["x"], d["y"], label=rep, marker="o" if kind == "calibration" else None, ms=3)[0]
            if "y_lo" in d and d["y_lo"].notna().any():
                ax.fill_between(d["x"], d["y_lo"], d["y_hi"], color=line.get_color(), alpha=0.15, lw=0)
        if kind in ("roc", "calibration"):
            ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(model)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.legend(fontsize=7)
    if not models:
        axes[0].text(0.5, 0.5, "no data", ha="center")
    return _png(fig)


def survival_figure(df: Any, ylabel: str) -> bytes:
    """Kaplan–Meier or cumulative-incidence curves: columns representation, group, t, y (+ y_lo, y_hi).

    One panel per representation, one step line per risk tertile.
    """
    reps = list(dict.fromkeys(df["representation"])) if len(df) else []
    fig, axes = _panels(len(reps))
    for ax, rep in zip(axes, reps, strict=False):
        sub = df[df["representation"] == rep]
        for group in dict.fromkeys(sub["group"]):
            d = sub[sub["group"] == group]
            line = ax.step(d["t"], d["y"], where="post", label=f"{group} risk")[0]
            if "y_lo" in d and d["y_lo"].notna().any():
                ax.fill_between(
                    d["t"], d["y_lo"], d["y_hi"], step="post", color=line.get_color(), alpha=0.15, lw=0
                )
        ax.set_title(rep)
        ax.set_xlabel("days from prediction time")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    if not reps:
        axes[0].text(0.5, 0.5, "no data", ha="center")
    return _png(fig)

"""The label-efficiency figure as PNG bytes: held_out AUROC against k, drawn from the ``auroc.csv`` table.

Drawn with the predict stage's panel and PNG helpers (:mod:`pipeline.predict.figures`), so both stages' figures
look alike; the report draws the same figure from the same table.
"""

from __future__ import annotations

from typing import Any

from pipeline.predict.figures import _panels, _png


def kshot_figure(df: Any) -> bytes:
    """AUROC against k (log-2 axis): one panel per model, one line per representation, band = replicate range.

    Parameters
    ----------
    df : pandas.DataFrame
        Columns representation, model, k, x, mean, lo, hi (see :data:`pipeline.fewshot.outputs.PLOT_COLUMNS`).

    Returns
    -------
    bytes
        The PNG.
    """
    models = list(dict.fromkeys(df["model"])) if len(df) else []
    reps = list(dict.fromkeys(df["representation"])) if len(df) else []
    colors = {rep: f"C{i % 10}" for i, rep in enumerate(reps)}  # one colour per representation in every panel
    fig, axes = _panels(len(models), width=4.6)
    for i, (ax, model) in enumerate(zip(axes, models, strict=False)):
        sub = df[df["model"] == model]
        for rep in dict.fromkeys(sub["representation"]):
            d = sub[(sub["representation"] == rep) & sub["mean"].notna()]
            if not len(d):
                continue
            ax.plot(d["x"], d["mean"], marker="o", ms=3, label=rep, color=colors[rep])
            ax.fill_between(d["x"], d["lo"], d["hi"], color=colors[rep], alpha=0.15, lw=0)
        ticks = sub.drop_duplicates("k")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ticks["x"]), [str(k) for k in ticks["k"]], fontsize=7)
        ax.axhline(0.5, ls="--", color="grey", lw=0.8)
        ax.set_title(model)
        ax.set_xlabel("k (shots per class)")
        if i == 0:
            ax.set_ylabel("held_out AUROC")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if not models:
        axes[0].text(0.5, 0.5, "no data", ha="center")
    return _png(fig)

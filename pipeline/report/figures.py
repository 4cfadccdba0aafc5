"""The report's own figure: the variance-explained heatmap of each fitted HCL model (PNG bytes).

The ROC, precision–recall, calibration and survival figures belong to the predict stage
(:mod:`pipeline.predict.figures`); the report draws them from its tables with those functions.
"""

from __future__ import annotations

import io
from typing import Any


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def heatmap_figure(matrix: Any, title: str) -> bytes:
    """Heatmap of a DataFrame (index = modality, columns = structures), values annotated."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(matrix.values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * max(values.shape[1], 1), 1.0 + 0.6 * max(values.shape[0], 1)))
    im = ax.imshow(values, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [str(i) for i in matrix.index])
    vmax = np.nanmax(values) if np.isfinite(values).any() else 1.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                colour = "black" if values[i, j] > 0.6 * vmax else "white"  # readable on viridis
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", color=colour, fontsize=7)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)

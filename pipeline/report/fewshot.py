"""The report's "Label efficiency" section: the fewshot stage's figure and tables, from its files.

Reads ``metrics/fewshot/<cohort>.json`` (through :func:`pipeline.results.read_metrics`) and
``plots/fewshot/<cohort>/auroc.csv``, drawn with the fewshot stage's own figure function. Returns None when
the metrics file is absent, so the section can say how to produce it.
"""

from __future__ import annotations

import base64
from pathlib import Path

from pipeline.results import fmt_interval, fmt_num, read_metrics

#: the model whose results the section's tables show (the figure shows every model)
TABLE_MODEL = "logistic"


def _spread(s: dict | None) -> str:
    if not s or s.get("mean") is None:
        return fmt_num(None)
    return fmt_interval(s.get("mean"), s.get("min"), s.get("max"))


def label_efficiency(cohort: str, metrics_path: Path | None, plots_dir: Path | None) -> dict | None:
    """Gather the label-efficiency section: figure, AUROC table and paired differences (None when absent).

    Parameters
    ----------
    cohort : str
        The cohort, named in messages.
    metrics_path : Path or None
        ``metrics/fewshot/<cohort>.json`` written by ``ehr-hcl fewshot``.
    plots_dir : Path or None
        ``plots/fewshot/<cohort>/`` holding ``auroc.csv``.

    Returns
    -------
    dict or None
        ``model``, ``ks``, ``k_headers``, ``b64`` (None without ``auroc.csv``), ``rows`` (representation, then mean [min, max]
        AUROC per k), ``paired`` (HCL representation, comparison, then mean [min, max] ΔAUROC per k),
        ``replicates``, ``capped`` (the ks whose draw was capped), ``best_rule``.
    """
    if metrics_path is None or not Path(metrics_path).exists():
        return None
    import pandas as pd

    from pipeline.fewshot.figures import kshot_figure

    m = read_metrics(metrics_path, cohort)
    ks = list(m.get("ks") or [])
    results = m.get("results") or {}
    models = list(dict.fromkeys(mo for by_model in results.values() for mo in by_model))
    model = TABLE_MODEL if TABLE_MODEL in models else (models[0] if models else TABLE_MODEL)
    rows = [
        [rep, *(_spread(by_model[model].get(k, {}).get("auroc")) for k in ks)]
        for rep, by_model in results.items()
        if model in by_model
    ]
    paired = []
    for rep, by_model in (m.get("paired") or {}).items():
        by_k = by_model.get(model) or {}
        for name, label in (("vs_concat", "concat"), ("vs_best_non_hcl", "best non-HCL")):
            cells = [by_k.get(k, {}).get(name) for k in ks]
            if any(cells):
                bases = sorted({c["baseline"] for c in cells if c})
                paired.append([rep, f"{label} ({', '.join(bases)})", *(_spread(c) for c in cells)])
    csv = Path(plots_dir) / "auroc.csv" if plots_dir is not None else None
    b64 = None
    if csv is not None and csv.exists():
        b64 = base64.b64encode(kshot_figure(pd.read_csv(csv, dtype={"k": str}))).decode()
    draws = m.get("draws") or {}
    return {
        "model": model,
        "ks": ks,
        "k_headers": [f"k={k}" for k in ks],
        "b64": b64,
        "rows": rows,
        "paired": paired,
        "replicates": (m.get("config") or {}).get("replicates"),
        "capped": [
            k
            for k in ks
            if (draws.get(k) or {}).get("capped_train") or (draws.get(k) or {}).get("capped_tuning")
        ],
        "best_rule": m.get("best_non_hcl_rule"),
    }

"""The metrics-JSON contract of the ``predict`` stage: read it, summarise it, format its numbers.

``predict`` writes ``metrics/<cohort>.json``; ``report``, ``compare`` and ``summary`` read it (or the same
metrics from MLflow) and show them. This module owns the one reader and the one formatter for numbers and
confidence intervals, so every view prints ``0.812 [0.774, 0.851]`` the same way. It imports no stage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.exceptions import InputSchemaError, MissingInputError

__all__ = [
    "fmt_num",
    "fmt_ci",
    "fmt_interval",
    "format_table",
    "read_metrics",
    "ranked_results",
    "summarize_metrics",
]

#: shown for an undefined value (None, NaN, inf)
MISSING = "–"

SUMMARY_COLUMNS = ("representation", "model", "AUROC [95% CI]", "AUPRC [95% CI]", "Brier", "C-index")


def fmt_num(value: Any, digits: int = 3) -> str:
    """Format one number for a table.

    Parameters
    ----------
    value : Any
        A float, an int, a bool or None.
    digits : int
        Decimals of a float.

    Returns
    -------
    str
        ``"–"`` for None, NaN or inf; ``"yes"``/``"no"`` for a bool; an int as is; a float with ``digits``
        decimals.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def fmt_ci(row: Mapping[str, Any], name: str) -> str:
    """Format ``row[name]`` with its interval ``row[name + "_lo"]``, ``row[name + "_hi"]``.

    Parameters
    ----------
    row : Mapping
        A result with keys ``name``, ``name_lo`` and ``name_hi`` (e.g. ``auroc``, ``auroc_lo``, ``auroc_hi``).
    name : str
        The metric.

    Returns
    -------
    str
        ``"0.812 [0.774, 0.851]"``, or ``"–"`` when the value is absent.
    """
    if row.get(name) is None:
        return MISSING
    return fmt_interval(row.get(name), row.get(name + "_lo"), row.get(name + "_hi"))


def fmt_interval(value: Any, lo: Any, hi: Any) -> str:
    """Format an estimate with its interval: ``"0.812 [0.774, 0.851]"`` (``"–"`` for an undefined part)."""
    return f"{fmt_num(value)} [{fmt_num(lo)}, {fmt_num(hi)}]"


def format_table(rows: Sequence[Sequence[str]], columns: Sequence[str]) -> str:
    """Plain-text table with left-aligned columns.

    Parameters
    ----------
    rows : sequence of sequences of str
        One tuple of cell strings per row.
    columns : sequence of str
        Column headers.

    Returns
    -------
    str
        Header, a dashed rule, and the rows, one per line.
    """
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def read_metrics(metrics_path: str | Path, cohort: str) -> dict:
    """Read the metrics JSON that ``predict`` wrote.

    Parameters
    ----------
    metrics_path : str or Path
        ``metrics/<cohort>.json``.
    cohort : str
        The cohort (task), named in the error message.

    Returns
    -------
    dict
        The metrics as written.

    Raises
    ------
    MissingInputError
        The file does not exist.
    InputSchemaError
        The file is not valid JSON.
    """
    metrics_path = Path(metrics_path)
    if not metrics_path.exists():
        raise MissingInputError(
            f"{metrics_path}: metrics not found; run `ehr-hcl predict` for cohort {cohort!r} first"
        )
    try:
        return json.loads(metrics_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputSchemaError(
            f"{metrics_path}: not valid JSON (line {exc.lineno}); rerun `ehr-hcl predict`"
        ) from None


def ranked_results(metrics: Mapping[str, Any]) -> list[tuple[str, str, dict]]:
    """Every (representation, model, result) of a metrics dict, best held_out AUROC first.

    Parameters
    ----------
    metrics : Mapping
        A metrics dict (see :func:`read_metrics`).

    Returns
    -------
    list of (str, str, dict)
        Sorted by AUROC descending (undefined last), then representation, then model.
    """
    rows = [
        (r.get("auroc") if r.get("auroc") is not None else -1.0, rep, model, r)
        for rep, models in (metrics.get("results") or {}).items()
        for model, r in models.items()
    ]
    rows.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [(rep, model, r) for _, rep, model, r in rows]


def summarize_metrics(metrics_path: str | Path, cohort: str) -> str:
    """Summarise a metrics JSON in a few lines of text.

    Parameters
    ----------
    metrics_path : str or Path
        The metrics JSON of one cohort.
    cohort : str
        Its name (the first word of the summary).

    Returns
    -------
    str
        held_out size, oracle and champion on the first line, then every representation × model
        (AUROC [95% CI], AUPRC [95% CI], Brier, C-index), best AUROC first.

    Raises
    ------
    MissingInputError
        ``metrics_path`` does not exist.
    """
    m = read_metrics(metrics_path, cohort)
    ho = (m.get("n") or {}).get("held_out", {})
    head = f"{cohort}: held_out {ho.get('rows', '?')} rows, {ho.get('positives', '?')} events"
    if m.get("oracle"):
        head += f"; oracle AUROC {fmt_ci(m['oracle'], 'auroc')}"
    champ = m.get("champion") or {}
    if champ:
        head += f"; champion {champ.get('representation')}/{champ.get('model')}"
    table = format_table(
        [
            (
                rep,
                model,
                fmt_ci(r, "auroc"),
                fmt_ci(r, "auprc"),
                fmt_num(r.get("brier")),
                fmt_num(r.get("c_index")),
            )
            for rep, model, r in ranked_results(m)
        ],
        SUMMARY_COLUMNS,
    )
    return head + "\n" + "\n".join("  " + line for line in table.splitlines())

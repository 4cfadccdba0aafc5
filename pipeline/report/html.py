"""The self-contained HTML report of one cohort: tables and base64-embedded figures, aggregates only.

Every section is a ``<section id="…">`` with a stable id (see :data:`SECTION_IDS`), so tests and readers
can find it. A section whose input file is absent says so instead of disappearing.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.exceptions import InputSchemaError
from pipeline.io import write_text
from pipeline.schema import SPLITS

logger = logging.getLogger(__name__)

SECTION_IDS = (
    "caveat",
    "cohort-definition",
    "attrition",
    "splits",
    "modalities",
    "structure",
    "roc",
    "pr",
    "calibration",
    "subgroups",
    "survival",
    "comparison",
)


class ReportConfig(BaseModel):
    """The ``report`` section of ``params.yaml``.

    Attributes
    ----------
    small_sample_rows : held_out sizes below this show the small-sample caveat.
    wide_ci_width : an AUROC interval wider than this shows the caveat too.
    title : page title; None → "ehr-hcl report: <cohort>".
    """

    model_config = ConfigDict(extra="forbid")

    small_sample_rows: int = Field(500, ge=0)
    wide_ci_width: float = Field(0.2, gt=0, le=1)
    title: str | None = None


CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.caveat{background:#fff4e0;border-left:5px solid #e08a00;padding:.6em 1em}
.ok{background:#eef7ee;border-left:5px solid #3a3;padding:.6em 1em}
.flag{color:#b00;font-weight:bold} .muted{color:#777} pre{background:#f7f7f7;padding:.6em;overflow-x:auto}
img{max-width:100%}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}"


def _ci(d: dict, name: str) -> str:
    if d.get(name) is None:
        return "–"
    return f"{_num(d.get(name))} [{_num(d.get(name + '_lo'))}, {_num(d.get(name + '_hi'))}]"


def _table(headers: list[str], rows: list[list[Any]], raw_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{v if i in raw_cols else _e(v)}</td>" for i, v in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def _absent(path: Path, what: str) -> str:
    return f'<p class="muted">{_e(what)} not available: {_e(path.name)} was not found.</p>'


# ----------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------


def _cohort_definition(cohort_dir: Path) -> str:
    path = cohort_dir / "cohort.yaml"
    if not path.exists():
        return _absent(path, "The cohort definition")
    return f"<pre>{_e(path.read_text(encoding='utf-8', errors='replace'))}</pre>"


def _attrition(cohort_dir: Path) -> str:
    path = cohort_dir / "attrition.json"
    if not path.exists():
        return _absent(path, "The attrition table")
    data = json.loads(path.read_text())
    steps = data.get("steps", data) if isinstance(data, dict) else data
    if not isinstance(steps, list):
        raise InputSchemaError(
            f"{path}: expected a list of {{criterion, before, after, excluded}}, got {type(steps).__name__}"
        )
    rows = [
        [s.get("criterion", "?"), _num(s.get("before")), _num(s.get("after")), _num(s.get("excluded"))]
        for s in steps
    ]
    return _table(["criterion", "before", "after", "excluded"], rows)


def _splits(cohort_dir: Path, metrics: dict) -> str:
    import pandas as pd

    path = cohort_dir / "labels.parquet"
    counts = metrics.get("n", {})
    if path.exists():
        lab = pd.read_parquet(path, columns=["subject_id", "boolean_value", "split"])
        counts = {
            s: {
                "rows": int((lab["split"] == s).sum()),
                "subjects": int(lab.loc[lab["split"] == s, "subject_id"].nunique()),
                "positives": int(lab.loc[lab["split"] == s, "boolean_value"].astype(bool).sum()),
            }
            for s in SPLITS
        }
    if not counts:
        return _absent(path, "Split counts")
    rows = []
    for s in SPLITS:
        c = counts.get(s, {})
        n = c.get("rows", 0)
        prev = c.get("positives", 0) / n if n else float("nan")
        rows.append([s, _num(c.get("subjects")), _num(n), _num(c.get("positives")), _num(prev)])
    return _table(["split", "subjects", "rows", "positives", "prevalence"], rows)


def _modalities(features_dir: Path, cohort_dir: Path) -> str:
    import pandas as pd

    path = features_dir / "mask.parquet"
    if not path.exists():
        return _absent(path, "Modality availability")
    mask = pd.read_parquet(path)
    lab_path = cohort_dir / "labels.parquet"
    split = pd.read_parquet(lab_path, columns=["split"])["split"] if lab_path.exists() else None
    if split is not None and len(split) != len(mask):
        logger.warning(
            "%s has %d rows but labels have %d; availability shown overall only", path, len(mask), len(split)
        )
        split = None
    headers = ["modality", "all rows"] + (list(SPLITS) if split is not None else [])
    rows = []
    for col in mask.columns:
        m = mask[col].astype(bool)
        row = [col, f"{m.mean():.1%} ({int(m.sum())}/{len(m)})"]
        if split is not None:
            for s in SPLITS:
                ms = m[split.to_numpy() == s]
                row.append(f"{ms.mean():.1%}" if len(ms) else "–")
        rows.append(row)
    n_all = int(mask.astype(bool).all(axis=1).sum())
    return (
        _table(headers, rows)
        + f"<p>Rows with every modality: {n_all} of {len(mask)}. Absent modalities are mask bits, never dropped rows.</p>"
    )


def _structure(models_dir: Path) -> str:
    import pandas as pd

    from pipeline.report.figures import heatmap_figure

    files = sorted(models_dir.glob("*/variance_explained.csv")) if models_dir.is_dir() else []
    if not files:
        return _absent(models_dir / "<method>" / "variance_explained.csv", "The HCL structure")
    parts = [
        "<p>Share of each modality's variance explained by each structure block "
        "(global = all modalities, partially shared, private).</p>"
    ]
    for f in files:
        ve = pd.read_csv(f, index_col=0)
        parts.append(
            f"<h3>{_e(f.parent.name)}</h3>"
            + _img(heatmap_figure(ve, f.parent.name), f"variance explained {f.parent.name}")
            + _discovery(f.parent / "summary.csv")
        )
    return "\n".join(parts)


def _discovery(path: Path) -> str:
    """Deep HCL's candidate structures: alignment of their weakest modality pair, kept or pruned."""
    import pandas as pd

    if not path.exists():
        return ""
    summary = pd.read_csv(path)
    if not {"structure", "kind", "weakest_pair_alignment", "kept"} <= set(summary.columns):
        return ""  # LinearHCL's summary has its own columns; its heatmap says enough
    rows = [
        [r.structure, r.kind, f"{r.alignment:.2f}", f"{r.weakest_pair_alignment:.2f}", "kept" if r.kept else "pruned"]
        for r in summary.itertuples()
    ]
    return (
        "<p>Candidate structures of the deep model. A shared structure is kept when the held-out "
        "alignment of its weakest pair of modalities reaches <code>prune_threshold</code>; private "
        "structures are always kept.</p>"
        + _table(["structure", "kind", "alignment", "weakest pair", "decision"], rows)
    )


def _curve(plots_dir: Path, name: str, kind: str, caption: str) -> str:
    import pandas as pd

    from pipeline.report.figures import curve_figure

    path = plots_dir / f"{name}.csv"
    if not path.exists():
        return _absent(path, caption)
    df = pd.read_csv(path)
    return _img(curve_figure(df, kind), caption) + f"<p class='muted'>{_e(caption)}</p>"


def _read_subgroups(plots_dir: Path):
    import pandas as pd

    path = plots_dir / "subgroups.csv"
    if not path.exists():
        return None
    df = pd.read_csv(path, dtype={"level": str})
    df["small"] = df["small"].astype(str).str.lower().isin(["true", "1"])
    return df


def _subgroups(plots_dir: Path, metrics: dict) -> str:
    df = _read_subgroups(plots_dir)
    champion = metrics.get("champion") or {}
    model = champion.get("model")
    if df is None:
        return _absent(plots_dir / "subgroups.csv", "Subgroup results")
    if not len(df) or model is None:
        return "<p class='muted'>No subgroup results.</p>"
    sub: dict[str, dict[str, dict[str, dict]]] = {}
    for rec in df.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
        sub.setdefault(rec["representation"], {}).setdefault(rec["model"], {})[
            f"{rec['column']}={rec['level']}"
        ] = rec
    parts = [
        f"<p>Held-out AUROC per subgroup for the champion model type ({_e(model)}). "
        "Groups flagged <span class='flag'>small</span> are too small or have too few events to be read on their own.</p>"
    ]
    for rep, by_model in sub.items():
        groups = by_model.get(model) or {}
        rows = []
        for key in sorted(groups):
            g = groups[key]
            flag = "<span class='flag'>small</span>" if g.get("small") else ""
            rows.append(
                [
                    key,
                    _num(g.get("n")),
                    _num(g.get("n_positive")),
                    _ci(g, "auroc"),
                    _num(g.get("brier")),
                    flag,
                ]
            )
        parts.append(
            f"<h3>{_e(rep)}</h3>"
            + _table(["subgroup", "n", "events", "AUROC [95% CI]", "Brier", ""], rows, raw_cols=(5,))
        )
    return "\n".join(parts)


def _survival(plots_dir: Path, metrics: dict) -> str:
    import pandas as pd

    from pipeline.report.figures import survival_figure

    surv = metrics.get("survival") or {}
    parts = []
    if surv:
        rows = [
            [rep, _ci(s, "c_index"), _num(s.get("n_events_held_out")), _num(s.get("n_competing_held_out"))]
            for rep, s in surv.items()
        ]
        parts.append(
            "<p>Cause-specific Cox proportional hazards per representation (competing events censored); "
            "concordance on held_out.</p>"
            + _table(["representation", "C-index [95% CI]", "events", "competing events"], rows)
        )
    for name, ylabel, caption in (
        ("km", "outcome-free survival", "Kaplan–Meier curves by predicted-risk tertile"),
        ("cif", "cumulative incidence", "Aalen–Johansen cumulative incidence by predicted-risk tertile"),
    ):
        path = plots_dir / f"{name}.csv"
        if path.exists():
            df = pd.read_csv(path)
            if len(df):
                parts.append(
                    _img(survival_figure(df, ylabel), caption) + f"<p class='muted'>{_e(caption)}</p>"
                )
    return "\n".join(parts) or "<p class='muted'>Survival analysis was not run for this cohort.</p>"


def _comparison(metrics: dict) -> str:
    rows = []
    for rep, by_model in (metrics.get("results") or {}).items():
        for model, r in by_model.items():
            rows.append((r.get("auroc") if r.get("auroc") is not None else -1, rep, model, r))
    rows.sort(key=lambda t: (-t[0], t[1], t[2]))
    table = _table(
        [
            "representation",
            "model",
            "AUROC [95% CI]",
            "AUPRC [95% CI]",
            "Brier",
            "cal. intercept",
            "cal. slope",
            "ECE",
            "C-index",
        ],
        [
            [
                rep,
                m,
                _ci(r, "auroc"),
                _ci(r, "auprc"),
                _num(r.get("brier")),
                _num(r.get("calibration_intercept")),
                _num(r.get("calibration_slope")),
                _num(r.get("ece")),
                _num(r.get("c_index")),
            ]
            for _, rep, m, r in rows
        ],
    )
    parts = [table]
    oracle = metrics.get("oracle")
    if oracle:
        parts.append(f"<p>Oracle AUROC (the generator's true probabilities): {_ci(oracle, 'auroc')}.</p>")
    paired = metrics.get("paired") or {}
    prow = [
        [
            rep,
            m,
            p.get("baseline"),
            f"{_num(p.get('diff'))} [{_num(p.get('diff_lo'))}, {_num(p.get('diff_hi'))}]",
            _num(p.get("p_value")),
        ]
        for rep, by_model in paired.items()
        for m, p in by_model.items()
    ]
    if prow:
        parts.append(
            "<h3>Paired bootstrap against the best baseline</h3><p>Difference in held-out AUROC on the same "
            "subject-level resamples; an interval that covers 0 means no demonstrated difference.</p>"
            + _table(["representation", "model", "best baseline", "ΔAUROC [95% CI]", "p"], prow)
        )
    champion = metrics.get("champion")
    if champion:
        parts.append(
            f"<p>Champion (chosen on the tuning split): {_e(champion.get('representation'))} / {_e(champion.get('model'))}.</p>"
        )
    return "\n".join(parts)


def _caveats(metrics: dict, plots_dir: Path, config: ReportConfig) -> list[str]:
    out = []
    n_ho = (metrics.get("n") or {}).get("held_out", {})
    if n_ho.get("rows", 0) < config.small_sample_rows:
        out.append(
            f"Small sample: the held_out split has {n_ho.get('rows', '?')} rows and {n_ho.get('positives', '?')} events; "
            "estimates are imprecise."
        )
    if (
        isinstance(n_ho.get("positives"), int)
        and min(n_ho["positives"], n_ho.get("rows", 0) - n_ho["positives"]) < 10
    ):
        out.append(
            "Fewer than 10 events (or non-events) in held_out: percentile bootstrap intervals can be too narrow "
            "here, and AUROC/AUPRC values are not reliable, whatever their intervals say."
        )
    wide = [
        f"{rep}/{m}"
        for rep, bm in (metrics.get("results") or {}).items()
        for m, r in bm.items()
        if r.get("auroc_lo") is None
        or r.get("auroc_hi") is None
        or (r["auroc_hi"] - r["auroc_lo"]) > config.wide_ci_width
    ]
    if wide:
        out.append(
            f"Wide or undefined confidence intervals (AUROC interval wider than {config.wide_ci_width}) for "
            f"{len(wide)} representation × model pair(s): differences between them should not be over-read."
        )
    sub = _read_subgroups(plots_dir)
    n_small = int(sub["small"].sum()) if sub is not None else 0
    if n_small:
        out.append(f"{n_small} subgroup result(s) are flagged small (few rows or events).")
    return out


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------


def build_report(
    cohort: str,
    cohort_dir: Path,
    features_dir: Path,
    embeddings_dir: Path,
    models_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    output_html: Path,
    config: ReportConfig | None = None,
) -> Path:
    """Write the cohort's self-contained HTML report and return its path.

    Parameters
    ----------
    cohort : cohort (task) name.
    cohort_dir : folder with ``cohort.yaml``, ``attrition.json``, ``labels.parquet``.
    features_dir : folder with ``mask.parquet``.
    embeddings_dir : folder of representation parquet files (only their names are shown).
    models_dir : folder of ``<method>/variance_explained.csv`` written by the embed stage.
    metrics_path : the predict stage's metrics JSON (required).
    plots_dir : the predict stage's tables (``roc.csv``, ``pr.csv``, ``calibration.csv``, ``km.csv``, ``cif.csv``,
        ``subgroups.csv``).
    output_html : where to write the report (atomically).
    config : :class:`ReportConfig` (defaults if None).

    Raises
    ------
    MissingInputError
        ``metrics_path`` is absent.
    """
    config = config or ReportConfig()
    cohort_dir, features_dir, embeddings_dir = Path(cohort_dir), Path(features_dir), Path(embeddings_dir)
    models_dir, metrics_path, plots_dir = Path(models_dir), Path(metrics_path), Path(plots_dir)
    from pipeline.predict.run import read_metrics

    metrics = read_metrics(metrics_path, cohort)
    caveats = _caveats(metrics, plots_dir, config)
    caveat_html = (
        "<div class='caveat'><strong>Read with care.</strong><ul>"
        + "".join(f"<li>{_e(c)}</li>" for c in caveats)
        + "</ul></div>"
        if caveats
        else "<div class='ok'>No small-sample warnings: held_out size and interval widths are adequate.</div>"
    )
    reps = (
        sorted(p.stem for p in embeddings_dir.glob("*.parquet"))
        if embeddings_dir.is_dir()
        else metrics.get("representations", [])
    )
    title = config.title or f"ehr-hcl report: {cohort}"
    sections = [
        _section("caveat", "Reading this report", caveat_html),
        _section("cohort-definition", "Cohort definition", _cohort_definition(cohort_dir)),
        _section("attrition", "Attrition", _attrition(cohort_dir)),
        _section("splits", "Splits: counts and prevalence", _splits(cohort_dir, metrics)),
        _section("modalities", "Modality availability", _modalities(features_dir, cohort_dir)),
        _section("structure", "HCL structure found", _structure(models_dir)),
        _section(
            "roc",
            "ROC curves (95% bootstrap band)",
            _curve(plots_dir, "roc", "roc", "ROC curves on held_out"),
        ),
        _section(
            "pr",
            "Precision–recall curves (95% bootstrap band)",
            _curve(plots_dir, "pr", "pr", "Precision–recall curves on held_out"),
        ),
        _section(
            "calibration",
            "Calibration",
            _curve(
                plots_dir,
                "calibration",
                "calibration",
                "Observed vs predicted risk, deciles of predicted risk",
            ),
        ),
        _section("subgroups", "Subgroups", _subgroups(plots_dir, metrics)),
        _section("survival", "Survival", _survival(plots_dir, metrics)),
        _section("comparison", "Comparison of representations and models", _comparison(metrics)),
    ]
    doc = (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{CSS}</style></head><body>\n<h1>{_e(title)}</h1>\n"
        f"<p class='muted'>Representations: {_e(', '.join(reps))}. Aggregates only: no identifiers, "
        "no note text, no patient rows.</p>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
    output_html = Path(output_html)
    write_text(doc, output_html)
    return output_html

"""The self-contained HTML report of one cohort: tables and base64-embedded figures, aggregates only.

The page is the jinja2 template ``templates/report.html.j2`` (autoescaped); this module gathers what it
shows from the files earlier stages wrote: the cohort folder, the features mask, the HCL summaries, the
metrics JSON (read through :mod:`pipeline.results`) and the predict stage's plot tables, drawn with its own
figure functions. Every section
is a ``<section id="…">`` with a stable id (see :data:`SECTION_IDS`), so tests and readers can find it. A
section whose input file is absent says so instead of disappearing.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pipeline.exceptions import InputSchemaError
from pipeline.io import write_text
from pipeline.report.fewshot import label_efficiency
from pipeline.results import fmt_ci, fmt_interval, fmt_num, ranked_results, read_metrics
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
    "label-efficiency",
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


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


# ----------------------------------------------------------------------------------------------------
# Sections: each returns the data its part of the template shows (None when its input is absent)
# ----------------------------------------------------------------------------------------------------


def _cohort_definition(cohort_dir: Path) -> str | None:
    path = cohort_dir / "cohort.yaml"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else None


def _attrition(cohort_dir: Path) -> list[list[str]] | None:
    path = cohort_dir / "attrition.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    steps = data.get("steps", data) if isinstance(data, dict) else data
    if not isinstance(steps, list):
        raise InputSchemaError(
            f"{path}: expected a list of {{criterion, before, after, excluded}}, got {type(steps).__name__}"
        )
    return [
        [
            s.get("criterion", "?"),
            fmt_num(s.get("before")),
            fmt_num(s.get("after")),
            fmt_num(s.get("excluded")),
        ]
        for s in steps
    ]


def _split_source(cohort_dir: Path) -> str | None:
    """Say where the cohort's splits came from (``splits.json`` written by ``ehr-hcl cohort``)."""
    path = cohort_dir / "splits.json"
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    if info.get("source") == "input":
        return f"the input dataset's own MEDS subject splits ({info.get('file')})"
    fractions = "/".join(f"{f:g}" for f in info.get("fractions") or [])
    return f"keyed hash of the subject id (fractions {fractions}, seed {info.get('seed')})"


def _splits(cohort_dir: Path, metrics: dict) -> list[list[str]] | None:
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
        return None
    rows = []
    for s in SPLITS:
        c = counts.get(s, {})
        n = c.get("rows", 0)
        prev = c.get("positives", 0) / n if n else float("nan")
        rows.append([s, fmt_num(c.get("subjects")), fmt_num(n), fmt_num(c.get("positives")), fmt_num(prev)])
    return rows


def _modalities(features_dir: Path, cohort_dir: Path) -> dict | None:
    import pandas as pd

    path = features_dir / "mask.parquet"
    if not path.exists():
        return None
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
    return {
        "headers": headers,
        "rows": rows,
        "n_all": int(mask.astype(bool).all(axis=1).sum()),
        "n": len(mask),
    }


def _structure(models_dir: Path) -> list[dict] | None:
    import pandas as pd

    from pipeline.report.figures import heatmap_figure

    files = sorted(models_dir.glob("*/variance_explained.csv")) if models_dir.is_dir() else []
    if not files:
        return None
    out = []
    for f in files:
        ve = pd.read_csv(f, index_col=0)
        out.append(
            {
                "name": f.parent.name,
                "b64": _b64(heatmap_figure(ve, f.parent.name)),
                "discovery": _discovery(f.parent / "summary.csv"),
            }
        )
    return out


def _discovery(path: Path) -> list[list[str]] | None:
    """Deep HCL's candidate structures: alignment of their weakest modality pair, kept or pruned."""
    import pandas as pd

    if not path.exists():
        return None
    summary = pd.read_csv(path)
    if not {"structure", "kind", "weakest_pair_alignment", "kept"} <= set(summary.columns):
        return None  # LinearHCL's summary has its own columns; its heatmap says enough
    return [
        [
            r.structure,
            r.kind,
            f"{r.alignment:.2f}",
            f"{r.weakest_pair_alignment:.2f}",
            "kept" if r.kept else "pruned",
        ]
        for r in summary.itertuples()
    ]


def _figure(plots_dir: Path, name: str, caption: str, ylabel: str | None = None) -> dict:
    """Draw one of the predict stage's figures from its plot table (``b64`` None when the table is absent).

    The drawing is the predict stage's own (:mod:`pipeline.predict.figures`), from the CSV it wrote: the
    tables are what DVC tracks, the PNG files beside them are not.
    """
    import pandas as pd

    from pipeline.predict.figures import curve_figure, survival_figure

    path = plots_dir / f"{name}.csv"
    if not path.exists():
        return {"b64": None, "caption": caption, "file": path.name}
    df = pd.read_csv(path)
    png = survival_figure(df, ylabel) if ylabel else curve_figure(df, name)
    return {"b64": _b64(png), "caption": caption, "file": path.name, "rows": len(df)}


def _read_subgroups(plots_dir: Path):
    import pandas as pd

    path = plots_dir / "subgroups.csv"
    if not path.exists():
        return None
    df = pd.read_csv(path, dtype={"level": str})
    df["small"] = df["small"].astype(str).str.lower().isin(["true", "1"])
    return df


def _subgroups(plots_dir: Path, metrics: dict) -> dict | None:
    df = _read_subgroups(plots_dir)
    model = (metrics.get("champion") or {}).get("model")
    if df is None:
        return None
    if not len(df) or model is None:
        return {"model": model, "representations": []}
    sub: dict[str, dict[str, dict[str, dict]]] = {}
    for rec in df.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
        sub.setdefault(rec["representation"], {}).setdefault(rec["model"], {})[
            f"{rec['column']}={rec['level']}"
        ] = rec
    reps = []
    for rep, by_model in sub.items():
        groups = by_model.get(model) or {}
        rows = [
            [
                key,
                fmt_num(g.get("n")),
                fmt_num(g.get("n_positive")),
                fmt_ci(g, "auroc"),
                fmt_num(g.get("brier")),
                bool(g.get("small")),
            ]
            for key, g in sorted(groups.items())
        ]
        reps.append({"name": rep, "rows": rows})
    return {"model": model, "representations": reps}


def _survival(plots_dir: Path, metrics: dict) -> dict:
    surv = metrics.get("survival") or {}
    c_index = [
        [
            rep,
            fmt_ci(s, "c_index"),
            fmt_num(s.get("n_events_held_out")),
            fmt_num(s.get("n_competing_held_out")),
        ]
        for rep, s in surv.items()
    ]
    figures = [
        _figure(plots_dir, name, caption, ylabel)
        for name, ylabel, caption in (
            ("km", "outcome-free survival", "Kaplan–Meier curves by predicted-risk tertile"),
            ("cif", "cumulative incidence", "Aalen–Johansen cumulative incidence by predicted-risk tertile"),
        )
        if (plots_dir / f"{name}.csv").exists()
    ]
    return {"c_index": c_index, "figures": [f for f in figures if f["rows"]]}


def _comparison(metrics: dict) -> dict:
    rows = [
        [
            rep,
            m,
            fmt_ci(r, "auroc"),
            fmt_ci(r, "auprc"),
            fmt_num(r.get("brier")),
            fmt_num(r.get("calibration_intercept")),
            fmt_num(r.get("calibration_slope")),
            fmt_num(r.get("ece")),
            fmt_num(r.get("c_index")),
        ]
        for rep, m, r in ranked_results(metrics)
    ]
    oracle = metrics.get("oracle")
    paired = [
        [
            rep,
            m,
            p.get("baseline"),
            fmt_interval(p.get("diff"), p.get("diff_lo"), p.get("diff_hi")),
            fmt_num(p.get("p_value")),
        ]
        for rep, by_model in (metrics.get("paired") or {}).items()
        for m, p in by_model.items()
    ]
    return {
        "rows": rows,
        "oracle": fmt_ci(oracle, "auroc") if oracle else None,
        "paired": paired,
        "champion": metrics.get("champion"),
    }


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


def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2")


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
    fewshot_metrics_path: Path | None = None,
    fewshot_plots_dir: Path | None = None,
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
    plots_dir : the predict stage's tables (``roc.csv``, ``pr.csv``, ``calibration.csv``, ``km.csv``,
        ``cif.csv``, ``subgroups.csv``).
    output_html : where to write the report (atomically).
    config : :class:`ReportConfig` (defaults if None).
    fewshot_metrics_path, fewshot_plots_dir : the fewshot stage's metrics JSON and ``auroc.csv`` folder
        (the "Label efficiency" section; optional: when absent the section says how to produce them).

    Returns
    -------
    Path
        ``output_html``.

    Raises
    ------
    MissingInputError
        ``metrics_path`` is absent.
    """
    config = config or ReportConfig()
    cohort_dir, features_dir, embeddings_dir = Path(cohort_dir), Path(features_dir), Path(embeddings_dir)
    models_dir, metrics_path, plots_dir = Path(models_dir), Path(metrics_path), Path(plots_dir)
    metrics = read_metrics(metrics_path, cohort)
    reps = (
        sorted(p.stem for p in embeddings_dir.glob("*.parquet"))
        if embeddings_dir.is_dir()
        else metrics.get("representations", [])
    )
    doc = _template().render(
        title=config.title or f"ehr-hcl report: {cohort}",
        css=CSS,
        representations=reps,
        caveats=_caveats(metrics, plots_dir, config),
        cohort_yaml=_cohort_definition(cohort_dir),
        attrition=_attrition(cohort_dir),
        splits=_splits(cohort_dir, metrics),
        split_source=_split_source(cohort_dir),
        modalities=_modalities(features_dir, cohort_dir),
        structure=_structure(models_dir),
        curves={
            "roc": _figure(plots_dir, "roc", "ROC curves on held_out"),
            "pr": _figure(plots_dir, "pr", "Precision–recall curves on held_out"),
            "calibration": _figure(
                plots_dir, "calibration", "Observed vs predicted risk, deciles of predicted risk"
            ),
        },
        subgroups=_subgroups(plots_dir, metrics),
        survival=_survival(plots_dir, metrics),
        comparison=_comparison(metrics),
        fewshot=label_efficiency(cohort, fewshot_metrics_path, fewshot_plots_dir),
        fewshot_file=str(fewshot_metrics_path or f"metrics/fewshot/{cohort}.json"),
    )
    output_html = Path(output_html)
    write_text(doc, output_html)
    return output_html

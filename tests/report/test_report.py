"""The HTML report: every section present, figures embedded, caveats shown when the sample is small."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.exceptions import MissingInputError
from pipeline.report import SECTION_IDS, ReportConfig, build_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _build(inputs, out: Path, config=None) -> str:
    keys = ("cohort_dir", "features_dir", "embeddings_dir", "models_dir", "metrics_path", "plots_dir")
    path = build_report("mortality", *(inputs[k] for k in keys), out, config or ReportConfig())
    assert path == out
    return out.read_text()


def _section(doc: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', doc, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_report_has_every_section_with_content(large_inputs, tmp_path):
    doc = _build(large_inputs, tmp_path / "r.html", ReportConfig(small_sample_rows=150))
    for sid in SECTION_IDS:
        _section(doc, sid)
    assert "age &gt;= 18" in _section(doc, "attrition") and ">30<" in _section(doc, "attrition")
    assert "prediction_time: admit+24h" in _section(doc, "cohort-definition")
    splits = _section(doc, "splits")
    lab = large_inputs["labels"]
    n_ho = int((lab.split == "held_out").sum())
    assert f">{n_ho}<" in splits
    assert "Split source: keyed hash of the subject id (fractions 0.7/0.15/0.15, seed 0)" in splits
    assert "notes" in _section(doc, "modalities")
    assert "weakest pair" in _section(doc, "structure") and ">0.81<" in _section(doc, "structure")
    for sid in ("structure", "roc", "pr", "calibration", "survival"):
        assert "data:image/png;base64," in _section(doc, sid), sid
    comp = _section(doc, "comparison")
    assert "hcl" in comp and "raw" in comp and "Paired bootstrap" in comp
    assert "sex=F" in _section(doc, "subgroups")
    assert "No small-sample warnings" in _section(doc, "caveat")
    # no external resources: self-contained
    assert not re.search(r'(src|href)="(http|//)', doc)


def test_report_contains_no_identifiers(large_inputs, tmp_path):
    doc = _build(large_inputs, tmp_path / "r.html")
    lab = large_inputs["labels"]
    for value in list(lab.subject_id[:200]) + list(lab.hadm_id[:200]):
        assert str(value) not in doc


def test_report_names_the_inputs_own_splits(large_inputs, tmp_path):
    cohort_dir = large_inputs["cohort_dir"]
    saved = (cohort_dir / "splits.json").read_text()
    try:
        (cohort_dir / "splits.json").write_text('{"source": "input", "file": "events/metadata/subject_splits.parquet"}')
        doc = _build(large_inputs, tmp_path / "r.html")
    finally:
        (cohort_dir / "splits.json").write_text(saved)
    assert "own MEDS subject splits (events/metadata/subject_splits.parquet)" in _section(doc, "splits")


def test_small_sample_caveat_and_flagged_subgroups(small_inputs, tmp_path):
    doc = _build(small_inputs, tmp_path / "r.html")
    lab = small_inputs["labels"]
    n_ho = int((lab.split == "held_out").sum())
    n_pos = int(lab.boolean_value[lab.split == "held_out"].sum())
    caveat = _section(doc, "caveat")
    assert "Small sample" in caveat and "Wide or undefined confidence intervals" in caveat
    assert ("Fewer than 10 events" in caveat) == (min(n_pos, n_ho - n_pos) < 10)
    assert "flagged small" in caveat
    assert "class='flag'>small<" in _section(doc, "subgroups")


def test_missing_optional_inputs_are_stated_and_metrics_required(large_inputs, tmp_path):
    inputs = dict(large_inputs, models_dir=tmp_path / "nomodels", features_dir=tmp_path / "nofeat")
    doc = _build(inputs, tmp_path / "r.html")
    assert "not available" in _section(doc, "structure") and "mask.parquet" in _section(doc, "modalities")
    with pytest.raises(MissingInputError, match="run `ehr-hcl predict`"):
        _build(dict(large_inputs, metrics_path=tmp_path / "none.json"), tmp_path / "r2.html")
    assert not (tmp_path / "r2.html").exists()


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None, reason="headless chromium not installed (apt-get install chromium; .ci/run does)"
)
def test_report_renders_in_headless_chromium(large_inputs, tmp_path):
    out = tmp_path / "r.html"
    _build(large_inputs, out)
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom, sid
    assert dom.count("data:image/png;base64,") >= 6


def test_label_efficiency_section_absent_says_how_to_produce_it(small_inputs, tmp_path):
    doc = _build(small_inputs, tmp_path / "r.html")
    section = _section(doc, "label-efficiency")
    assert "not available" in section and "ehr-hcl fewshot" in section


def test_label_efficiency_section_shows_figure_and_tables(small_inputs, tmp_path):
    from pipeline.fewshot import FewshotConfig, FewshotInputs, fewshot

    inputs = FewshotInputs(
        cohort="mortality",
        labels_path=small_inputs["cohort_dir"] / "labels.parquet",
        embeddings_dir=small_inputs["embeddings_dir"],
        metrics_path=tmp_path / "fewshot.json",
        plots_dir=tmp_path / "fewshot",
        progress=False,
    )
    config = FewshotConfig(ks=[4, "all"], replicates=2, models=["logistic"], bootstrap_resamples=10)
    result = fewshot(inputs, config)
    keys = ("cohort_dir", "features_dir", "embeddings_dir", "models_dir", "metrics_path", "plots_dir")
    out = build_report(
        "mortality",
        *(small_inputs[k] for k in keys),
        tmp_path / "r.html",
        ReportConfig(),
        fewshot_metrics_path=tmp_path / "fewshot.json",
        fewshot_plots_dir=tmp_path / "fewshot",
    )
    section = _section(out.read_text(), "label-efficiency")
    assert "data:image/png;base64," in section
    assert ">k=4<" in section and ">k=all<" in section
    mean = result["results"]["hcl"]["logistic"]["4"]["auroc"]["mean"]
    assert f"{mean:.3f}" in section
    assert "best non-HCL (raw)" in section  # hcl minus the best baseline, here the only one

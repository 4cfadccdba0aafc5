"""The MIMIC-IV demo (100 patients) through the whole pipeline: the report shows the small-sample caveat."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MIMIC = REPO / ".." / "shared" / "data" / "mimic-iv-demo-2.2"


@pytest.mark.mimic
@pytest.mark.slow
@pytest.mark.skipif(not MIMIC.is_dir(), reason=f"MIMIC-IV demo not found at {MIMIC}")
def test_mimic_demo_report_shows_small_sample_caveat(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "cohorts: [in_hospital_mortality, readmission_30d]\n"
        "ingest: {strict: false}\n"
        f"features: {{notes: {{encoder: tfidf}}, cache_dir: {tmp_path}/cache}}\n"
        "embed: {methods: [hcl, linear_hcl, concat, pca], seed: 0, hcl: {}, linear_hcl: {}}\n"
        "predict: {bootstrap_resamples: 200, models: [logistic, group_lasso, hgb]}\n"
        f"tracking: {{tracking_uri: 'sqlite:///{tmp_path}/mlflow.db'}}\n"
        "report: {}\n"
    )
    ws = tmp_path / "ws"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--source",
            "mimic-iv",
            "--input",
            str(MIMIC.resolve()),
            "--workspace",
            str(ws),
            "--params",
            str(params),
            "--quiet",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for cohort in ("in_hospital_mortality", "readmission_30d"):
        doc = (ws / "reports" / f"{cohort}.html").read_text()
        caveat = re.search(r'<section id="caveat">(.*?)</section>', doc, re.S).group(1)
        assert "Small sample" in caveat and "Wide or undefined confidence intervals" in caveat
        assert "Fewer than 10 events" in caveat
        assert "flag'>small<" in doc
        assert doc.count("data:image/png;base64,") >= 4

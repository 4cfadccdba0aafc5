"""Whole-pipeline fixtures: a small synthetic dataset with planted canaries, run end to end twice.

One pair of runs serves several tests (end to end, determinism, planted-PHI scan), so the default suite
pays for the whole pipeline only twice.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIMIC_DEMO = ROOT.parent / "shared" / "data" / "mimic-iv-demo-2.2"

# A sentence no generator would write; it must never leave the features stage.
CANARY_SENTENCE = "Canary zebra quokka sentence seventeen must stay private."

SMALL_PARAMS = """\
synth:
  patients: {patients}
  seed: 7
features:
  cache_dir: {cache}
  notes:
    encoder: tfidf
    tfidf_dims: 16
embed:
  methods: [hcl, linear_hcl, concat]
  seed: 0
  hcl:
    max_epochs: 6
    embedding_dim: 4
    hidden: [32]
  linear_hcl:
    ranks: auto
    max_rank: 3
    refine: false
predict:
  models: [logistic, group_lasso]
  bootstrap_resamples: 50
  subgroup_resamples: 20
  survival_resamples: 20
  log_models: false
fewshot:
  ks: [4, all]
  replicates: 2
  models: [logistic]
  bootstrap_resamples: 20
tracking:
  tracking_uri: sqlite:///{store}
  artifact_root: {artifacts}
"""


def cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``ehr-hcl`` as a user would, in a subprocess."""
    full_env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )


def write_params(path: Path, root: Path, patients: int = 250) -> Path:
    path.write_text(
        SMALL_PARAMS.format(
            patients=patients,
            cache=root / "cache",
            store=root / "mlflow.db",
            artifacts=root / "mlartifacts",
        )
    )
    return path


def plant_canary(raw: Path) -> None:
    """Append the canary sentence to every synthetic note, rewriting the gzip CSV in place."""
    for table in ("note/discharge.csv.gz", "note/radiology.csv.gz"):
        path = raw / table
        with gzip.open(path, "rt", newline="") as handle:
            rows = list(csv.DictReader(handle))
        fields = list(rows[0])
        for row in rows:
            row["text"] = f"{row['text']} {CANARY_SENTENCE}"
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        with gzip.GzipFile(path, "wb", mtime=0) as handle:
            handle.write(buffer.getvalue().encode())


@dataclass
class PipelineRuns:
    root: Path
    raw: Path
    params: Path
    workspaces: tuple[Path, Path]
    logs: tuple[str, str]


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory) -> PipelineRuns:
    """Synthesize a small dataset, plant canaries, run the whole pipeline twice in two workspaces."""
    root = tmp_path_factory.mktemp("e2e")
    params = write_params(root / "params.yaml", root)
    raw = root / "raw"
    proc = cli("synth", "--params", str(params), "--output", str(raw), "--quiet")
    assert proc.returncode == 0, proc.stderr
    plant_canary(raw)
    workspaces, logs = [], []
    for name in ("run_a", "run_b"):
        # same folder name in both: the MLflow experiment (and so the metrics JSON) is named after it
        ws = root / name / "ws"
        proc = cli("run", "--source", "mimic-iv", "--input", str(raw), "--workspace", str(ws), "--params", str(params))
        assert proc.returncode == 0, proc.stderr[-3000:]
        workspaces.append(ws)
        logs.append(proc.stdout + proc.stderr)
    return PipelineRuns(root, raw, params, tuple(workspaces), tuple(logs))

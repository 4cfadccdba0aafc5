"""Shared, session-scoped inputs for the bad-input suite: one small synthetic dataset and its stage outputs.

Built once (synth -> ingest -> cohort -> features) through the CLI, as a user would; every case then
corrupts a *copy* of one of them in its own tmp folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COHORT = REPO / "cohorts" / "in_hospital_mortality.yaml"

BASE_PARAMS = """\
features:
  modalities: [codes, labs, medications]
embed:
  methods: [pca]
  fit_on: cohort     # these cases fit on the cohort's train rows (no pretraining population here)
  pca:
    n_components: 4
"""


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(proc: subprocess.CompletedProcess) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"fixture step failed ({proc.returncode}): {proc.args}\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    """A folder with raw/ (MIMIC-IV-shaped), events/ (MEDS), cohort/labels.parquet, feats/, params.yaml."""
    root = tmp_path_factory.mktemp("bad_inputs_base")
    (root / "params.yaml").write_text(BASE_PARAMS)
    _ok(run_cli(["synth", "--patients", 60, "--output", "raw", "--quiet"], root))
    _ok(run_cli(["ingest", "--input", "raw", "--output", "events", "--quiet"], root))
    _ok(run_cli(["cohort", "--config", COHORT, "--events", "events", "--output", "cohort", "--quiet"], root))
    _ok(
        run_cli(
            [
                "features",
                "--labels",
                "cohort/labels.parquet",
                "--events",
                "events",
                "--output",
                "feats",
                "--quiet",
            ],
            root,
        )
    )
    return root


def copy_from(base: Path, name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(base / name, target)
    return target

"""A stage killed with SIGKILL mid-way leaves the previous outputs intact, and the rerun matches an
uninterrupted run byte for byte."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline.conftest import ROOT


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _kill_when_writing(args: list[str], output: Path, timeout: float = 120) -> None:
    """Start ``ehr-hcl args``; SIGKILL it once its temporary output folder appears."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if list(output.parent.glob(f".{output.name}.*.tmp")):
                time.sleep(0.1)  # let it write part of its output
                break
            if proc.poll() is not None:
                pytest.fail(f"`ehr-hcl {args[0]}` finished before it could be killed")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _run(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args, "--quiet"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_killed_ingest_leaves_previous_output_and_rerun_matches(pipeline_runs, tmp_path):
    # large enough that ingest is still running a moment after its temporary folder appears
    raw = tmp_path / "raw"
    _run("synth", "--patients", "2500", "--seed", "3", "--output", str(raw), "--params", str(pipeline_runs.params))
    output = tmp_path / "events"
    _run("ingest", "--input", str(raw), "--output", str(output), "--params", str(pipeline_runs.params))
    before = _snapshot(output)

    _kill_when_writing(["ingest", "--input", str(raw), "--output", str(output), "--params", str(pipeline_runs.params)], output)
    assert _snapshot(output) == before, "a killed ingest changed the previous output"

    _run("ingest", "--input", str(raw), "--output", str(output), "--params", str(pipeline_runs.params))
    assert _snapshot(output) == before
    assert not list(tmp_path.glob(".events.*")), "temporary folders left behind after the rerun"


def test_killed_embed_leaves_previous_output_and_rerun_matches(pipeline_runs, tmp_path):
    ws = pipeline_runs.workspaces[0]
    cohort = "in_hospital_mortality"
    args = [
        "embed", "--features", str(ws / f"data/features/{cohort}"),
        "--labels", str(ws / f"data/cohorts/{cohort}/labels.parquet"),
        "--output", str(tmp_path / "emb"), "--models", str(tmp_path / "models"),
        "--pretrained", str(ws / "models/pretraining"), "--params", str(pipeline_runs.params),
    ]
    reference = _snapshot(ws / f"data/embeddings/{cohort}")
    _run(*args)
    before = _snapshot(tmp_path / "emb")
    assert before == reference

    _kill_when_writing(args, tmp_path / "emb")
    assert _snapshot(tmp_path / "emb") == before, "a killed embed changed the previous output"

    _run(*args)
    assert _snapshot(tmp_path / "emb") == before

"""`ehr-hcl ui` serves the store and, when it is terminated, leaves no MLflow process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _store_processes(store: Path) -> list[psutil.Process]:
    """Processes that name the store in their command line or environment (mlflow passes it to its
    uvicorn/gunicorn workers through environment variables)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            seen = list(p.info["cmdline"] or []) + list(p.environ().values())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if any(str(store) in part for part in seen):
            out.append(p)
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_sigterm_to_ui_stops_its_mlflow_server(tmp_path, sig):
    store = tmp_path / "ui-store.db"
    params = tmp_path / "params.yaml"
    params.write_text(
        f"tracking:\n  tracking_uri: sqlite:///{store}\n  artifact_root: {tmp_path / 'artifacts'}\n"
    )
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "ui", "--params", str(params), "--port", str(port), "-q"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline, up = time.time() + 120, False
        while time.time() < deadline and not up and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    up = r.status == 200
            except OSError:
                time.sleep(0.5)
        assert up, (
            f"mlflow ui did not answer: {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ''}"
        )
        server = psutil.Process(proc.pid).children(recursive=True)
        assert server, "the ui command started no server process"
        proc.send_signal(sig)  # to the CLI process only, as a service manager or `kill` would
        assert proc.wait(timeout=60) == 128 + sig
        gone, alive = psutil.wait_procs(server, timeout=30)
        assert not alive, f"still running after SIGTERM: {[p.cmdline() for p in alive]}"
        assert not _store_processes(store)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _store_processes(store):
            p.kill()

"""The CLI surface: every stage listed, fast help, one-line user errors with exit code 2."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.exceptions import ConfigError
from pipeline.workspace import Workspace, check_name

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["synth", "ingest", "cohort", "features", "audit", "embed", "predict", "fewshot", "report", "compare", "summary", "ui", "run"]


def test_help_lists_every_stage_quickly():
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    elapsed = time.perf_counter() - start
    for stage in STAGES:
        assert f"  {stage} " in out, stage
    assert elapsed < 2.0, f"ehr-hcl --help took {elapsed:.2f} s"


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_help(stage, capsys):
    with pytest.raises(SystemExit) as exc:
        main([stage, "--help"])
    assert exc.value.code == 0
    assert "--params" in capsys.readouterr().out


def test_user_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("embed:\n  methods: [hcl, nope_method]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "embed", "--params", str(bad), "--features", str(tmp_path / "f"),
         "--labels", str(tmp_path / "labels.parquet"), "--output", str(tmp_path / "e"), "--models", str(tmp_path / "m")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "labels.parquet" in lines[0]


def test_params_yaml_error_names_file_and_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("embed:\n  methodz: [hcl]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "embed", "--params", str(bad), "--features", "f", "--labels", "l",
         "--output", "o", "--models", "m"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "embed.methodz" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_python_object_yaml_is_refused(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("embed: !!python/object/apply:os.system ['echo pwned']\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "embed", "--params", str(bad), "--features", "f", "--labels", "l",
         "--output", "o", "--models", "m"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "pwned" not in proc.stdout
    assert str(bad) in proc.stderr


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "", "x" * 200])
def test_cohort_names_cannot_escape(name):
    with pytest.raises(ConfigError):
        check_name(name)
    with pytest.raises(ConfigError):
        Workspace().cohort(name)


def test_safe_cohort_names_map_inside_workspace(tmp_path):
    ws = Workspace(tmp_path)
    assert ws.cohort("readmission_30d").resolve().is_relative_to(tmp_path.resolve())
    assert ws.report("in_hospital_mortality").name == "in_hospital_mortality.html"

"""The whole pipeline, as a user runs it: outputs exist, reruns are byte-identical, no patient data leaks."""

from __future__ import annotations

import json
import re
import sqlite3

import pandas as pd
import pytest

from tests.pipeline.conftest import CANARY_SENTENCE, MIMIC_DEMO, cli, write_params

COHORTS = ("in_hospital_mortality", "readmission_30d")


def test_every_stage_wrote_its_contract(pipeline_runs):
    ws = pipeline_runs.workspaces[0]
    assert (ws / "data/events/metadata/codes.parquet").exists()
    for cohort in COHORTS:
        labels = pd.read_parquet(ws / f"data/cohorts/{cohort}/labels.parquet")
        mask = pd.read_parquet(ws / f"data/features/{cohort}/mask.parquet")
        assert len(mask) == len(labels) > 50
        assert set(mask.columns) == {"codes", "labs", "medications", "notes"}
        for method in ("hcl", "linear_hcl", "concat"):
            emb = pd.read_parquet(ws / f"data/embeddings/{cohort}/{method}.parquet")
            assert len(emb) == len(labels)
            assert all("__" in c for c in emb.columns)
        metrics = json.loads((ws / f"metrics/{cohort}.json").read_text())
        for method in ("hcl", "linear_hcl", "concat"):
            m = metrics["results"][method]["logistic"]
            assert 0.0 <= m["auroc_lo"] <= m["auroc"] <= m["auroc_hi"] <= 1.0, (cohort, method, m)
        assert metrics["n"]["held_out"]["rows"] == int((labels["split"] == "held_out").sum())
        html = (ws / f"reports/{cohort}.html").read_text()
        assert "<html" in html.lower() and "data:image/png;base64," in html


def test_summary_table_lists_both_tasks(pipeline_runs):
    log = pipeline_runs.logs[0]
    for cohort in COHORTS:
        assert cohort in log
    assert "AUROC" in log and "AUPRC" in log
    assert "mlflow.db" in log


def test_two_runs_are_byte_identical(pipeline_runs):
    a, b = pipeline_runs.workspaces
    files_a = sorted(p.relative_to(a) for p in (a / "data").rglob("*.parquet"))
    files_b = sorted(p.relative_to(b) for p in (b / "data").rglob("*.parquet"))
    assert files_a == files_b and len(files_a) > 10
    different = [str(f) for f in files_a if (a / f).read_bytes() != (b / f).read_bytes()]
    assert not different, f"outputs differ between identical runs: {different}"
    for cohort in COHORTS:
        assert (a / f"metrics/{cohort}.json").read_bytes() == (b / f"metrics/{cohort}.json").read_bytes()


def _scan(blob: bytes, patterns: list[re.Pattern]) -> list[str]:
    text = blob.decode("utf-8", errors="ignore")
    return [p.pattern for p in patterns if p.search(text)]


def test_no_note_text_or_ids_leave_the_pipeline(pipeline_runs):
    root = pipeline_runs.root
    ws = pipeline_runs.workspaces[0]
    labels = pd.read_parquet(ws / "data/cohorts/in_hospital_mortality/labels.parquet")
    ids = sorted(set(labels["subject_id"].astype(str)) | set(labels["hadm_id"].astype(str)))
    # ids are 8-digit numbers; match them only as whole tokens (not inside a float's digits)
    id_patterns = [re.compile(rf"(?<![\d.]){i}(?![\d])") for i in ids[:200]]
    canary = [re.compile(re.escape(CANARY_SENTENCE)), re.compile("quokka")]

    places: dict[str, bytes] = {"logs": "\n".join(pipeline_runs.logs).encode()}
    with sqlite3.connect(root / "mlflow.db") as db:
        for (table,) in db.execute("select name from sqlite_master where type='table'"):
            rows = db.execute(f'select * from "{table}"').fetchall()
            places[f"mlflow.db:{table}"] = repr(rows).encode()
    for folder in (root / "mlartifacts", ws / "reports", ws / "metrics", ws / "plots", ws / "models"):
        for path in folder.rglob("*"):
            if path.is_file():
                places[str(path.relative_to(root))] = path.read_bytes()
    assert len(places) > 10
    leaks = {where: found for where, blob in places.items() if (found := _scan(blob, canary))}
    assert not leaks, f"note text found in {sorted(leaks)}"
    leaks = {where: found[:3] for where, blob in places.items() if (found := _scan(blob, id_patterns))}
    assert not leaks, f"subject/admission ids found in {leaks}"


def test_mlflow_has_a_run_per_representation_with_metrics(pipeline_runs):
    with sqlite3.connect(pipeline_runs.root / "mlflow.db") as db:
        experiments = {name for (name,) in db.execute("select name from experiments")}
        assert {f"ws.{c}" for c in COHORTS} <= experiments
        keys = {key for (key,) in db.execute("select distinct key from metrics")}
    assert {"auroc", "auroc_lo", "auroc_hi", "auprc"} <= keys


@pytest.mark.mimic
def test_mimic_demo_runs_end_to_end_without_notes(tmp_path):
    if not MIMIC_DEMO.exists():
        pytest.skip(f"{MIMIC_DEMO} not present")
    params = write_params(tmp_path / "params.yaml", tmp_path)
    ws = tmp_path / "mimic"
    proc = cli("run", "--source", "mimic-iv", "--input", str(MIMIC_DEMO), "--workspace", str(ws), "--params", str(params))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for cohort in COHORTS:
        mask = pd.read_parquet(ws / f"data/features/{cohort}/mask.parquet")
        assert not mask["notes"].any(), "the demo has no notes module: notes must be absent, not invented"
        assert mask["labs"].mean() > 0.5
        assert (ws / f"metrics/{cohort}.json").exists()
        assert (ws / f"reports/{cohort}.html").exists()
    assert "notes" in (proc.stdout + proc.stderr)

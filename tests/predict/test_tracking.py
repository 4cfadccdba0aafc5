"""MLflow tracking on a temporary SQLite store: nested runs, params, CI metrics, models, champion, compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.compare import compare
from pipeline.predict import PredictConfig, PredictInputs, predict
from pipeline.tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    TrackingConfig,
    file_digest,
    resolve_tracking_uri,
    tracked_run,
    ui_command,
)

TASK = "mortality_trk"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, cohort_factory):
    root = tmp_path_factory.mktemp("trk")
    c = cohort_factory(root, n_subjects=200, seed=5, id_base=73_519_000)
    trk = TrackingConfig(tracking_uri=f"sqlite:///{root}/mlflow.db")
    cfg = PredictConfig(
        models=["logistic", "group_lasso", "hgb"],
        bootstrap_resamples=50,
        subgroup_resamples=0,
        survival_resamples=0,
    )
    feats = root / "features"
    feats.mkdir()
    n = len(pd.read_parquet(c["labels"]))
    pd.DataFrame({"codes": np.ones(n, bool), "labs": np.arange(n) % 3 > 0}).to_parquet(feats / "mask.parquet")
    for m in ("codes", "labs"):
        pd.DataFrame({f"{m}__0": np.zeros(n, "float32")}).to_parquet(feats / f"{m}.parquet")
    inputs = PredictInputs(
        cohort=TASK,
        features_dir=feats,
        labels_path=c["labels"],
        embeddings_dir=c["emb"],
        metrics_path=root / "metrics.json",
        plots_dir=root / "plots",
        truth_path=c["truth"],
        params={"hcl": {"rank": 3, "method": "linear"}},
        tags={"data_source": "synthetic", "cohort_yaml_sha256": "abc123"},
        progress=False,
    )
    res = predict(inputs, cfg, trk)
    import mlflow

    mlflow.set_tracking_uri(resolve_tracking_uri(trk))
    return {"root": root, "cohort": c, "trk": trk, "res": res, "mlflow": mlflow}


def _runs(tracked):
    mlflow = tracked["mlflow"]
    exp = mlflow.get_experiment_by_name(TASK)
    return mlflow.search_runs([exp.experiment_id], output_format="list")


def test_parent_and_nested_runs_with_params_metrics_tags(tracked):
    runs = _runs(tracked)
    parents = [r for r in runs if r.data.tags.get("ehr_hcl.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("ehr_hcl.role") == "child"]
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.info.status == "FINISHED" and all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert parent.data.params["hcl.rank"] == "3" and parent.data.params["predict.bootstrap_resamples"] == "50"
    assert (
        parent.data.tags["data_source"] == "synthetic" and parent.data.tags["cohort_yaml_sha256"] == "abc123"
    )
    assert "oracle_auroc" in parent.data.metrics and "n_held_out_rows" in parent.data.metrics
    pairs = {(c.data.tags["representation"], c.data.tags["model"]): c for c in children}
    assert set(pairs) == {(r, m) for r in ("hcl", "raw") for m in ("logistic", "group_lasso", "hgb")}
    assert pairs[("hcl", "group_lasso")].data.tags["selected_structures"] == "codes+labs"
    m = pairs[("hcl", "logistic")].data.metrics
    assert m["auroc_lo"] < m["auroc"] < m["auroc_hi"]
    assert m["auroc"] == pytest.approx(tracked["res"]["results"]["hcl"]["logistic"]["auroc"])
    assert "c_index" in m and "brier" in m and "paired_auroc_diff" in m
    artifacts = {
        a.path for a in tracked["mlflow"].MlflowClient().list_artifacts(parent.info.run_id, "figures")
    }
    assert {"figures/roc.png", "figures/calibration.png", "figures/metrics.json"} <= artifacts


def test_champion_alias_loads_and_predicts_held_out_rows(tracked):
    mlflow = tracked["mlflow"]
    model = mlflow.pyfunc.load_model(f"models:/{TASK}@champion")
    champ = tracked["res"]["champion"]
    c = tracked["cohort"]
    labels = pd.read_parquet(c["labels"])
    emb = pd.read_parquet(c["emb"] / f"{champ['representation']}.parquet")
    ho = (labels.split == "held_out").to_numpy()
    out = np.asarray(model.predict(emb[ho]))
    p = out[:, 1] if out.ndim == 2 else out
    assert p.shape == (ho.sum(),) and np.all((p >= 0) & (p <= 1))
    from pipeline.predict.metrics import auroc

    expected = tracked["res"]["results"][champ["representation"]][champ["model"]]["auroc"]
    assert auroc(labels.boolean_value[ho], p) == pytest.approx(expected, abs=1e-6)
    one = model.predict(emb[ho].iloc[:1])
    assert len(np.asarray(one)) == 1


def test_logged_models_are_safe_and_examples_are_summary_rows(tracked):
    mlflow = tracked["mlflow"]
    runs = {(r.data.tags.get("representation"), r.data.tags.get("model")): r for r in _runs(tracked)}
    emb = pd.read_parquet(tracked["cohort"]["emb"] / "hcl.parquet").to_numpy(dtype=np.float64)
    for model_name in ("logistic", "group_lasso", "hgb"):
        run = runs[("hcl", model_name)]
        models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
        mine = [m for m in models if m.source_run_id == run.info.run_id]
        assert len(mine) == 1
        path = Path(mlflow.artifacts.download_artifacts(mine[0].artifact_location))
        files = {p.name for p in path.rglob("*")}
        assert not any(f.endswith((".pkl", ".pickle", ".cloudpickle")) for f in files), files
        mlmodel = (path / "MLmodel").read_text()
        if model_name in ("logistic", "group_lasso"):
            assert "loader_module: pipeline.serving" in mlmodel and "weights.json" in files
        else:
            assert "serialization_format: skops" in mlmodel
        example = json.loads((path / "input_example.json").read_text())
        rows = np.asarray(example["data"], dtype=float)
        assert rows.shape[0] == 3
        # summary rows: no example row equals a real patient row
        assert not any(np.any(np.all(np.isclose(emb, r, atol=1e-6), axis=1)) for r in rows)


def test_failed_and_killed_runs_are_marked(tracked):
    trk = tracked["trk"]
    with pytest.raises(RuntimeError):
        with tracked_run(trk, "crash_test", "boom") as run:
            failed_id = run.info.run_id
            raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(trk, "crash_test", "ctrl-c") as run:
            killed_id = run.info.run_id
            raise KeyboardInterrupt
    mlflow = tracked["mlflow"]
    assert mlflow.get_run(failed_id).info.status == "FAILED"
    assert mlflow.get_run(killed_id).info.status == "KILLED"


def test_compare_lists_runs_best_first(tracked):
    table = compare(TASK, tracked["trk"])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["task", "representation", "model"]
    body = lines[2:]
    assert len(body) == 6 and all(line.startswith(TASK) for line in body)
    aurocs = [float(line.split()[3]) for line in body]
    assert aurocs == sorted(aurocs, reverse=True)
    assert body[0].split()[1] == "hcl"
    all_tasks = compare(None, tracked["trk"])
    assert TASK in all_tasks and "crash_test" not in all_tasks  # no finished predict parent there
    from pipeline.exceptions import ConfigError

    with pytest.raises(ConfigError, match="no experiment for task 'nope'"):
        compare("nope", tracked["trk"])
    missing = tracked["root"] / "absent" / "mlflow.db"
    assert compare(None, TrackingConfig(tracking_uri=f"sqlite:///{missing}")).startswith("no MLflow store")
    assert not missing.exists()


def test_tracking_uri_resolution_and_ui_command(tmp_path):
    assert resolve_tracking_uri(TrackingConfig(), root=tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    rel = resolve_tracking_uri(TrackingConfig(tracking_uri="sqlite:///sub/x.db"), root=tmp_path)
    assert rel == f"sqlite:///{tmp_path}/sub/x.db"
    assert (
        resolve_tracking_uri(TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/a.db"))
        == f"sqlite:///{tmp_path}/a.db"
    )
    cmd = ui_command(TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/a.db"))
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/a.db"
    assert cmd[cmd.index("--default-artifact-root") + 1] == (tmp_path / "mlartifacts").as_uri()
    from pipeline.exceptions import ConfigError
    from pipeline.tracking import resolve_artifact_root

    assert resolve_artifact_root(TrackingConfig(tracking_uri="http://127.0.0.1:5000")) is None
    with pytest.raises(ConfigError, match="not a URI"):
        resolve_tracking_uri(TrackingConfig(tracking_uri="mlflow.db"))


def test_crash_inside_predict_marks_parent_failed(tracked, tmp_path, monkeypatch):
    """A crash while evaluating leaves no run and no metrics; a crash while tracking marks the parent FAILED."""
    c = tracked["cohort"]
    emb_dir = tmp_path / "emb"
    emb_dir.mkdir()
    pd.read_parquet(c["emb"] / "hcl.parquet").to_parquet(emb_dir / "hcl.parquet")
    bad = pd.read_parquet(c["emb"] / "raw.parquet")
    bad.iloc[0, 0] = np.inf
    bad.to_parquet(emb_dir / "raw.parquet")  # read after hcl is evaluated
    cfg = PredictConfig(
        models=["logistic"], bootstrap_resamples=10, subgroup_resamples=0, survival=False, log_models=False
    )
    from pipeline.exceptions import InputSchemaError

    def inputs(cohort, emb):
        return PredictInputs(
            cohort=cohort,
            labels_path=c["labels"],
            embeddings_dir=emb,
            metrics_path=tmp_path / cohort / "m.json",
            plots_dir=tmp_path / cohort / "p",
            progress=False,
        )

    with pytest.raises(InputSchemaError):
        predict(inputs("crash_predict", emb_dir), cfg, tracked["trk"])
    mlflow = tracked["mlflow"]
    assert mlflow.get_experiment_by_name("crash_predict") is None  # nothing tracked before the data is good
    assert not (tmp_path / "crash_predict" / "m.json").exists()

    from pipeline import tracking as T

    def boom(*args, **kwargs):
        raise RuntimeError("artifact store down")

    monkeypatch.setattr(T, "log_artifacts", boom)  # after every child run is logged
    with pytest.raises(RuntimeError, match="artifact store down"):
        predict(inputs("crash_tracking", c["emb"]), cfg, tracked["trk"])
    exp = mlflow.get_experiment_by_name("crash_tracking")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    status = {(r.data.tags["ehr_hcl.role"], r.info.status) for r in runs}
    assert status == {("parent", "FAILED"), ("child", "FINISHED")}
    assert (tmp_path / "crash_tracking" / "m.json").exists()  # the files are written before tracking


def test_runs_show_their_dataset_inputs_and_experiment_kind(tracked):
    """The parent run lists the labels and every representation as dataset inputs (name, source, file
    digest); each child its labels and its own representation; the experiment opens as model training."""
    mlflow = tracked["mlflow"]
    exp = mlflow.get_experiment_by_name(TASK)
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    c = tracked["cohort"]
    runs = _runs(tracked)
    parent = next(r for r in runs if r.data.tags.get("ehr_hcl.role") == "parent")

    def inputs(run):
        return {
            d.dataset.name: (d.dataset.digest, d.dataset.source, {t.key: t.value for t in d.tags})
            for d in run.inputs.dataset_inputs
        }

    seen = inputs(parent)
    assert set(seen) == {"labels", "hcl", "raw", "features/codes", "features/labs", "features/mask"}
    feats = tracked["root"] / "features"
    for m in ("codes", "labs", "mask"):
        digest, _, tags = seen[f"features/{m}"]
        assert digest == file_digest(feats / f"{m}.parquet") and tags["mlflow.data.context"] == "features"
    for name, path in (
        ("labels", c["labels"]),
        ("hcl", c["emb"] / "hcl.parquet"),
        ("raw", c["emb"] / "raw.parquet"),
    ):
        digest, source, tags = seen[name]
        assert digest == file_digest(path) and len(digest) == 32
        assert str(Path(path).resolve()) in source
        assert tags["mlflow.data.context"] == ("labels" if name == "labels" else "representation")
    for child in (r for r in runs if r.data.tags.get("ehr_hcl.role") == "child"):
        assert set(inputs(child)) == {"labels", child.data.tags["representation"]}


@pytest.mark.slow
def test_ui_serves_the_store_on_localhost(tmp_path):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "from pipeline.tracking import TrackingConfig, ui; "
        f"ui(TrackingConfig(tracking_uri='sqlite:///{tmp_path}/ui.db'), port={port})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        ok = False
        while time.time() < deadline and not ok:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    ok = r.status == 200
            except OSError:
                time.sleep(1)
        assert ok, "mlflow ui did not answer on 127.0.0.1"
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_no_identifiers_or_patient_rows_in_store_or_artifacts(tracked):
    """Planted distinctive ids must not appear in mlflow.db or any artifact; input examples are summaries."""
    root = tracked["root"]
    labels = pd.read_parquet(tracked["cohort"]["labels"])
    ids = {str(v).encode() for v in pd.concat([labels.subject_id, labels.hadm_id])}
    assert all(len(i) >= 8 for i in ids)
    files = [root / "mlflow.db"] + [p for p in (root / "mlartifacts").rglob("*") if p.is_file()]
    assert len(files) > 10
    for f in files:
        data = f.read_bytes()
        hits = [i for i in ids if i in data]
        assert not hits, f"{f} contains identifiers {hits[:3]}"


def test_dvc_temp_experiments_track_into_the_project_store(tmp_path):
    """`dvc exp run --queue/--temp` runs in <project>/.dvc/tmp/exps/<tmp>, itself a git copy: its MLflow
    runs must land in the project's mlflow.db, not in the copy DVC deletes."""
    import subprocess

    from pipeline.tracking import TrackingConfig, project_root, resolve_tracking_uri

    project = tmp_path / "proj"
    copy = project / ".dvc" / "tmp" / "exps" / "tmpa1b2c3"
    copy.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(copy)], check=True)
    assert project_root(copy) == project.resolve()
    assert project_root(project) == project.resolve()
    assert (
        resolve_tracking_uri(TrackingConfig(), root=project_root(copy))
        == f"sqlite:///{project.resolve() / 'mlflow.db'}"
    )

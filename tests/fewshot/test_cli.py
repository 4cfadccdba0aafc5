"""``ehr-hcl fewshot`` and ``ehr-hcl compare --k``: one-line errors with exit 2, MLflow runs, the k table."""

from __future__ import annotations

import pytest

from pipeline.cli import main

PARAMS = """\
fewshot:
  ks: [4, all]
  replicates: 2
  models: [logistic, group_lasso]
  bootstrap_resamples: 10
  group_lasso_n_alphas: 4
  group_lasso_max_iter: 200
tracking:
  tracking_uri: sqlite:///{store}
  artifact_root: {artifacts}
"""


def _args(paths, ws, *extra):
    return [
        "fewshot",
        "--cohort",
        "tiny",
        "--labels",
        str(paths["labels"]),
        "--embeddings",
        str(paths["emb"]),
        "--metrics",
        str(ws / "metrics" / "fewshot" / "tiny.json"),
        "--plots",
        str(ws / "plots" / "fewshot" / "tiny"),
        "--quiet",
        *extra,
    ]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err, err
    return err


def test_missing_labels_is_a_one_line_error(fewshot_cohort, tmp_path, capsys):
    paths = {**fewshot_cohort, "labels": tmp_path / "nowhere" / "labels.parquet"}
    assert main(_args(paths, tmp_path)) == 2
    assert "labels.parquet" in _one_line_error(capsys)


def test_missing_embeddings_is_a_one_line_error(fewshot_cohort, tmp_path, capsys):
    paths = {**fewshot_cohort, "emb": tmp_path / "no_embeddings"}
    assert main(_args(paths, tmp_path)) == 2
    assert "no_embeddings" in _one_line_error(capsys)


@pytest.mark.parametrize("bad", ["0", "many"])
def test_bad_k_is_a_one_line_error(fewshot_cohort, tmp_path, capsys, bad):
    assert main(_args(fewshot_cohort, tmp_path, "--ks", "4", bad)) == 2
    err = _one_line_error(capsys)
    assert "--ks" in err and "positive integer or 'all'" in err


def test_help_explains_the_protocol(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fewshot", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "k positives and k negatives" in out and "--ks" in out


def test_fewshot_logs_runs_and_compare_shows_one_k(fewshot_cohort, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.format(store=tmp_path / "mlflow.db", artifacts=tmp_path / "mlartifacts"))
    assert main([*_args(fewshot_cohort, tmp_path), "--params", str(params)]) == 0
    assert (tmp_path / "plots" / "fewshot" / "tiny" / "auroc.png").exists()
    printed = capsys.readouterr().out
    assert "mean held_out AUROC" in printed and "k=all" in printed and "logistic" in printed

    from mlflow import MlflowClient

    client = MlflowClient()  # the tracking URI the stage set
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("ehr_hcl.role") == "fewshot_parent"]
    children = [r for r in runs if r.data.tags.get("ehr_hcl.role") == "fewshot_child"]
    assert len(parents) == 1
    assert len(children) == 3 * 2 * 2  # representations x models x ks
    child = next(
        r
        for r in children
        if r.data.params["representation"] == "hcl"
        and r.data.params["k"] == "4"
        and r.data.params["model"] == "logistic"
    )
    assert child.data.params["replicates"] == "2" and child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    history = client.get_metric_history(child.info.run_id, "replicate_auroc")
    assert sorted(m.step for m in history) == [0, 1]
    assert "auroc_mean" in child.data.metrics and "vs_concat_mean" in child.data.metrics

    capsys.readouterr()
    assert main(["compare", "--k", "4", "--task", "tiny", "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "AUROC mean [min, max]" in out and "hcl" in out and "concat" in out
    assert main(["compare", "--k", "3", "--task", "tiny", "--workspace", str(tmp_path)]) == 2
    assert "choose one of them" in _one_line_error(capsys)

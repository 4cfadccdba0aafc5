"""The predict stage end to end without MLflow: metrics JSON, plot tables, recovery, input errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.exceptions import CohortError, ConfigError, InputSchemaError, MissingInputError
from pipeline.params import load_section
from pipeline.predict import PredictConfig, PredictInputs, predict

FAST = dict(
    models=["logistic", "group_lasso"], bootstrap_resamples=100, subgroup_resamples=20, survival_resamples=20
)


def _run(c, tmp_path, **kw):
    cfg = PredictConfig(**{**FAST, **kw})
    inputs = PredictInputs(
        cohort="mortality_test",
        labels_path=c["labels"],
        embeddings_dir=c["emb"],
        metrics_path=tmp_path / "m" / "metrics.json",
        plots_dir=tmp_path / "plots",
        truth_path=c["truth"],
        progress=False,
    )
    return predict(inputs, cfg, tracking=None)


def _inputs(labels, emb, tmp_path):
    return PredictInputs(
        cohort="t",
        labels_path=labels,
        embeddings_dir=emb,
        metrics_path=tmp_path / "m.json",
        plots_dir=tmp_path / "p",
        progress=False,
    )


def test_predict_writes_metrics_and_plots_and_recovers_truth(cohort, tmp_path):
    res = _run(cohort, tmp_path, min_subgroup_size=15, min_subgroup_events=3)
    on_disk = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert on_disk["results"]["hcl"]["logistic"]["auroc"] == pytest.approx(
        res["results"]["hcl"]["logistic"]["auroc"]
    )
    hcl, raw = res["results"]["hcl"]["logistic"], res["results"]["raw"]["logistic"]
    for key in (
        "auroc",
        "auroc_lo",
        "auroc_hi",
        "auprc",
        "auprc_lo",
        "auprc_hi",
        "brier",
        "calibration_intercept",
        "calibration_slope",
        "ece",
        "c_index",
        "c_index_lo",
        "c_index_hi",
        "tuning_auroc",
    ):
        assert key in hcl, key
    # HCL block carries the true signal: close to the oracle, better than the noisy baseline
    assert res["oracle"]["auroc"] - hcl["auroc"] < 0.03
    assert hcl["auroc"] > raw["auroc"] + 0.05
    pair = res["paired"]["hcl"]["logistic"]
    assert pair["baseline"] == "raw" and pair["diff_lo"] > 0
    assert res["baselines"] == ["raw"]
    n = res["n"]
    labels = pd.read_parquet(cohort["labels"])
    assert sum(n[s]["rows"] for s in ("train", "tuning", "held_out")) == len(labels)
    assert n["held_out"]["positives"] == int(labels.loc[labels.split == "held_out", "boolean_value"].sum())
    # subgroups: every level of each column, small ones flagged
    sg = pd.read_csv(tmp_path / "plots" / "subgroups.csv")
    sg = sg[(sg.representation == "hcl") & (sg.model == "logistic")]
    sub = {f"{r.column}={r.level}": r for r in sg.itertuples()}
    assert {"sex=F", "sex=M", "admission_type=URGENT"} <= set(sub)
    assert bool(sub["admission_type=URGENT"].small) is True and bool(sub["sex=F"].small) is False
    assert sum(sub[k].n for k in ("sex=F", "sex=M")) == n["held_out"]["rows"]
    assert hcl["n_subgroups_small"] == int(sg.small.sum()) >= 1
    # plot tables for DVC
    roc = pd.read_csv(tmp_path / "plots" / "roc.csv")
    assert list(roc.columns[:4]) == ["representation", "model", "x", "y"]
    assert set(roc.representation) == {"hcl", "raw"}
    cal = pd.read_csv(tmp_path / "plots" / "calibration.csv")
    assert {"representation", "model", "x", "y", "n"} <= set(cal.columns)
    for png in ("roc.png", "pr.png", "calibration.png", "km.png", "cif.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["champion"]["representation"] == "hcl"
    # group lasso on HCL blocks keeps the structure the generator made outcome-relevant
    gl = res["results"]["hcl"]["group_lasso"]
    assert res["truth_outcome_structures"] == ["codes+labs"]
    assert gl["selected_structures"] == ["codes+labs"]
    assert gl["selection_precision"] == 1.0 and gl["selection_recall"] == 1.0


def test_predict_is_deterministic(cohort, tmp_path):
    _run(cohort, tmp_path / "a", models=["logistic", "group_lasso", "hgb"])
    _run(cohort, tmp_path / "b", models=["logistic", "group_lasso", "hgb"])
    assert (tmp_path / "a/m/metrics.json").read_bytes() == (tmp_path / "b/m/metrics.json").read_bytes()
    for name in ("roc.csv", "km.csv", "cif.csv", "subgroups.csv"):
        assert (tmp_path / "a/plots" / name).read_bytes() == (tmp_path / "b/plots" / name).read_bytes(), name


def test_missing_inputs(cohort, tmp_path):
    with pytest.raises(MissingInputError, match="labels file not found"):
        predict(_inputs(tmp_path / "nope.parquet", cohort["emb"], tmp_path), PredictConfig(**FAST), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no <representation>.parquet"):
        predict(_inputs(cohort["labels"], tmp_path / "empty", tmp_path), PredictConfig(**FAST), None)
    assert not (tmp_path / "m.json").exists()


def test_bad_embeddings_name_file_and_column(cohort, tmp_path):
    emb = pd.read_parquet(cohort["emb"] / "hcl.parquet")
    emb.iloc[3, 1] = np.nan
    emb.to_parquet(cohort["emb"] / "hcl.parquet")
    with pytest.raises(InputSchemaError, match=r"hcl.parquet: column 'codes\+labs__1' has 1 NaN"):
        _run(cohort, tmp_path)
    emb.iloc[:-1].fillna(0).to_parquet(cohort["emb"] / "hcl.parquet")
    with pytest.raises(InputSchemaError, match="rows but labels have"):
        _run(cohort, tmp_path)
    assert not (tmp_path / "m" / "metrics.json").exists()


def test_single_class_train_is_a_cohort_error(cohort, tmp_path):
    lab = pd.read_parquet(cohort["labels"])
    lab["boolean_value"] = False
    lab.to_parquet(cohort["labels"])
    with pytest.raises(CohortError, match="both classes in train"):
        _run(cohort, tmp_path)


def test_config_rejects_unknown_keys_and_models(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("predict:\n  models: [logistic, xgboost]\n")
    with pytest.raises(ConfigError, match="predict.models.1"):
        load_section("predict", PredictConfig, p)
    p.write_text("predict:\n  bootstrap: 10\n")
    with pytest.raises(ConfigError, match="predict.bootstrap"):
        load_section("predict", PredictConfig, p)
    assert PredictConfig().models == ["logistic", "group_lasso", "hgb", "mlp"]


def test_summarize_metrics(cohort, tmp_path):
    from pipeline.results import summarize_metrics

    res = _run(cohort, tmp_path, survival=False)
    text = summarize_metrics(tmp_path / "m" / "metrics.json", "mortality_test")
    lines = text.splitlines()
    assert lines[0].startswith("mortality_test: held_out") and "oracle AUROC" in lines[0]
    body = [line.split() for line in lines[3:]]
    assert len(body) == 4 and body[0][0] == "hcl"
    assert float(body[0][2]) == pytest.approx(
        max(r["auroc"] for m in res["results"].values() for r in m.values()), abs=5e-4
    )
    with pytest.raises(MissingInputError):
        summarize_metrics(tmp_path / "none.json", "x")


def test_group_lasso_that_keeps_nothing_is_reported(cohort, tmp_path, caplog):
    """A representation unrelated to the outcome: the group lasso's empty model is said, not silent."""
    n = len(pd.read_parquet(cohort["labels"]))
    noise = np.random.default_rng(5).normal(size=(n, 3))
    pd.DataFrame(noise, columns=[f"noise__{j}" for j in range(3)]).to_parquet(cohort["emb"] / "noise.parquet")
    with caplog.at_level("WARNING", logger="pipeline.predict.run"):
        res = _run(cohort, tmp_path, models=["group_lasso"])
    gl = res["results"]["noise"]["group_lasso"]
    assert gl["selected_structures"] == [] and gl["auroc"] == pytest.approx(0.5)
    assert "noise + group_lasso kept no block" in caplog.text
    assert "hcl + group_lasso kept no block" not in caplog.text


def test_the_cohort_yaml_not_its_name_picks_the_oracle_and_outcome_structures(cohort, tmp_path):
    """A cohort named like readmission but defined as in-hospital death is scored against p_mortality, and
    the other way round: the outcome comes from cohort.yaml (outcome.key), never from the cohort's name."""
    from pathlib import Path

    fast = dict(
        models=["logistic", "group_lasso"], bootstrap_resamples=20, subgroup_resamples=0, survival=False
    )

    def run(name, out):
        inputs = PredictInputs(
            cohort=name,
            labels_path=cohort["labels"],
            embeddings_dir=cohort["emb"],
            metrics_path=out / "m.json",
            plots_dir=out / "p",
            truth_path=cohort["truth"],
            progress=False,
        )
        return predict(inputs, PredictConfig(**fast), None)

    res = run("readmission_30d", tmp_path / "a")
    assert res["oracle"]["column"] == "p_mortality" and res["truth_outcome_structures"] == ["codes+labs"]
    root = Path(__file__).resolve().parents[2]
    yaml = (root / "cohorts" / "readmission_30d.yaml").read_text()
    (cohort["labels"].parent / "cohort.yaml").write_text(yaml)
    res = run("in_hospital_mortality", tmp_path / "b")
    assert res["oracle"]["column"] == "p_readmission_30d" and res["truth_outcome_structures"] == ["codes"]
    gl = res["results"]["hcl"]["group_lasso"]
    assert gl["selected_structures"] == ["codes+labs"]  # what the data say, whatever the truth file claims
    assert gl["selection_precision"] == 0.0 and gl["selection_recall"] == 0.0

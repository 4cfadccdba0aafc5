"""The fewshot stage end to end on a tiny cohort: files, aggregates, paired differences, determinism."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from pipeline.fewshot import FewshotConfig, FewshotInputs, fewshot
from pipeline.fewshot.outputs import summary_table

CONFIG = {
    "ks": [2, 8, "all"],
    "replicates": 2,
    "models": ["logistic", "group_lasso", "hgb"],
    "bootstrap_resamples": 20,
    "group_lasso_n_alphas": 4,
    "group_lasso_max_iter": 200,
    "logistic_c": [0.1, 1.0],
}


def run(paths, out, **overrides):
    inputs = FewshotInputs(
        cohort="tiny",
        labels_path=paths["labels"],
        embeddings_dir=paths["emb"],
        metrics_path=out / "fewshot.json",
        plots_dir=out / "plots",
        progress=False,
    )
    return fewshot(inputs, FewshotConfig(**{**CONFIG, **overrides}))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from tests.fewshot.conftest import make_fewshot_cohort

    root = tmp_path_factory.mktemp("fewshot")
    paths = make_fewshot_cohort(root / "cohort")
    result = run(paths, root / "a")
    return paths, root, result


def test_metrics_hold_every_representation_model_and_k(written):
    _, root, result = written
    on_disk = json.loads((root / "a" / "fewshot.json").read_text())
    assert on_disk == result
    assert result["ks"] == ["2", "8", "all"]
    assert set(result["results"]) == {"concat", "hcl", "pca"}
    cell = result["results"]["hcl"]["logistic"]["8"]
    assert len(cell["replicates"]) == 2
    aurocs = [r["auroc"] for r in cell["replicates"]]
    assert cell["auroc"]["min"] == min(aurocs) and cell["auroc"]["max"] == max(aurocs)
    assert cell["auroc"]["mean"] == pytest.approx(sum(aurocs) / 2, abs=2e-6)
    for r in cell["replicates"]:
        assert r["auroc_lo"] <= r["auroc"] <= r["auroc_hi"]
        assert r["hyperparameters"]["C"] in (0.1, 1.0)
    # k = all is the same rows in every replicate: fitted once
    assert len(result["results"]["hcl"]["logistic"]["all"]["replicates"]) == 1
    # the signal is in hcl's blocks: with every row, hcl beats chance clearly
    assert result["results"]["hcl"]["logistic"]["all"]["auroc"]["mean"] > 0.7
    # the group lasso runs on hcl's three blocks, not on one-block representations
    assert "selected_structures" in result["results"]["hcl"]["group_lasso"]["8"]["replicates"][0]
    assert "structure block" in result["results"]["concat"]["group_lasso"]["8"]["skipped"]
    draws = result["draws"]["8"]["replicates"][0]
    assert draws == {"train_positives": 8, "train_negatives": 8, "tuning_positives": 8, "tuning_negatives": 8}


def test_paired_differences_are_per_replicate_differences(written):
    _, _, result = written
    res = result["results"]
    vs = result["paired"]["hcl"]["logistic"]["8"]
    a = [r["auroc"] for r in res["hcl"]["logistic"]["8"]["replicates"]]
    c = [r["auroc"] for r in res["concat"]["logistic"]["8"]["replicates"]]
    assert vs["vs_concat"]["baseline"] == "concat"
    assert vs["vs_concat"]["per_replicate"] == pytest.approx(
        [x - y for x, y in zip(a, c, strict=True)], abs=2e-6
    )
    best = vs["vs_best_non_hcl"]["baseline"]
    means = {r: res[r]["logistic"]["8"]["auroc"]["mean"] for r in ("concat", "pca")}
    assert best == max(means, key=means.get)
    assert "hcl" not in result["paired"]["hcl"]["logistic"]["8"]["vs_best_non_hcl"]["baseline"]


def test_plot_table_and_figure(written):
    _, root, result = written
    table = pd.read_csv(root / "a" / "plots" / "auroc.csv", dtype={"k": str})
    assert list(table.columns)[:6] == ["representation", "model", "k", "x", "mean", "lo", "hi"][:6]
    row = table[(table.representation == "hcl") & (table.model == "logistic") & (table.k == "8")].iloc[0]
    s = result["results"]["hcl"]["logistic"]["8"]["auroc"]
    assert row["mean"] == pytest.approx(s["mean"], abs=1e-5) and row["lo"] <= row["mean"] <= row["hi"]
    assert set(table[table.k == "all"]["x"]) == {16.0}  # one doubling beyond the largest k
    assert (root / "a" / "plots" / "auroc.png").read_bytes()[:4] == b"\x89PNG"
    text = summary_table(result)
    assert "k=all" in text and "hcl" in text and "logistic" in text


def test_same_seed_gives_byte_identical_json(written, tmp_path):
    paths, root, _ = written
    run(paths, tmp_path / "b")
    assert (tmp_path / "b" / "fewshot.json").read_bytes() == (root / "a" / "fewshot.json").read_bytes()
    run(paths, tmp_path / "c", seed=1)
    assert (tmp_path / "c" / "fewshot.json").read_bytes() != (root / "a" / "fewshot.json").read_bytes()


def test_k_one_skips_the_group_lasso_and_says_why(written, tmp_path):
    paths, _, _ = written
    result = run(paths, tmp_path, ks=[1], replicates=1, models=["group_lasso"])
    assert "2-fold CV" in result["results"]["hcl"]["group_lasso"]["1"]["skipped"]
    assert result["results"]["hcl"]["group_lasso"]["1"]["auroc"]["mean"] is None


def test_config_reads_and_checks_ks():
    assert FewshotConfig(ks=["all", "16", 4]).ks == [4, 16, "all"]
    assert FewshotConfig().ks == [1, 2, 4, 8, 16, 32, 64, 128, "all"]
    for bad in ([0], ["some"], [4, 4], [-2]):
        with pytest.raises(ValidationError):
            FewshotConfig(ks=bad)

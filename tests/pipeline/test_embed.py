"""The embed stage on a small simulated features folder: each model is saved by its own save() and loads
back to the embeddings written; the block R² table is method-agnostic."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hcl.simulate import hierarchical
from pipeline.embed import (
    HANDLES_MISSING,
    METHODS,
    EmbedConfig,
    block_frame,
    block_r2,
    embed,
    fit_models,
    load_features,
    standardise,
)
from pipeline.exceptions import ConfigError

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    sim = hierarchical(
        240,
        {"codes": 8, "labs": 6, "notes": 5},
        {"codes+labs+notes": 2, "codes+labs": 1, "codes": 1, "labs": 1, "notes": 1},
        noise=0.3,
        random_state=1,
        loading_scale=(1.5, 2.5),
        missing={"notes": 0.2},
    )
    feats = root / "features"
    feats.mkdir()
    pd.DataFrame({m: sim.mask[m] for m in sim.modalities}).to_parquet(feats / "mask.parquet")
    for m in sim.modalities:
        cols = [f"f{j}" for j in range(sim.X[m].shape[1])]
        pd.DataFrame(np.nan_to_num(sim.X[m]), columns=cols).to_parquet(feats / f"{m}.parquet")
    split = np.random.default_rng(0).choice(["train", "tuning", "held_out"], size=240, p=[0.6, 0.2, 0.2])
    pd.DataFrame({"split": split}).to_parquet(root / "labels.parquet")
    deep = {"max_epochs": 2, "embedding_dim": 2, "hidden": [8], "n_threads": 1}
    config = EmbedConfig(
        methods=["hcl", "clip", "pca", "jive", "concat"],
        fit_on="cohort",
        hcl=deep,
        clip=deep,
        pca={"n_components": 3},
        jive={"joint_rank": 2, "individual_rank": 1},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = embed(feats, root / "labels.parquet", root / "emb", root / "models", config)
    return root, summary, config


def test_every_model_loads_back_to_the_embeddings_written(embedded):
    from importlib import import_module

    root, summary, config = embedded
    # the stage's own inputs: standardised on train rows, absent modalities as NaN rows (or imputed at 0)
    X_raw, _mask = load_features(root / "features")
    train = (pd.read_parquet(root / "labels.parquet")["split"] == "train").to_numpy()
    X = standardise(X_raw, train)
    X_imputed = {m: np.nan_to_num(v, nan=0.0) for m, v in X.items()}
    for method in config.methods:
        module, cls_name = METHODS[method]
        folder = root / "models" / method
        assert {p.name for p in folder.iterdir()} <= {"model", "summary.csv", "variance_explained.csv"}
        assert {"model", "variance_explained.csv"} <= {p.name for p in folder.iterdir()}
        assert {p.name for p in (folder / "model").iterdir()} == {"config.json", "weights.safetensors"}
        model = getattr(import_module(module), cls_name).load(folder / "model")
        frame = pd.read_parquet(root / "emb" / f"{method}.parquet")
        assert frame.shape[1] == summary["methods"][method]["columns"]
        assert list(model.structure_) == list(summary["methods"][method]["structures"])
        assert model.dims_ == {m: a.shape[1] for m, a in X.items()}
        again = block_frame(model.transform(X if method in HANDLES_MISSING else X_imputed))
        pd.testing.assert_frame_equal(again, frame, check_exact=True)


def test_block_r2_is_one_for_a_block_that_is_the_modality():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    train = np.ones(50, bool)
    table = block_r2({"a": a, "b": b}, {"a_copy": a, "noise": rng.normal(size=(50, 1))}, train)
    assert table.loc["a", "a_copy"] == pytest.approx(1.0)
    assert table.loc["b", "a_copy"] < 0.2 and table.index.name == "modality"


def test_pretrained_models_applied_unchanged_equal_a_fit_on_the_same_rows(embedded, tmp_path):
    """fit_on: pretraining with a population equal to the cohort's train rows gives the same bytes."""
    root, summary, config = embedded
    labels = pd.read_parquet(root / "labels.parquet")
    train = (labels["split"] == "train").to_numpy()
    population = tmp_path / "features"
    population.mkdir()
    for path in (root / "features").iterdir():
        pd.read_parquet(path)[train].reset_index(drop=True).to_parquet(population / path.name)
    pd.DataFrame({"split": ["train"] * int(train.sum())}).to_parquet(tmp_path / "population.parquet")
    pretrained = config.model_copy(update={"fit_on": "pretraining"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_models(population, tmp_path / "population.parquet", tmp_path / "pre", pretrained)
        embed(
            root / "features", root / "labels.parquet", tmp_path / "emb", tmp_path / "models", pretrained,
            pretrained=tmp_path / "pre",
        )
    for method in config.methods:
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "emb" / f"{method}.parquet"),
            pd.read_parquet(root / "emb" / f"{method}.parquet"),
            check_exact=True,
        )
        assert (tmp_path / "models" / method / "cohort_block_r2.csv").is_file()
    assert (tmp_path / "models" / "fitted_on.json").is_file()
    with pytest.raises(ConfigError, match="--pretrained"):
        embed(root / "features", root / "labels.parquet", tmp_path / "e2", tmp_path / "m2", pretrained)


def test_features_of_another_width_are_refused(embedded, tmp_path):
    root, _summary, config = embedded
    other = tmp_path / "features"
    other.mkdir()
    for path in (root / "features").iterdir():
        frame = pd.read_parquet(path)
        if path.stem == "codes":
            frame = frame.iloc[:, :-1]
        frame.to_parquet(other / path.name)
    with pytest.raises(ConfigError, match="columns"):
        embed(other, root / "labels.parquet", tmp_path / "e", tmp_path / "m",
              config.model_copy(update={"fit_on": "pretraining"}), pretrained=root / "models")

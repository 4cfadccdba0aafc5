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
    load_features,
    standardise,
)

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
        assert {p.name for p in folder.iterdir()} == {"model", "summary.csv", "variance_explained.csv"}
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

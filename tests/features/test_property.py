"""Property test: the polars range join equals a plain-Python reference on random small datasets."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.features import FeaturesConfig, build_features

from .conftest import day, ev, write_events, write_labels

DRUGS = ["MEDICATION//a", "MEDICATION//b", "MEDICATION//c"]


@st.composite
def datasets(draw):
    n_subjects = draw(st.integers(1, 5))
    events, labels = [], []
    for s in range(1, n_subjects + 1):
        for _ in range(draw(st.integers(0, 6))):
            t = day(draw(st.integers(0, 40)) / 4) + timedelta(seconds=draw(st.sampled_from([0, 1, -1])))
            events.append(ev(s, t, draw(st.sampled_from(DRUGS))))
        for _ in range(draw(st.integers(1, 3))):
            labels.append(
                {
                    "subject_id": s,
                    "hadm_id": s,
                    "prediction_time": day(draw(st.integers(0, 40)) / 4),
                    "split": draw(st.sampled_from(["train", "train", "held_out"])),
                }
            )
    labels[0]["split"] = "train"
    lookback = draw(st.sampled_from([None, 2.0]))
    return events, labels, lookback


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=datasets())
def test_counts_and_provenance_match_a_plain_reference(tmp_path_factory, data):
    events, labels, lookback = data
    tmp = tmp_path_factory.mktemp("prop")
    if not events:
        events = [ev(99, day(0), "MEDICATION//a")]  # a subject outside the labels: never used
    write_events(events, tmp / "events")
    write_labels(labels, tmp / "labels.parquet")
    cfg = FeaturesConfig.model_validate(
        {
            "modalities": ["medications"],
            "medications": {"min_count": 1},
            "lookback_days": lookback,
            "cache_dir": str(tmp / "cache"),
        }
    )
    build_features(tmp / "labels.parquet", tmp / "events", tmp / "out", cfg, progress=False)

    def visible(row):
        lo = row["prediction_time"] - timedelta(days=lookback) if lookback else None
        return [
            e
            for e in events
            if e["subject_id"] == row["subject_id"]
            and e["time"] <= row["prediction_time"]
            and (lo is None or e["time"] >= lo)
        ]

    vocab = sorted({e["code"] for r in labels if r["split"] == "train" for e in visible(r)})
    meds = pl.read_parquet(tmp / "out" / "medications.parquet")
    prov = pl.read_parquet(tmp / "out" / "provenance.parquet")
    mask = pl.read_parquet(tmp / "out" / "mask.parquet")["medications"].to_list()
    if not vocab:
        assert not any(mask)
        return
    assert sorted(meds.columns) == vocab
    for i, row in enumerate(labels):
        used = [e for e in visible(row) if e["code"] in vocab]
        for token in vocab:
            assert meds[token][i] == sum(e["code"] == token for e in used)
        assert prov["medications__n_events"][i] == len(used)
        assert mask[i] == bool(used)
        expected = max((e["time"] for e in used), default=None)
        assert prov["medications__max_time"][i] == expected
    assert np.isfinite(meds.to_numpy()).all()

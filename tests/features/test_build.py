"""The features stage on hand-made MEDS fixtures: alignment, time rule, train-only fitting, mask, errors."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.exceptions import CohortError, InputSchemaError, MissingInputError
from pipeline.features import FeaturesConfig, build_features

from .conftest import base_dataset, day, ev, write_events, write_labels

REPO = Path(__file__).resolve().parents[2]


def second_prediction_rows():
    """A second prediction row per subject, at day 3 of its admission ``s * 10 + 1``."""
    return [
        {
            "subject_id": s,
            "hadm_id": s * 10 + 1,
            "prediction_time": day(3),
            "split": "train" if s <= 10 else "held_out",
        }
        for s in range(1, 13)
    ]


def _run(tmp_path, events, labels, config, name="out"):
    events_dir = write_events(events, tmp_path / f"events_{name}")
    labels_path = write_labels(labels, tmp_path / f"labels_{name}" / "labels.parquet")
    config = config.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    out = tmp_path / name
    summary = build_features(labels_path, events_dir, out, config, progress=False)
    return out, summary


def _read(out, modality):
    return pl.read_parquet(out / f"{modality}.parquet")


def test_every_file_has_label_rows_in_label_order(tmp_path, small_config):
    events, labels = base_dataset()
    # a second prediction row per subject at the prior discharge, and shuffled label order
    labels += second_prediction_rows()
    order = np.random.default_rng(0).permutation(len(labels))
    labels = [labels[i] for i in order]
    # subject s gets s extra Heparin starts before day 32 so each row's count identifies the row
    for s in range(1, 13):
        events += [ev(s, day(30.1), "MEDICATION//Heparin") for _ in range(s)]
    out, summary = _run(tmp_path, events, labels, small_config)
    for modality in ("codes", "labs", "medications", "notes", "mask", "provenance"):
        frame = _read(out, modality)
        assert frame.height == len(labels), modality
    for modality in ("codes", "labs", "medications", "notes"):
        assert set(_read(out, modality).dtypes) == {pl.Float32}
    prov = _read(out, "provenance")
    assert prov["subject_id"].to_list() == [r["subject_id"] for r in labels]
    assert prov["prediction_time"].to_list() == [r["prediction_time"] for r in labels]
    meds = _read(out, "medications")
    expected = [(2 + r["subject_id"]) if r["prediction_time"] == day(32) else 0 for r in labels]
    assert meds["MEDICATION//heparin"].to_list() == expected
    assert summary["rows"] == len(labels)
    assert set(summary["modalities"]) == {"codes", "labs", "medications", "notes"}


def test_event_one_second_after_prediction_time_never_reaches_features(tmp_path, small_config):
    events, labels = base_dataset()
    out_a, _ = _run(tmp_path, events, labels, small_config, "a")
    late = day(32) + timedelta(seconds=1)
    planted = [
        ev(3, late, "DIAGNOSIS//ICD//10//C349"),
        ev(3, late, "LAB//50912//mg/dL", numeric_value=999.0),
        ev(3, late, "LAB//99999//U/L", numeric_value=5.0),
        ev(3, late, "MEDICATION//Late drug"),
        ev(3, late, "NOTE//RADIOLOGY", text_value="Late planted report about a pulmonary embolism."),
    ]
    out_b, _ = _run(tmp_path, events + planted, labels, small_config, "b")
    for modality in ("codes", "labs", "medications", "notes", "mask"):
        assert _read(out_a, modality).equals(_read(out_b, modality)), modality
    prov = _read(out_b, "provenance")
    for modality in ("codes", "labs", "medications", "notes"):
        col = prov[f"{modality}__max_time"]
        ok = col.is_null() | (col <= prov["prediction_time"])
        assert ok.all(), modality
    # ... and an event exactly at the prediction time is used (boundary is inclusive)
    at = [ev(3, day(32), "MEDICATION//Late drug")]
    out_c, _ = _run(tmp_path, events + at, labels, small_config, "c")
    meds = _read(out_c, "medications")
    row = [r["subject_id"] for r in labels].index(3)
    assert meds["MEDICATION//late drug"][row] == 1.0
    assert _read(out_c, "provenance")["medications__max_time"][row] == day(32)


def test_mortality_rows_get_no_codes_from_the_current_stay(tmp_path, small_config):
    events, labels = base_dataset()
    out, _ = _run(tmp_path, events, labels, small_config)
    codes = _read(out, "codes")
    assert "DIAGNOSIS//ICD//10//J189" not in codes.columns  # stamped at current discharge only
    assert codes["DIAGNOSIS//ICD//10//I5023"].to_list() == [1.0] * len(labels)  # prior stay once, not twice
    assert codes["PROCEDURE//ICD//9//3893"].to_list() == [1.0] * len(labels)
    prov = _read(out, "provenance")
    assert (prov["codes__max_time"] == day(3)).all()
    assert (prov["codes__n_events"] == 3).all()


def test_fitting_uses_train_rows_only(tmp_path, small_config):
    events, labels = base_dataset(held_out_variant=0)
    out_a, _ = _run(tmp_path, events, labels, small_config, "a")
    events_b, _ = base_dataset(held_out_variant=7)
    out_b, _ = _run(tmp_path, events_b, labels, small_config, "b")
    voc_a = json.loads((out_a / "vocabulary.json").read_text())
    voc_b = json.loads((out_b / "vocabulary.json").read_text())
    assert voc_a["modalities"] == voc_b["modalities"]
    assert "DIAGNOSIS//ICD//10//Z999" not in voc_b["modalities"]["codes"]["features"]
    train = pl.Series([r["split"] == "train" for r in labels])
    for modality in ("codes", "labs", "medications", "notes"):
        a, b = _read(out_a, modality), _read(out_b, modality)
        assert a.columns == b.columns
        assert a.filter(train).equals(b.filter(train)), modality
    # sanity: the held-out change does reach held-out rows (so the test could fail)
    assert not _read(out_a, "labs").filter(~train).equals(_read(out_b, "labs").filter(~train))
    # train standardisation: the standardised last value has mean 0 over train rows that have the lab
    labs = _read(out_b, "labs")
    has = (~labs["LAB//50912//mg/dL__missing"].cast(pl.Boolean)) & train
    assert abs(float(labs.filter(has)["LAB//50912//mg/dL__last"].mean())) < 1e-5


def test_row_without_a_modality_gets_zeros_and_mask_false(tmp_path, small_config):
    events, labels = base_dataset()
    out, _ = _run(tmp_path, events, labels, small_config)
    mask = _read(out, "mask")
    assert mask.columns == ["codes", "labs", "medications", "notes"]
    row = [r["subject_id"] for r in labels].index(5)
    assert mask["labs"].to_list() == [i != row for i in range(len(labels))]
    labs = _read(out, "labs")
    values = labs.row(row)
    for name, v in zip(labs.columns, values, strict=True):
        assert v == (1.0 if name.endswith("__missing") else 0.0), name
    prov = _read(out, "provenance")
    assert prov["labs__n_events"][row] == 0 and prov["labs__max_time"][row] is None
    assert mask["codes"].all() and mask["medications"].all() and mask["notes"].all()


def test_lab_statistics_match_hand_computation(tmp_path, small_config):
    events, labels = base_dataset()
    out, _ = _run(tmp_path, events, labels, small_config)
    voc = json.loads((out / "vocabulary.json").read_text())["modalities"]["labs"]
    std = voc["train"]["standardisation"]
    items = voc["train"]["items"]
    k = items.index("LAB//50912//mg/dL")
    # train subjects with the lab: 1..10 minus 5; last value = 2 + 0.1 s
    last = np.array([2.0 + 0.1 * s for s in range(1, 11) if s != 5])
    assert std["last"]["train_mean"][k] == pytest.approx(last.mean(), abs=1e-5)
    assert std["last"]["train_std"][k] == pytest.approx(last.std(), abs=1e-5)
    labs = _read(out, "labs")
    row = [r["subject_id"] for r in labels].index(7)
    got = labs.row(row, named=True)
    assert got["LAB//50912//mg/dL__last"] == pytest.approx((2.7 - last.mean()) / last.std(), abs=1e-4)
    # hours since last: 0.5 day = 12 h for every row with it -> std 0 -> standardised 0
    assert got["LAB//50912//mg/dL__hours_since_last"] == pytest.approx(0.0, abs=1e-6)
    # item whose values are all null: present (missing = 0), value stats 0, counted
    assert got["LAB//50971//mEq/L__missing"] == 0.0
    assert got["LAB//50971//mEq/L__last"] == 0.0
    assert _read(out, "provenance")["labs__n_events"][row] == 3


def test_lab_window_hours_and_lookback(tmp_path, small_config):
    events, labels = base_dataset()
    cfg = small_config.model_copy(
        update={"labs": small_config.labs.model_copy(update={"window_hours": 12.0})}
    )
    out, _ = _run(tmp_path, events, labels, cfg)
    prov = _read(out, "provenance")
    assert (
        prov.filter(pl.col("subject_id") != 5)["labs__n_events"].to_list() == [2] * 11
    )  # 31.5 and 31.6 only
    cfg = small_config.model_copy(update={"lookback_days": 10.0})
    out, summary = _run(tmp_path, events, labels, cfg, "lb")
    assert summary["lookback_days"] == 10.0
    assert not _read(out, "mask")["codes"].any()  # prior-stay codes are 29 days old


def test_icd_rollup():
    from pipeline.features.codes import rollup_expr

    codes = [
        "DIAGNOSIS//ICD//10//I5023",
        "DIAGNOSIS//ICD//9//4280",
        "DIAGNOSIS//ICD//9//E8809",
        "PROCEDURE//ICD//9//3893",
        "PROCEDURE//ICD//10//0DTJ4ZZ",
        "DIAGNOSIS//ICD//10//I50.23",
        "DRG//HCFA//1",
    ]
    got = pl.DataFrame({"code": codes}).select(rollup_expr(pl.col("code")))["code"].to_list()
    assert got == [
        "DIAGNOSIS//ICD//10//I50",
        "DIAGNOSIS//ICD//9//428",
        "DIAGNOSIS//ICD//9//E880",
        "PROCEDURE//ICD//9//38",
        "PROCEDURE//ICD//10//0DT",
        "DIAGNOSIS//ICD//10//I50",
        "DRG//HCFA//1",
    ]


def test_tfidf_weighting_and_vocabulary_limits(tmp_path, small_config):
    events, labels = base_dataset()
    cfg = small_config.model_copy(
        update={
            "codes": small_config.codes.model_copy(
                update={"weighting": "tfidf", "max_width": 2, "icd_rollup": True}
            )
        }
    )
    out, _ = _run(tmp_path, events, labels, cfg)
    codes = _read(out, "codes")
    assert codes.columns == ["DIAGNOSIS//ICD//10//I50", "DIAGNOSIS//ICD//9//428"]
    norms = np.linalg.norm(codes.to_numpy(), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-6)
    cfg = small_config.model_copy(
        update={"medications": small_config.medications.model_copy(update={"min_count": 11})}
    )
    out, summary = _run(tmp_path, events, labels, cfg, "mc")
    assert summary["modalities"]["medications"]["absent"] is True  # only 10 train rows


def test_modality_with_no_events_is_absent_not_a_crash(tmp_path, small_config, caplog):
    events, labels = base_dataset()
    events = [e for e in events if not e["code"].startswith("NOTE//")]
    with caplog.at_level(logging.WARNING):
        out, summary = _run(tmp_path, events, labels, small_config)
    notes = _read(out, "notes")
    assert notes.height == len(labels) and (notes.to_numpy() == 0).all()
    assert not _read(out, "mask")["notes"].any()
    assert summary["modalities"]["notes"]["availability"] == 0.0
    assert any("notes" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_notes_tfidf_cache_and_no_text_outside(tmp_path, small_config, caplog):
    events, labels = base_dataset()
    secret = "Zebra quokka sentence planted for the leak test."
    events.append(ev(2, day(31.2), "NOTE//RADIOLOGY", text_value=secret))
    with caplog.at_level(logging.DEBUG):
        out, s1 = _run(tmp_path, events, labels, small_config, "a")
        out2, s2 = _run(tmp_path, events, labels, small_config, "b")
    assert s1["modalities"]["notes"]["n_embedded"] > 0
    assert s2["modalities"]["notes"]["n_embedded"] == 0
    assert s2["modalities"]["notes"]["n_cache_hits"] == s1["modalities"]["notes"]["n_notes"]
    assert _read(out, "notes").equals(_read(out2, "notes"))
    assert "Zebra" not in caplog.text and "quokka" not in caplog.text
    for path in list(out.rglob("*")) + list((tmp_path / "cache").rglob("*")):
        if path.is_file():
            raw = path.read_bytes()
            assert b"quokka" not in raw, path
            if path.suffix == ".parquet":
                frame = pl.read_parquet(path)
                for col in frame.select(pl.col(pl.String)).columns:
                    assert not frame[col].str.contains("quokka").any(), path


def test_errors_are_user_errors(tmp_path, small_config):
    events, labels = base_dataset()
    events_dir = write_events(events, tmp_path / "events")
    with pytest.raises(MissingInputError, match="labels file not found"):
        build_features(tmp_path / "nope.parquet", events_dir, tmp_path / "o", small_config)
    labels_path = write_labels(labels, tmp_path / "l" / "labels.parquet")
    with pytest.raises(MissingInputError, match="ingest"):
        build_features(labels_path, tmp_path / "no_events", tmp_path / "o", small_config)
    pl.read_parquet(labels_path).drop("split").write_parquet(tmp_path / "l" / "bad.parquet")
    with pytest.raises(InputSchemaError, match="'split' missing"):
        build_features(tmp_path / "l" / "bad.parquet", events_dir, tmp_path / "o", small_config)
    pl.read_parquet(labels_path).with_columns(pl.lit("test").alias("split")).write_parquet(
        tmp_path / "l" / "b2.parquet"
    )
    with pytest.raises(InputSchemaError, match="'test'"):
        build_features(tmp_path / "l" / "b2.parquet", events_dir, tmp_path / "o", small_config)
    pl.read_parquet(labels_path).with_columns(pl.lit("held_out").alias("split")).write_parquet(
        tmp_path / "l" / "b3.parquet"
    )
    with pytest.raises(CohortError, match="train"):
        build_features(tmp_path / "l" / "b3.parquet", events_dir, tmp_path / "o", small_config)
    write_labels([], tmp_path / "l" / "b4.parquet")
    with pytest.raises(CohortError, match="no rows"):
        build_features(tmp_path / "l" / "b4.parquet", events_dir, tmp_path / "o", small_config)
    assert not (tmp_path / "o").exists()


def test_config_is_strict():
    from pydantic import ValidationError

    assert FeaturesConfig().modalities == ["codes", "labs", "medications", "notes"]
    with pytest.raises(ValidationError):
        FeaturesConfig.model_validate({"codes": {"weightin": "tfidf"}})
    with pytest.raises(ValidationError):
        FeaturesConfig.model_validate({"modalities": ["codes", "vitals"]})
    with pytest.raises(ValidationError):
        FeaturesConfig.model_validate({"notes": {"encoder": "bert"}})


def test_cohort_yaml_lookback_is_applied(tmp_path, small_config):
    events, labels = base_dataset()
    events_dir = write_events(events, tmp_path / "events")
    labels_path = write_labels(labels, tmp_path / "cohort" / "labels.parquet")
    spec = (REPO / "cohorts" / "in_hospital_mortality.yaml").read_text()
    assert "  lookback: all\n" in spec
    (tmp_path / "cohort" / "cohort.yaml").write_text(spec.replace("  lookback: all\n", "  lookback: 10d\n"))
    cfg = small_config.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    summary = build_features(labels_path, events_dir, tmp_path / "out", cfg, progress=False)
    assert summary["lookback_days"] == 10.0
    mask = pl.read_parquet(tmp_path / "out" / "mask.parquet")
    assert not mask["codes"].any() and mask["medications"].all()
    (tmp_path / "cohort" / "cohort.yaml").write_text(spec)
    summary = build_features(labels_path, events_dir, tmp_path / "out", cfg, progress=False)
    assert summary["lookback_days"] is None
    assert pl.read_parquet(tmp_path / "out" / "mask.parquet")["codes"].all()


def test_join_batching_does_not_change_outputs(tmp_path, small_config):
    events, labels = base_dataset(held_out_variant=3)
    labels += second_prediction_rows()
    out_a, _ = _run(tmp_path, events, labels, small_config, "a")
    out_b, _ = _run(tmp_path, events, labels, small_config.model_copy(update={"join_batch_rows": 1}), "b")
    for name in ("codes", "labs", "medications", "notes", "mask", "provenance"):
        assert _read(out_a, name).equals(_read(out_b, name)), name


def test_a_failing_run_leaves_the_previous_output_intact(tmp_path, small_config, monkeypatch):
    events, labels = base_dataset()
    out, _ = _run(tmp_path, events, labels, small_config, "o")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while building notes")

    monkeypatch.setattr("pipeline.features.build.build_notes", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        _run(tmp_path, events, labels, small_config, "o")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.")] == []


def test_events_without_time_are_counted_not_silently_dropped(tmp_path, small_config, caplog):
    events, labels = base_dataset()
    events.append(ev(4, None, "MEDICATION//Heparin"))
    with caplog.at_level(logging.WARNING):
        _, summary = _run(tmp_path, events, labels, small_config)
    assert summary["modalities"]["medications"]["n_events_without_time_excluded"] == 1
    assert summary["modalities"]["labs"]["n_events_without_time_excluded"] == 0
    assert "no time" in caplog.text


def test_tfidf_encoder_saved_by_term_hashes_gives_the_same_vectors():
    """A TF-IDF encoder restored from fitted.json (hashes, idf, SVD) encodes as the fitted one, keeping no word."""
    import numpy as np

    from pipeline.features.text_encoders import TfidfSVDEncoder

    train = [f"patient {w} stable after {v} dose of heparin" for w in ("alpha", "beta", "gamma") for v in ("low", "high")]
    fitted = TfidfSVDEncoder(dims=3, random_state=0).fit(train)
    meta, arrays = fitted.get_state()
    assert "heparin" not in str(meta)
    restored = TfidfSVDEncoder(dims=3).set_state(meta, arrays)
    texts = ["heparin dose high, patient stable", "unknown words only", "alpha beta alpha heparin"]
    np.testing.assert_allclose(restored.encode(texts), fitted.encode(texts), rtol=1e-5, atol=1e-6)
    assert restored.name == fitted.name

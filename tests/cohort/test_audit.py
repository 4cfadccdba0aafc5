"""The leakage audit: planted violations are caught; clean inputs pass."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from pipeline.audit import audit
from pipeline.cohort import build_cohort
from pipeline.exceptions import LeakageError, MissingInputError

from .conftest import MORTALITY_YAML, READMISSION_YAML, write_events, write_yaml
from .test_build import MORTALITY_PATIENTS, READMISSION_PATIENTS


@pytest.fixture
def cohort(tmp_path):
    events = write_events(tmp_path / "events", MORTALITY_PATIENTS)
    cfg = write_yaml(tmp_path / "mortality.yaml", MORTALITY_YAML)
    build_cohort(cfg, events, tmp_path / "cohort")
    return tmp_path / "cohort" / "labels.parquet", events


def _features(
    folder, labels: pl.DataFrame, shift: dict[int, timedelta] | None = None, modalities=("labs", "codes")
):
    """A provenance/mask pair as `features` writes it: max_time one hour before each prediction time."""
    folder.mkdir(parents=True, exist_ok=True)
    pred = labels["prediction_time"]
    cols = {"subject_id": labels["subject_id"], "prediction_time": pred}
    for m in modalities:
        max_time = pred - timedelta(hours=1)
        if shift and m == "labs":
            max_time = pl.Series(
                [t + shift[i] if i in shift else t - timedelta(hours=1) for i, t in enumerate(pred)],
                dtype=pl.Datetime("us"),
            )
        cols[f"{m}__max_time"] = max_time
        cols[f"{m}__n_events"] = pl.Series([3] * labels.height, dtype=pl.Int64)
    pl.DataFrame(cols).write_parquet(folder / "provenance.parquet")
    pl.DataFrame({m: [True] * labels.height for m in modalities}).write_parquet(folder / "mask.parquet")
    return folder


def test_clean_cohort_passes(tmp_path, cohort):
    labels_path, events = cohort
    labels = pl.read_parquet(labels_path)
    summary = audit(labels_path, _features(tmp_path / "feat", labels), events)
    assert summary["rows"] == labels.height == 4
    assert set(summary["modalities"]) == {"labs", "codes"}
    assert "no death at or before prediction_time" in summary["checks"]
    assert "index discharge after prediction_time" in summary["checks"]
    assert not any(p.name.startswith(".") for p in (tmp_path / "feat").iterdir())  # audit writes nothing


def test_event_one_second_after_prediction_is_caught(tmp_path, cohort):
    labels_path, _ = cohort
    labels = pl.read_parquet(labels_path)
    feat = _features(tmp_path / "feat", labels, shift={2: timedelta(seconds=1)})
    with pytest.raises(LeakageError) as info:
        audit(labels_path, feat)
    msg = str(info.value)
    assert "labs__max_time" in msg and "1 row(s) (row numbers 2)" in msg and "0:00:01" in msg
    assert "\n" not in msg
    # an event exactly at the prediction time is allowed
    audit(labels_path, _features(tmp_path / "feat2", labels, shift={2: timedelta(0)}))


def test_misaligned_rows_are_caught(tmp_path, cohort):
    labels_path, _ = cohort
    labels = pl.read_parquet(labels_path)
    feat = _features(tmp_path / "feat", labels.reverse())
    with pytest.raises(LeakageError, match="not row-aligned"):
        audit(labels_path, feat)
    feat = _features(tmp_path / "feat3", labels.head(3))
    with pytest.raises(LeakageError, match="3 provenance rows"):
        audit(labels_path, feat)


def test_subject_in_two_splits(tmp_path, cohort):
    labels_path, _ = cohort
    labels = pl.read_parquet(labels_path)
    first = 987654321  # a recognisable id, which must not appear in the message
    labels = labels.with_columns(
        pl.when(pl.col("subject_id") == labels["subject_id"][0])
        .then(first)
        .otherwise(pl.col("subject_id"))
        .alias("subject_id")
    )
    other = "train" if labels["split"][0] != "train" else "held_out"
    bad = pl.concat([labels, labels.head(1).with_columns(pl.lit(other).alias("split"))]).sort("subject_id")
    bad_path = tmp_path / "bad" / "labels.parquet"
    bad_path.parent.mkdir()
    bad.write_parquet(bad_path)
    with pytest.raises(LeakageError, match=r"split: 1 subject\(s\) appear in more than one split") as info:
        audit(bad_path, None)
    assert str(first) not in str(info.value)


def test_label_event_inside_input_window_from_labels(tmp_path, cohort):
    labels_path, _ = cohort
    labels = pl.read_parquet(labels_path)
    bad = labels.with_columns(
        pl.when(pl.col("boolean_value"))
        .then(-0.5)
        .otherwise(pl.col("event_time_days"))
        .alias("event_time_days")
    )
    path = tmp_path / "bad" / "labels.parquet"
    path.parent.mkdir()
    bad.write_parquet(path)
    with pytest.raises(LeakageError, match="event_time_days: 2 row"):
        audit(path, None)


def test_death_inside_input_window_from_events(tmp_path, cohort):
    """A prediction moved after the death is caught from the raw events, even when the labels look fine."""
    labels_path, events = cohort
    labels = pl.read_parquet(labels_path)
    moved = labels.with_columns(
        pl.when(pl.col("hadm_id") == 21)
        .then(pl.col("prediction_time") + timedelta(days=2))
        .otherwise(pl.col("prediction_time"))
        .alias("prediction_time"),
        pl.when(pl.col("hadm_id") == 21)
        .then(1.0)
        .otherwise(pl.col("event_time_days"))
        .alias("event_time_days"),
    )
    path = tmp_path / "bad" / "labels.parquet"
    path.parent.mkdir()
    moved.write_parquet(path)
    audit(path, None)  # labels alone cannot see it
    with pytest.raises(LeakageError, match="MEDS_DEATH event at or before prediction_time"):
        audit(path, None, events)


def test_discharge_inside_input_window_from_events(tmp_path, cohort):
    labels_path, events = cohort
    labels = pl.read_parquet(labels_path)
    moved = labels.with_columns(
        pl.when(pl.col("hadm_id") == 11)
        .then(pl.col("prediction_time") + timedelta(days=8))
        .otherwise(pl.col("prediction_time"))
        .alias("prediction_time")
    )
    (tmp_path / "cohort" / "labels.parquet").unlink()
    moved.write_parquet(labels_path)  # beside cohort.yaml, so the audit knows the outcome is mortality
    with pytest.raises(LeakageError, match="index stay's discharge"):
        audit(labels_path, None, events)


def test_readmission_inside_input_window_from_events(tmp_path):
    events = write_events(tmp_path / "events", READMISSION_PATIENTS)
    build_cohort(write_yaml(tmp_path / "readm.yaml", READMISSION_YAML), events, tmp_path / "c")
    labels_path = tmp_path / "c" / "labels.parquet"
    assert "readmission after prediction_time" in audit(labels_path, None, events)["checks"]
    labels = pl.read_parquet(labels_path)
    moved = labels.with_columns(
        pl.when(pl.col("hadm_id") == 1011)
        .then(pl.col("prediction_time") + timedelta(days=11))
        .otherwise(pl.col("prediction_time"))
        .alias("prediction_time")
    )
    moved.write_parquet(labels_path)
    with pytest.raises(LeakageError, match="readmission that defines the label"):
        audit(labels_path, None, events)


def test_missing_inputs(tmp_path, cohort):
    labels_path, _ = cohort
    with pytest.raises(MissingInputError, match="ehr-hcl features"):
        audit(labels_path, tmp_path / "nofeatures")
    with pytest.raises(MissingInputError, match="ehr-hcl cohort"):
        audit(tmp_path / "none" / "labels.parquet", None)


def test_planted_event_never_reaches_features(tmp_path):
    """End to end with the features stage: an event 1 s after a prediction time is not used."""
    build = pytest.importorskip("pipeline.features.build")
    from .conftest import Patient, Stay

    patients = [
        Patient(
            1,
            stays=[Stay(11, "2150-01-01T00:00", "2150-01-10T00:00")],
            extra=[("2150-01-03T00:00:01", "LAB//50912//mg/dL", 11)],
        ),  # 1 s after the prediction time
        Patient(
            2,
            stays=[Stay(21, "2150-02-01T00:00", "2150-02-04T00:00", location="DIED")],
            death="2150-02-04T00:00",
            death_hadm=21,
        ),
    ]
    events = write_events(tmp_path / "events", patients)
    text = MORTALITY_YAML + "split: {fractions: [1.0, 0.0, 0.0]}\n"
    build_cohort(write_yaml(tmp_path / "m.yaml", text), events, tmp_path / "c")
    labels_path = tmp_path / "c" / "labels.parquet"
    config = build.FeaturesConfig(modalities=["labs"], labs=build.LabsConfig(min_count=1))
    build.build_features(labels_path, events, tmp_path / "f", config, progress=False)
    prov = pl.read_parquet(tmp_path / "f" / "provenance.parquet")
    labels = pl.read_parquet(labels_path)
    assert (prov["labs__max_time"] <= labels["prediction_time"]).all()
    assert prov["labs__n_events"].to_list() == [1, 1]  # only the admission-time lab of each stay
    audit(labels_path, tmp_path / "f", events)
    # forced in: the planted event's time written into the provenance is caught
    forced = prov.with_columns(
        pl.when(pl.col("subject_id") == 1)
        .then(pl.col("prediction_time") + timedelta(seconds=1))
        .otherwise(pl.col("labs__max_time"))
        .alias("labs__max_time")
    )
    forced.write_parquet(tmp_path / "f" / "provenance.parquet")
    with pytest.raises(LeakageError, match="labs__max_time"):
        audit(labels_path, tmp_path / "f", events)


def test_events_without_times_cannot_hide(tmp_path, cohort):
    labels_path, _ = cohort
    labels = pl.read_parquet(labels_path)
    feat = _features(tmp_path / "feat", labels)
    prov = pl.read_parquet(feat / "provenance.parquet")
    prov = prov.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(None)
        .otherwise(pl.col("codes__max_time"))
        .alias("codes__max_time")
    )
    prov.write_parquet(feat / "provenance.parquet")
    with pytest.raises(
        LeakageError, match=r"codes__max_time: 1 row\(s\) \(row numbers 1\) have codes__n_events > 0"
    ):
        audit(labels_path, feat)

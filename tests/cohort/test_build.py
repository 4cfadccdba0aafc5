"""Cohort building on hand-made MEDS events: labels, time-to-event, competing events, censoring, attrition."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.cohort import build_cohort, compute_labels, format_attrition, load_spec, parse_spec
from pipeline.events import read_events
from pipeline.exceptions import CohortError, ConfigError, InputSchemaError, MissingInputError
from pipeline.schema import LABEL_COLUMNS
from pipeline.splits import assign_splits

from .conftest import MORTALITY_YAML, READMISSION_YAML, Patient, Stay, write_events, write_yaml

DATA_END = Patient(99, stays=[], extra=[("2190-01-01T00:00", "LAB//1//x", None)])

MORTALITY_PATIENTS = [
    Patient(1, stays=[Stay(11, "2150-01-01T00:00", "2150-01-10T00:00")]),
    Patient(
        2,
        stays=[Stay(21, "2150-02-01T00:00", "2150-02-04T00:00", location="DIED")],
        death="2150-02-04T00:00",
        death_hadm=21,
    ),
    Patient(3, birth_year=2140, stays=[Stay(31, "2150-01-01T00:00", "2150-01-10T00:00")]),  # a child
    Patient(4, stays=[Stay(41, "2150-01-01T00:00", "2150-01-02T00:00")]),  # discharged before 48 h
    Patient(
        5,
        stays=[Stay(51, "2150-01-01T00:00", "2150-01-02T06:00", location="DIED")],
        death="2150-01-02T06:00",
        death_hadm=51,
    ),  # died before 48 h
    Patient(6, stays=[Stay(61, "2150-01-01T00:00", None)]),  # no discharge recorded
    # death recorded 10 h after the discharge-to-DIED: the in-hospital death is clipped to the discharge
    Patient(
        7,
        stays=[Stay(71, "2150-03-01T00:00", "2150-03-05T00:00", location="DIED", insurance=None)],
        death="2150-03-05T10:00",
        death_hadm=71,
    ),
    # died at home after discharge: not an in-hospital death
    Patient(8, sex="M", stays=[Stay(81, "2150-04-01T00:00", "2150-04-06T00:00")], death="2150-04-20T00:00"),
    DATA_END,
]
MORTALITY_EXPECTED = {
    (1, 11): (False, "competing", 7.0),
    (2, 21): (True, "outcome", 1.0),
    (7, 71): (True, "outcome", 2.0),
    (8, 81): (False, "competing", 3.0),
}

READMISSION_PATIENTS = [
    Patient(
        101,
        stays=[
            Stay(1011, "2150-01-01T00:00", "2150-01-10T00:00"),
            Stay(1012, "2150-01-20T00:00", "2150-01-25T00:00"),
        ],
    ),
    Patient(
        102,
        stays=[
            Stay(1021, "2150-01-01T00:00", "2150-01-02T00:00"),
            Stay(
                1022, "2150-01-07T00:00", "2150-01-09T00:00", admission_type="ELECTIVE"
            ),  # planned: not counted
            Stay(1023, "2150-03-01T00:00", "2150-03-05T00:00"),
        ],
    ),
    Patient(103, stays=[Stay(1031, "2150-01-01T00:00", "2150-01-10T00:00")], death="2150-01-20T00:00"),
    Patient(
        104,
        stays=[
            Stay(1041, "2150-01-01T00:00", "2150-01-10T00:00"),
            Stay(1042, "2150-01-15T00:00", "2150-01-18T00:00"),
        ],
        death="2150-01-25T00:00",
    ),
    Patient(
        105,
        stays=[Stay(1051, "2150-01-01T00:00", "2150-01-05T00:00", location="DIED")],
        death="2150-01-05T00:00",
        death_hadm=1051,
    ),
    Patient(106, stays=[Stay(1061, "2189-12-10T00:00", "2189-12-20T00:00")]),  # 12 days of follow-up left
    Patient(
        107,
        stays=[
            Stay(1071, "2150-01-01T00:00", "2150-01-10T12:00"),
            Stay(1072, "2150-01-10T12:00", "2150-01-12T00:00"),
        ],
    ),
    Patient(108, birth_year=2140, stays=[Stay(1081, "2150-01-01T00:00", "2150-01-10T00:00")]),
    DATA_END,
]
READMISSION_EXPECTED = {
    (101, 1011): (True, "outcome", 10.0),
    (101, 1012): (False, "censored", 30.0),
    (102, 1021): (False, "censored", 30.0),  # the elective stay 5 days later does not count
    (102, 1022): (False, "censored", 30.0),
    (102, 1023): (False, "censored", 30.0),
    (103, 1031): (False, "competing", 10.0),  # death before any readmission
    (104, 1041): (True, "outcome", 5.0),  # readmitted, then died: the readmission came first
    (104, 1042): (False, "competing", 7.0),
    (107, 1072): (False, "censored", 30.0),
}


def _labels_dict(labels: pl.DataFrame) -> dict:
    return {
        (r["subject_id"], r["hadm_id"]): (r["boolean_value"], r["event_type"], round(r["event_time_days"], 9))
        for r in labels.iter_rows(named=True)
    }


def _build(tmp_path, patients, yaml_text, name="task"):
    events = write_events(tmp_path / "events", patients)
    cfg = write_yaml(tmp_path / f"{name}.yaml", yaml_text)
    summary = build_cohort(cfg, events, tmp_path / "out")
    return summary, pl.read_parquet(tmp_path / "out" / "labels.parquet")


def test_mortality_labels(tmp_path):
    summary, labels = _build(tmp_path, MORTALITY_PATIENTS, MORTALITY_YAML)
    assert _labels_dict(labels) == MORTALITY_EXPECTED
    assert summary["rows"] == 4 and summary["positives"] == 2
    att = {r["criterion"]: r["excluded"] for r in summary["attrition"]}
    assert att["discharge recorded after admission"] == 1  # subject 6
    assert att["age at admission >= 18"] == 1  # subject 3
    assert att["alive at prediction time"] == 1  # subject 5
    assert att["still admitted at prediction time"] == 1  # subject 4
    row7 = labels.filter(pl.col("hadm_id") == 71).row(0, named=True)
    assert row7["insurance"] is None and row7["sex"] == "F" and row7["age_band"] == "40-64"
    assert labels.filter(pl.col("subject_id") == 8)["sex"].item() == "M"
    assert labels["prediction_time"][0] == datetime(2150, 1, 3)


def test_readmission_competing(tmp_path):
    summary, labels = _build(tmp_path, READMISSION_PATIENTS, READMISSION_YAML)
    assert _labels_dict(labels) == READMISSION_EXPECTED
    att = {r["criterion"]: r["excluded"] for r in summary["attrition"]}
    assert att["alive at prediction time"] == 1  # 105 died in hospital
    assert (
        att["no label-defining event at or before prediction time"] == 1
    )  # 1071: readmitted at discharge time
    assert att["follow-up covers the outcome window"] == 1  # 1061
    assert att["age at admission >= 18"] == 1


def test_readmission_competing_death_excluded(tmp_path):
    text = READMISSION_YAML.replace("competing_death: competing", "competing_death: exclude")
    summary, labels = _build(tmp_path, READMISSION_PATIENTS, text)
    expected = {k: v for k, v in READMISSION_EXPECTED.items() if v[1] != "competing"}
    assert _labels_dict(labels) == expected
    crit = [r for r in summary["attrition"] if "competing_death: exclude" in r["criterion"]]
    assert len(crit) == 1 and crit[0]["excluded"] == 2


def test_readmission_censoring_kept(tmp_path):
    text = READMISSION_YAML.replace("insufficient_followup: exclude", "insufficient_followup: censor")
    _, labels = _build(tmp_path, READMISSION_PATIENTS, text)
    assert _labels_dict(labels) == {**READMISSION_EXPECTED, (106, 1061): (False, "censored", 12.0)}


def test_censoring_fixed_end_date(tmp_path):
    """With follow-up ending on a fixed date, an outcome after it is not seen and the row is censored."""
    text = READMISSION_YAML.replace(
        "end_of_followup: dataset_end, insufficient_followup: exclude",
        "end_of_followup: 2150-01-15, insufficient_followup: censor",
    )
    _, labels = _build(tmp_path, READMISSION_PATIENTS, text)
    got = _labels_dict(labels)
    assert got[(101, 1011)] == (False, "censored", 5.0)  # readmitted on 01-20, after follow-up ended
    assert got[(103, 1031)] == (False, "censored", 5.0)  # death on 01-20 not seen either
    assert (101, 1012) not in got  # prediction time after the end of follow-up


def test_censoring_subject_last_event(tmp_path):
    text = READMISSION_YAML.replace("end_of_followup: dataset_end", "end_of_followup: subject_last_event")
    summary, labels = _build(tmp_path, READMISSION_PATIENTS, text)
    got = _labels_dict(labels)
    # 101's last event is the discharge of 1012: 1012 has no follow-up after its prediction time -> excluded
    assert (101, 1012) not in got and got[(101, 1011)] == (True, "outcome", 10.0)
    assert (103, 1031) in got  # the death is the last event and lies in the window


def test_outputs_and_schema(tmp_path):
    events = write_events(tmp_path / "events", READMISSION_PATIENTS)
    cfg = write_yaml(tmp_path / "readm.yaml", READMISSION_YAML)
    summary = build_cohort(cfg, events, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "aces.yaml",
        "attrition.json",
        "cohort.yaml",
        "labels.parquet",
        "meds_labels.parquet",
        "splits.json",
    ]
    assert json.loads((out / "splits.json").read_text())["source"] == "keyed_hash"
    assert summary["split_source"] == "keyed_hash"
    table = pq.read_table(out / "labels.parquet")
    assert table.schema.names == list(LABEL_COLUMNS)
    for name, dtype in LABEL_COLUMNS.items():
        assert table.schema.field(name).type == dtype, name
    labels = pl.read_parquet(out / "labels.parquet")
    assert labels.equals(labels.sort("subject_id", "prediction_time"))
    # attrition: ordered list, each step's before == previous after, excluded = before - after
    att = json.loads((out / "attrition.json").read_text())
    assert isinstance(att, list) and att[0]["before"] == 13
    for prev, cur in zip(att[:-1], att[1:], strict=True):
        assert cur["before"] == prev["after"] and cur["excluded"] == cur["before"] - cur["after"]
    assert att[-1]["after"] == summary["rows"] == labels.height
    # normalised spec reads back to the same definition
    assert parse_spec(yaml.safe_load((out / "cohort.yaml").read_text())) == load_spec(cfg)
    assert summary["name"] == "readm"
    assert sum(summary["splits"].values()) == labels.height


def test_splits_by_subject(tmp_path):
    text = READMISSION_YAML + "split: {fractions: [0.5, 0.25, 0.25], seed: 7}\n"
    _, labels = _build(tmp_path, READMISSION_PATIENTS, text)
    per_subject = labels.group_by("subject_id").agg(pl.col("split").n_unique())
    assert per_subject["split"].max() == 1
    subjects = labels["subject_id"].unique().sort()
    expected = dict(
        zip(subjects.to_list(), assign_splits(subjects.to_numpy(), (0.5, 0.25, 0.25), 7), strict=True)
    )
    assert all(expected[s] == sp for s, sp in labels.select("subject_id", "split").iter_rows())


def test_population_criteria(tmp_path):
    patients = [
        Patient(
            1,
            stays=[
                Stay(11, "2150-01-01T00:00", "2150-01-10T00:00", admission_type="URGENT"),
                Stay(12, "2150-02-01T00:00", "2150-02-10T00:00", location="DIED"),
            ],
            death="2150-02-09T00:00",
            death_hadm=12,
        ),
        Patient(2, stays=[Stay(21, "2150-01-01T00:00", "2150-01-04T00:00", admission_type="ELECTIVE")]),
        Patient(
            3,
            stays=[Stay(31, "2150-01-01T00:00", "2150-01-20T00:00")],
            extra=[("2149-06-01T00:00", "DIAGNOSIS//ICD//10//Z515", None)],
        ),  # excluded (in lookback)
        Patient(
            4,
            stays=[Stay(41, "2150-01-01T00:00", "2150-01-20T00:00")],
            extra=[("2150-01-15T00:00", "DIAGNOSIS//ICD//10//Z515", 41)],
        ),  # after prediction: not excluded
        Patient(
            5,
            stays=[Stay(51, "2150-01-01T00:00", "2150-01-20T00:00")],
            extra=[("2140-01-01T00:00", "DIAGNOSIS//ICD//10//Z515", None)],
        ),  # before the 365d lookback
        Patient(
            6,
            stays=[Stay(61, "2150-01-01T00:00", "2150-01-20T00:00", location="DIED")],
            death="2150-01-10T00:00",
            death_hadm=61,
        ),
        DATA_END,
    ]
    base = """\
population:
  min_age: 18
  in_hospital_at_prediction: true
  admission_types: {exclude: [ELECTIVE]}
  min_stay: 5d
  exclusions: [{name: palliative, codes: ["DIAGNOSIS//ICD//10//Z51"], lookback: 365d}]
  admissions_per_subject: first
prediction: {index_event: admission, offset: 48h}
outcome: {type: death_before_discharge}
"""
    summary, labels = _build(tmp_path, patients, base)
    assert set(_labels_dict(labels)) == {(1, 11), (4, 41), (5, 51), (6, 61)}
    att = {r["criterion"]: r["excluded"] for r in summary["attrition"]}
    assert att["admission type not in ['ELECTIVE']"] == 1
    assert att["exclusion 'palliative' (365d before)"] == 1
    assert att["first eligible stay per subject"] == 1  # stay 12 of subject 1
    assert _labels_dict(labels)[(6, 61)] == (True, "outcome", 7.0)  # the linked death time, not the discharge
    assert "min_stay" not in att and att["length of stay >= 5d"] == 0


def test_min_history(tmp_path):
    patients = [
        Patient(
            1,
            stays=[Stay(11, "2150-01-01T00:00", "2150-01-10T00:00")],
            extra=[("2149-01-01T00:00", "LAB//1//x", None)],
        ),
        Patient(
            2,
            stays=[Stay(21, "2150-01-01T00:00", "2150-01-10T00:00", location="DIED")],
            death="2150-01-09T00:00",
            death_hadm=21,
        ),
        DATA_END,
    ]
    text = MORTALITY_YAML.replace(
        "in_hospital_at_prediction: true", "in_hospital_at_prediction: true, min_history: 30d"
    )
    with pytest.raises(CohortError, match="single class"):
        _build(tmp_path, patients, text)
    text = text.replace("min_history: 30d", "min_history: 47h")
    _, labels = _build(tmp_path, patients, text)
    assert labels.height == 2


def test_empty_cohort_shows_attrition(tmp_path):
    events = write_events(tmp_path / "events", MORTALITY_PATIENTS)
    cfg = write_yaml(tmp_path / "old.yaml", MORTALITY_YAML.replace("min_age: 18", "min_age: 120"))
    with pytest.raises(CohortError) as info:
        build_cohort(cfg, events, tmp_path / "out")
    msg = str(info.value)
    assert str(cfg) in msg and "empty" in msg and "age at admission >= 120: 7 -> 0" in msg and "\n" not in msg
    assert "population.min_age = 120" in msg
    assert not (tmp_path / "out").exists()  # nothing written for a failed stage


def test_single_class_label(tmp_path):
    patients = [p for p in MORTALITY_PATIENTS if p.subject_id not in (2, 7)]
    events = write_events(tmp_path / "events", patients)
    cfg = write_yaml(tmp_path / "m.yaml", MORTALITY_YAML)
    with pytest.raises(CohortError) as info:
        build_cohort(cfg, events, tmp_path / "out")
    msg = str(info.value)
    assert str(cfg) in msg and "outcome" in msg and "single class (0 positive of 2 rows)" in msg


def test_missing_events(tmp_path):
    cfg = write_yaml(tmp_path / "m.yaml", MORTALITY_YAML)
    with pytest.raises(MissingInputError, match="ingest"):
        build_cohort(cfg, tmp_path / "nowhere", tmp_path / "out")


def test_events_without_hadm_id(tmp_path):
    (tmp_path / "ev" / "data").mkdir(parents=True)
    pl.DataFrame({"subject_id": [1], "time": [datetime(2150, 1, 1)], "code": ["X"]}).write_parquet(
        tmp_path / "ev" / "data" / "0.parquet"
    )
    with pytest.raises(InputSchemaError, match="'hadm_id'"):
        read_events(tmp_path / "ev", require=("hadm_id",))
    # a reader that can do without it gets typed nulls
    assert read_events(tmp_path / "ev").collect()["hadm_id"].null_count() == 1


def test_format_attrition():
    text = format_attrition(
        [
            {"criterion": "all", "before": 10, "after": 10, "excluded": 0},
            {"criterion": "adults", "before": 10, "after": 7, "excluded": 3},
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["criterion", "before", "after", "excluded"]
    assert lines[-1].split() == ["adults", "10", "7", "3"]


def test_aces_export(tmp_path):
    _build(tmp_path, READMISSION_PATIENTS, READMISSION_YAML)
    text = (tmp_path / "out" / "aces.yaml").read_text()
    aces = yaml.safe_load(text)
    assert aces["trigger"] == "discharge"
    assert aces["windows"]["input"]["index_timestamp"] == "end"
    assert aces["windows"]["target"]["end"] == "start + 30d"
    assert aces["windows"]["target"]["label"] == "readmission"
    assert aces["predicates"]["readmission"]["code"]["regex"] == r"^HOSPITAL_ADMISSION//(EW EMER\.)$"
    assert "age at admission >= 18" in text.split("description")[0]  # the not-expressible comment


def test_aces_export_mortality(tmp_path):
    _build(tmp_path, MORTALITY_PATIENTS, MORTALITY_YAML + "history: {lookback: 365d}\n")
    aces = yaml.safe_load((tmp_path / "out" / "aces.yaml").read_text())
    assert aces["trigger"] == "index_admission"
    assert aces["windows"]["input"] == {
        "start": "end - 365d",
        "end": "trigger + 48h",
        "start_inclusive": True,
        "end_inclusive": True,
        "index_timestamp": "end",
    }
    assert aces["windows"]["gap"]["has"] == {"discharge_or_death": "(None, 0)"}
    assert aces["windows"]["target"]["label"] == "death"


# --- a seeded generator with known truth --------------------------------------------------------------


def _simulate(seed: int, n: int):
    """Random patients whose labels are known by construction (independent of the cohort code)."""
    rng = random.Random(seed)
    patients, mort_truth, readm_truth = [], {}, {}
    for sid in range(1, n + 1):
        t = datetime(2150, 1, 1) + timedelta(days=rng.randint(0, 300))
        stays, death, death_hadm = [], None, None
        k = rng.randint(1, 4)
        for j in range(k):
            hadm = sid * 10 + j
            los = timedelta(hours=rng.randint(12, 24 * 12))
            atype = rng.choice(["EW EMER.", "URGENT", "ELECTIVE"])
            dies = j == k - 1 and rng.random() < 0.3
            stays.append(
                Stay(
                    hadm,
                    t.isoformat(),
                    (t + los).isoformat(),
                    admission_type=atype,
                    location="DIED" if dies else "HOME",
                )
            )
            if dies:
                death, death_hadm = (t + los).isoformat(), hadm
            if los > timedelta(hours=48):
                mort_truth[(sid, hadm)] = dies
            t = t + los + timedelta(days=rng.choice([1, 5, 20, 29, 31, 45, 90]), hours=rng.randint(1, 20))
        for j, s in enumerate(stays):
            if s.location == "DIED":
                continue
            disch = datetime.fromisoformat(s.disch)
            later = [
                datetime.fromisoformat(x.admit) for x in stays[j + 1 :] if x.admission_type != "ELECTIVE"
            ]
            readm_truth[(sid, s.hadm_id)] = bool(later) and later[0] - disch <= timedelta(days=30)
        patients.append(Patient(sid, stays=stays, death=death, death_hadm=death_hadm))
    return patients + [DATA_END], mort_truth, readm_truth


@pytest.mark.parametrize("seed", [0, 1])
def test_labels_match_generator_truth(tmp_path, seed):
    patients, mort_truth, readm_truth = _simulate(seed, 60)
    events = read_events(write_events(tmp_path / "events", patients))
    mort, _ = compute_labels(parse_spec(yaml.safe_load(MORTALITY_YAML)), events)
    assert (
        dict(zip(zip(mort["subject_id"], mort["hadm_id"], strict=True), mort["boolean_value"], strict=True))
        == mort_truth
    )
    readm_spec = parse_spec(yaml.safe_load(READMISSION_YAML))
    readm, att = compute_labels(readm_spec, events)
    assert (
        dict(
            zip(zip(readm["subject_id"], readm["hadm_id"], strict=True), readm["boolean_value"], strict=True)
        )
        == readm_truth
    )
    assert 0.1 < readm["boolean_value"].mean() < 0.9 and 0.05 < mort["boolean_value"].mean() < 0.9


def test_rerun_swaps_folder_and_keeps_foreign_files(tmp_path):
    events = write_events(tmp_path / "events", READMISSION_PATIENTS)
    cfg = write_yaml(tmp_path / "readm.yaml", READMISSION_YAML)
    out = tmp_path / "out"
    build_cohort(cfg, events, out)
    first = (out / "labels.parquet").read_bytes()
    build_cohort(cfg, events, out)  # deterministic rerun, folder swapped whole
    assert (out / "labels.parquet").read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["aces.yaml", "attrition.json", "cohort.yaml", "labels.parquet", "meds_labels.parquet", "splits.json"]
    )
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("keep me")
    build_cohort(cfg, events, shared)  # a folder with other files is never replaced
    assert (shared / "notes.txt").read_text() == "keep me" and (shared / "labels.parquet").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        build_cohort(cfg, events, tmp_path / "afile")

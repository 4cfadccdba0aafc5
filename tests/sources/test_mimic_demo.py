"""Ingest of the real MIMIC-IV demo: counts, availability times, MEDS validity, MEDS round trip."""

from __future__ import annotations

import json

import polars as pl
import pytest

from pipeline.events import read_events
from pipeline.ingest import IngestConfig, ingest
from pipeline.schema import EVENTS_SCHEMA, SPLITS

pytestmark = pytest.mark.mimic


@pytest.fixture(scope="module")
def demo_events(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "events"
    summary = ingest("mimic-iv", demo_dir, out, IngestConfig(shard_size=30), progress=False)
    return out, summary


def _raw(demo_dir, table):
    return pl.read_csv(demo_dir / "hosp" / f"{table}.csv.gz", infer_schema=False)


def test_counts(demo_events):
    out, summary = demo_events
    ev = read_events(out).collect()
    assert summary["subjects"] == 100 and ev["subject_id"].n_unique() == 100
    assert summary["admissions"] == 275
    adm = ev.filter(pl.col("code").str.starts_with("HOSPITAL_ADMISSION//"))
    assert adm.height == 275 and adm["hadm_id"].n_unique() == 275
    assert summary["rejects_total"] == 0
    assert set(summary["absent_tables"]) == {"note/discharge", "note/radiology"}


def test_diagnoses_at_discharge_time(demo_events, demo_dir):
    out, _ = demo_events
    ev = read_events(out).collect()
    dx = ev.filter(pl.col("code").str.starts_with("DIAGNOSIS//"))
    assert dx.height == _raw(demo_dir, "diagnoses_icd").height
    disch = _raw(demo_dir, "admissions").select(
        pl.col("hadm_id").cast(pl.Int64), dischtime=pl.col("dischtime").str.to_datetime(time_unit="us")
    )
    joined = dx.join(disch, on="hadm_id", how="left")
    assert joined["dischtime"].null_count() == 0
    assert (joined["time"] == joined["dischtime"]).all()
    # and the discharge-stamped codes are strictly after the admission start
    admit = ev.filter(pl.col("code").str.starts_with("HOSPITAL_ADMISSION//")).select("hadm_id", admit="time")
    assert (dx.join(admit, on="hadm_id")["time"] > dx.join(admit, on="hadm_id")["admit"]).all()


def test_labs_at_or_after_charttime(demo_events, demo_dir):
    out, _ = demo_events
    ev = read_events(out).filter(pl.col("code").str.starts_with("LAB//")).collect()
    raw = _raw(demo_dir, "labevents").select(
        subject_id=pl.col("subject_id").cast(pl.Int64),
        itemid=pl.col("itemid"),
        chart=pl.col("charttime").str.to_datetime(time_unit="us"),
        store=pl.col("storetime").str.to_datetime(time_unit="us"),
    )
    assert ev.height == raw.height
    # events of one (subject, item) sorted by time vs raw rows sorted the same way: pair them up
    ev_k = ev.select("subject_id", "time", itemid=pl.col("code").str.split("//").list.get(1)).sort(
        "subject_id", "itemid", "time"
    )
    raw_k = raw.with_columns(expected=pl.max_horizontal("chart", "store")).sort(
        "subject_id", "itemid", "expected"
    )
    assert (ev_k["time"] == raw_k["expected"]).all()
    assert (ev_k["time"] >= raw_k["chart"]).all()
    # storetime is used when present: most labs are stamped strictly after their charttime
    assert (ev_k["time"] > raw_k["chart"]).mean() > 0.5


def test_meds_schema(demo_events):
    """The output is a valid MEDS 0.4 dataset: dtypes, sorting, contiguity, codes metadata, splits."""
    out, _ = demo_events
    shards = sorted((out / "data").glob("*.parquet"), key=lambda p: int(p.stem))
    assert len(shards) == 4  # 100 subjects / 30 per shard
    import pyarrow.parquet as pq

    seen: set[int] = set()
    last_max = -1
    for s in shards:
        assert pq.read_schema(s).remove_metadata().equals(EVENTS_SCHEMA), s
        df = pl.read_parquet(s)
        assert df.equals(df.sort(["subject_id", "time"], nulls_last=False, maintain_order=True))
        subj = set(df["subject_id"].unique().to_list())
        assert not subj & seen, "a subject appears in two shards"
        assert min(subj) > last_max, "shards are not in subject order"
        seen |= subj
        last_max = max(subj)
    codes = pl.read_parquet(out / "metadata" / "codes.parquet")
    assert codes.schema == pl.Schema(
        {"code": pl.String, "description": pl.String, "parent_codes": pl.List(pl.String)}
    )
    present = set(read_events(out, ["code"]).collect()["code"].unique().to_list())
    assert present == set(codes["code"].to_list())
    lab_desc = codes.filter(pl.col("code") == "LAB//50912//mg/dL")["description"].item()
    assert lab_desc.startswith("Creatinine")
    splits = pl.read_parquet(out / "metadata" / "subject_splits.parquet")
    assert set(splits["subject_id"].to_list()) == seen
    assert set(splits["split"].unique().to_list()) <= set(SPLITS)
    meta = json.loads((out / "metadata" / "dataset.json").read_text())
    assert meta["meds_version"].startswith("0.4") and meta["etl_name"] == "ehr-hcl"
    assert (out / "quality" / "rejects.parquet").exists() and (out / "quality" / "summary.json").exists()


def _all_sorted(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(list(df.columns), nulls_last=False)


def test_meds_round_trip(demo_events, tmp_path):
    out, _ = demo_events
    back = tmp_path / "back"
    summary = ingest("meds", out, back, IngestConfig(shard_size=30), progress=False)
    assert summary["subjects"] == 100 and summary["admissions"] == 275
    a = read_events(out).collect()
    b = read_events(back).collect()
    assert a.equals(b)  # same events, same order
    assert pl.read_parquet(out / "metadata" / "codes.parquet").equals(
        pl.read_parquet(back / "metadata" / "codes.parquet")
    )


def test_meds_03_style_input_recovers_admissions(demo_events, tmp_path):
    """No hadm_id, no numeric_value, a static row with null time: read, and admissions recovered."""
    out, _ = demo_events
    src = tmp_path / "meds03"
    (src / "data").mkdir(parents=True)
    ev = read_events(out).collect()
    static = pl.DataFrame(
        {"subject_id": [ev["subject_id"][0]], "time": [None], "code": ["STATIC//X"]},
        schema={"subject_id": pl.Int64, "time": pl.Datetime("ns"), "code": pl.String},
    )
    ev.select("subject_id", pl.col("time").cast(pl.Datetime("ns")), "code").vstack(static).write_parquet(
        src / "data" / "all.parquet"
    )
    summary = ingest("meds", src, tmp_path / "out", IngestConfig(), progress=False)
    assert summary["admissions"] == 275 and summary["events"] == ev.height + 1
    back = read_events(tmp_path / "out").collect()
    assert back["numeric_value"].null_count() == back.height
    assert back.filter(pl.col("time").is_null())["code"].to_list() == ["STATIC//X"]
    # recovered ids map one-to-one onto the original admissions, for every in-stay event
    orig_adm = ev.filter(pl.col("code").str.starts_with("HOSPITAL_ADMISSION//")).select(
        "subject_id", "time", orig="hadm_id"
    )
    new_adm = back.filter(pl.col("code").str.starts_with("HOSPITAL_ADMISSION//")).select(
        "subject_id", "time", new="hadm_id"
    )
    mapping = orig_adm.join(new_adm, on=["subject_id", "time"]).select("orig", "new").unique()
    assert mapping.height == 275 and mapping["new"].n_unique() == 275
    dx_orig = ev.filter(pl.col("code").str.starts_with("DIAGNOSIS//")).select(
        "subject_id", "time", "code", "hadm_id"
    )
    dx_new = back.filter(pl.col("code").str.starts_with("DIAGNOSIS//")).select(
        "subject_id", "time", "code", new="hadm_id"
    )
    j = (
        dx_orig.join(mapping, left_on="hadm_id", right_on="orig")
        .unique()
        .sort(["subject_id", "time", "code"])
    )
    k = dx_new.unique().sort(["subject_id", "time", "code"])
    assert j.height == k.height
    assert (j["new"] == k["new"]).all()

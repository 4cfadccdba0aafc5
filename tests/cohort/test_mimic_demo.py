"""Both shipped cohorts on the real MIMIC-IV demo, checked against a plain pandas computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from pipeline.audit import audit
from pipeline.cohort import build_cohort

from .conftest import COHORTS, MIMIC_DEMO

pytestmark = [
    pytest.mark.mimic,
    pytest.mark.skipif(
        not (MIMIC_DEMO / "hosp" / "admissions.csv.gz").exists(), reason="MIMIC-IV demo absent"
    ),
]
HOSP = MIMIC_DEMO / "hosp"
PLANNED = {"ELECTIVE", "SURGICAL SAME DAY ADMISSION"}  # not_counted_admission_types of readmission_30d.yaml

# Pinned results (also recomputed below from admissions.csv.gz / patients.csv.gz with pandas).
PINNED = {"in_hospital_mortality": (220, 13), "readmission_30d": (258, 49)}
# Through the real ingest the data end is later (labs, transfers, ... after the last discharge), so one more
# discharge has 30 days of follow-up.
PINNED_INGEST = {"in_hospital_mortality": (220, 13), "readmission_30d": (259, 49)}


def _tables():
    adm = pd.read_csv(HOSP / "admissions.csv.gz", parse_dates=["admittime", "dischtime", "deathtime"])
    pat = pd.read_csv(HOSP / "patients.csv.gz", parse_dates=["dod"])
    return adm, pat


def _mini_meds(folder):
    """The events the cohort stage reads, written straight from admissions/patients (independent of ingest)."""
    adm, pat = _tables()
    rows = []
    for a in adm.itertuples():
        rows.append((a.subject_id, a.admittime, f"HOSPITAL_ADMISSION//{a.admission_type}", a.hadm_id))
        rows.append((a.subject_id, a.admittime, f"INSURANCE//{a.insurance}", a.hadm_id))
        rows.append((a.subject_id, a.dischtime, f"HOSPITAL_DISCHARGE//{a.discharge_location}", a.hadm_id))
    deaths = adm.dropna(subset=["deathtime"]).groupby("subject_id").first()
    for p in pat.itertuples():
        birth = pd.Timestamp(year=p.anchor_year - p.anchor_age, month=1, day=1)
        rows.append((p.subject_id, birth, "MEDS_BIRTH", None))
        rows.append((p.subject_id, birth, f"GENDER//{p.gender}", None))
        if p.subject_id in deaths.index:
            d = deaths.loc[p.subject_id]
            rows.append((p.subject_id, d.deathtime, "MEDS_DEATH", d.hadm_id))
        elif pd.notna(p.dod):
            rows.append((p.subject_id, p.dod, "MEDS_DEATH", None))
    df = pd.DataFrame(rows, columns=["subject_id", "time", "code", "hadm_id"])
    df["numeric_value"] = np.float32("nan")
    df["text_value"] = None
    out = (
        pl.from_pandas(df)
        .select(
            pl.col("subject_id").cast(pl.Int64),
            pl.col("time").cast(pl.Datetime("us")),
            pl.col("code"),
            pl.lit(None, dtype=pl.Float32).alias("numeric_value"),
            pl.lit(None, dtype=pl.String).alias("text_value"),
            pl.col("hadm_id").cast(pl.Int64),
        )
        .sort("subject_id", "time")
    )
    (folder / "data").mkdir(parents=True)
    out.write_parquet(folder / "data" / "0.parquet")
    return folder


def expected_counts(data_end: pd.Timestamp) -> dict[str, tuple[int, int]]:
    """Rows and positives of both cohorts, computed plainly from the CSV tables."""
    adm, pat = _tables()
    m = adm.merge(pat, on="subject_id")
    m["age"] = m["anchor_age"] + m["admittime"].dt.year - m["anchor_year"]
    first_deathtime = adm.groupby("subject_id")["deathtime"].min()
    m["death"] = m["subject_id"].map(first_deathtime).fillna(m["dod"])
    adults = m[(m["age"] >= 18) & (m["dischtime"] > m["admittime"])]

    # in-hospital mortality: 48 h after admission, still admitted and alive; label = hospital_expire_flag
    pred = adults["admittime"] + pd.Timedelta(hours=48)
    mort = adults[(adults["dischtime"] > pred) & (adults["death"].isna() | (adults["death"] > pred))]
    out = {"in_hospital_mortality": (len(mort), int(mort["hospital_expire_flag"].sum()))}

    # 30-day readmission: at discharge, discharged alive; next unplanned admission within 30 days
    rows = positives = 0
    for r in adults.itertuples():
        if r.hospital_expire_flag == 1 or (pd.notna(r.death) and r.death <= r.dischtime):
            continue
        later = adm[
            (adm.subject_id == r.subject_id)
            & (adm.admittime >= r.dischtime)
            & ~adm.admission_type.isin(PLANNED)
        ]["admittime"]
        nxt = later.min() if len(later) else pd.NaT
        if pd.notna(nxt) and nxt <= r.dischtime:
            continue  # readmitted at the very discharge time: excluded
        horizon = r.dischtime + pd.Timedelta(days=30)
        end = min(horizon, data_end)
        readmitted = pd.notna(nxt) and nxt <= end and (pd.isna(r.death) or nxt <= r.death)
        died_first = not readmitted and pd.notna(r.death) and r.death <= end
        if not readmitted and not died_first and data_end < horizon:
            continue  # follow-up too short: excluded
        rows += 1
        positives += readmitted
    out["readmission_30d"] = (rows, positives)
    return out


def _check(events, tmp_path, expected):
    for name in PINNED:
        out = tmp_path / name
        summary = build_cohort(COHORTS / f"{name}.yaml", events, out)
        labels = pl.read_parquet(out / "labels.parquet")
        assert (summary["rows"], summary["positives"]) == expected[name], name
        assert labels.group_by("subject_id").agg(pl.col("split").n_unique())["split"].max() == 1
        assert labels["sex"].null_count() == 0 and labels["insurance"].null_count() == 0
        audit(out / "labels.parquet", None, events)


def test_cohorts_on_demo_match_pandas(tmp_path):
    events = _mini_meds(tmp_path / "events")
    data_end = pl.scan_parquet(events / "data" / "*.parquet").select(pl.col("time").max()).collect().item()
    expected = expected_counts(pd.Timestamp(data_end))
    assert expected == PINNED
    _check(events, tmp_path, expected)


def test_cohorts_on_demo_through_ingest(tmp_path):
    ingest_mod = pytest.importorskip("pipeline.ingest")
    events = tmp_path / "events"
    ingest_mod.ingest("mimic-iv", MIMIC_DEMO, events, ingest_mod.IngestConfig())
    data_end = (
        pl.scan_parquet(events / "data" / "**" / "*.parquet").select(pl.col("time").max()).collect().item()
    )
    expected = expected_counts(pd.Timestamp(data_end))
    assert expected == PINNED_INGEST
    _check(events, tmp_path, expected)

"""The synthetic EHR generator: MIMIC-IV shape, determinism, and recovery of its known latent truth."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.sources.synthetic import LAB_ITEMS, OUTCOME_STRUCTURES, STRUCTURE_RANKS, SynthConfig, synthesize

TABLES = [
    "hosp/patients",
    "hosp/admissions",
    "hosp/diagnoses_icd",
    "hosp/procedures_icd",
    "hosp/labevents",
    "hosp/d_labitems",
    "hosp/prescriptions",
    "note/discharge",
    "note/radiology",
]


@pytest.fixture(scope="module")
def synth_mid(tmp_path_factory):
    out = tmp_path_factory.mktemp("mid") / "raw"
    summary = synthesize(SynthConfig(patients=1500, seed=11, chunk_patients=700), out, progress=False)
    return out, summary


def _csv(root, table, **kw):
    return pl.read_csv(root / f"{table}.csv.gz", try_parse_dates=True, infer_schema_length=100_000, **kw)


def test_deterministic_byte_identical(tmp_path):
    cfg = SynthConfig(patients=80, seed=5, chunk_patients=100)
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize(cfg, a, progress=False)
    synthesize(cfg, b, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) >= len(TABLES) + 4
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    c = tmp_path / "c"
    synthesize(cfg.model_copy(update={"seed": 6}), c, progress=False)
    assert (a / "hosp/labevents.csv.gz").read_bytes() != (c / "hosp/labevents.csv.gz").read_bytes()


@pytest.mark.mimic
def test_same_columns_as_mimic(synth_small, demo_dir):
    for table in TABLES:
        ours = gzip.open(synth_small / f"{table}.csv.gz", "rt").readline().strip().split(",")
        if table.startswith("note/"):
            assert ours == [
                "note_id",
                "subject_id",
                "hadm_id",
                "note_type",
                "note_seq",
                "charttime",
                "storetime",
                "text",
            ]
            continue
        theirs = gzip.open(demo_dir / f"{table}.csv.gz", "rt").readline().strip().split(",")
        assert ours == theirs, table


def test_dtypes_like_mimic(synth_mid):
    root, _ = synth_mid
    adm = _csv(root, "hosp/admissions")
    assert adm.schema["admittime"] == pl.Datetime("us") and adm.schema["hadm_id"] == pl.Int64
    lab = _csv(root, "hosp/labevents")
    assert lab.schema["valuenum"] == pl.Float64 and lab.schema["storetime"] == pl.Datetime("us")
    assert (lab["storetime"] > lab["charttime"]).all()
    assert 0 < lab["valuenum"].null_count() < 0.05 * lab.height  # some null valuenum with a text value
    assert lab.filter(pl.col("valuenum").is_null())["value"].null_count() == 0
    dx = _csv(root, "hosp/diagnoses_icd")
    assert set(dx["icd_version"].unique().to_list()) == {9, 10}
    assert _csv(root, "hosp/d_labitems").height == len(LAB_ITEMS) >= 30
    pat = _csv(root, "hosp/patients")
    assert pat["anchor_age"].min() >= 18


def test_truth_files(synth_mid):
    root, _ = synth_mid
    st = json.loads((root / "truth" / "structure.json").read_text())
    assert st["structures"].keys() == STRUCTURE_RANKS.keys()
    assert st["outcome_structures"] == OUTCOME_STRUCTURES
    lat = pl.read_parquet(root / "truth" / "latent.parquet")
    assert lat.columns == ["subject_id"] + [f"{s}__{k}" for s, r in STRUCTURE_RANKS.items() for k in range(r)]
    assert lat.height == 1500
    adm = pl.read_parquet(root / "truth" / "admissions.parquet")
    assert {
        "subject_id",
        "hadm_id",
        "p_mortality",
        "p_readmission_30d",
        "died_in_hospital",
        "readmitted_30d",
    } <= set(adm.columns)
    assert adm.height == _csv(root, "hosp/admissions").height


def test_outcomes_match_tables(synth_mid):
    """Deaths happen after 48 h and readmission within 30 days happens exactly when the truth says so."""
    root, s = synth_mid
    adm = _csv(root, "hosp/admissions").sort("subject_id", "admittime")
    truth = pl.read_parquet(root / "truth" / "admissions.parquet")
    adm = adm.join(truth, on=["subject_id", "hadm_id"])
    died = adm.filter(pl.col("died_in_hospital"))
    assert (died["hospital_expire_flag"] == 1).all() and (died["deathtime"] == died["dischtime"]).all()
    assert ((died["dischtime"] - died["admittime"]).dt.total_hours() >= 48).all()
    nxt = adm.with_columns(
        gap=(pl.col("admittime").shift(-1).over("subject_id") - pl.col("dischtime")).dt.total_hours() / 24
    )
    within = nxt["gap"].fill_null(1e9) <= 30
    assert (within == nxt["readmitted_30d"]).all()
    # some post-discharge deaths (dod after the last discharge, no in-hospital death)
    pat = _csv(root, "hosp/patients")
    assert pat["dod"].null_count() < pat.height
    # targets of the design
    assert 0.08 <= s["mortality_rate"] <= 0.18
    assert 0.12 <= s["readmission_rate"] <= 0.28
    assert 0.74 <= s["oracle_auroc"]["in_hospital_mortality"] <= 0.9
    assert 0.72 <= s["oracle_auroc"]["readmission_30d"] <= 0.9
    # p is calibrated: observed rate in the top risk quintile exceeds that of the bottom one by far
    surv = truth.filter(~pl.col("died_in_hospital"))
    q = surv["p_readmission_30d"].qcut([0.2, 0.8], labels=["lo", "mid", "hi"])
    rates = (
        surv.with_columns(q=q)
        .group_by("q")
        .agg(pl.col("readmitted_30d").mean(), pl.col("p_readmission_30d").mean())
    )
    r = dict(zip(rates["q"].to_list(), rates["readmitted_30d"].to_list(), strict=True))
    assert r["hi"] > 3 * r["lo"]


def test_first_48h_labs_carry_the_factors(synth_mid):
    """Mean of a lab over the first 48 h regresses on the admission's factors with high R^2 (known truth)."""
    root, _ = synth_mid
    lab = _csv(root, "hosp/labevents", columns=["hadm_id", "itemid", "charttime", "storetime", "valuenum"])
    adm = _csv(root, "hosp/admissions", columns=["hadm_id", "admittime"])
    u = pl.read_parquet(root / "truth" / "admission_latent.parquet")
    early = lab.join(adm, on="hadm_id").filter(
        pl.col("storetime") <= pl.col("admittime") + pl.duration(hours=48)
    )
    lab_cols = [c for c in u.columns if "labs" in c.split("__")[0].split("+")]
    other = [c for c in u.columns if "__" in c and c not in lab_cols]
    r2 = []
    for itemid in (50912, 51222, 50813):
        m = (
            early.filter(pl.col("itemid") == itemid)
            .group_by("hadm_id")
            .agg(pl.col("valuenum").mean())
            .drop_nulls()
            .join(u, on="hadm_id")
        )
        y = m["valuenum"].to_numpy()
        X = np.column_stack([np.ones(len(y)), m.select(lab_cols).to_numpy()])
        resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
        r2.append(1 - resid.var() / y.var())
        # factors of structures without labs do not drive labs
        Xo = np.column_stack([np.ones(len(y)), m.select(other).to_numpy()])
        ro = y - Xo @ np.linalg.lstsq(Xo, y, rcond=None)[0]
        assert 1 - ro.var() / y.var() < 0.05
    assert min(r2) > 0.6, r2


def test_notes_carry_the_factors(synth_mid):
    root, _ = synth_mid
    notes = _csv(root, "note/radiology", columns=["hadm_id", "text"])
    u = pl.read_parquet(root / "truth" / "admission_latent.parquet")
    pos = pl.col("text").str.count_matches("respiratory distress|ARDS|Worsening hypoxemia").cast(pl.Int64)
    neg = pl.col("text").str.count_matches("room air|Lungs are clear|No acute cardiopulmonary").cast(pl.Int64)
    d = notes.group_by("hadm_id").agg(score=(pos - neg).sum()).join(u, on="hadm_id")
    # topic 0 is driven by the first global factor (the notes modality's first factor column)
    r = np.corrcoef(d["score"].to_numpy(), d["codes+labs+medications+notes__0"].to_numpy())[0, 1]
    assert r > 0.4, r
    r_other = np.corrcoef(d["score"].to_numpy(), d["labs+medications__0"].to_numpy())[0, 1]
    assert abs(r_other) < 0.1


@pytest.mark.slow
def test_48h_features_get_close_to_the_oracle(tmp_path):
    """A plain model on first-48 h labs and medications nearly reaches the oracle AUROC for mortality."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    r = tmp_path / "raw"
    synthesize(SynthConfig(patients=4000, seed=2), r, progress=False)
    adm = _csv(r, "hosp/admissions").join(
        pl.read_parquet(r / "truth" / "admissions.parquet"), on=["subject_id", "hadm_id"]
    )
    adm = adm.filter((pl.col("dischtime") - pl.col("admittime")).dt.total_hours() > 48)
    cut = pl.col("admittime") + pl.duration(hours=48)
    lab = _csv(r, "hosp/labevents", columns=["hadm_id", "itemid", "storetime", "valuenum"])
    lab = lab.join(adm.select("hadm_id", "admittime"), on="hadm_id").filter(pl.col("storetime") <= cut)
    x1 = (
        lab.group_by("hadm_id", "itemid")
        .agg(pl.col("valuenum").mean())
        .pivot(on="itemid", index="hadm_id", values="valuenum")
    )
    rx = _csv(r, "hosp/prescriptions", columns=["hadm_id", "drug", "starttime"])
    rx = rx.join(adm.select("hadm_id", "admittime"), on="hadm_id").filter(pl.col("starttime") <= cut)
    x2 = rx.group_by("hadm_id", "drug").len().pivot(on="drug", index="hadm_id", values="len")
    d = (
        adm.select("hadm_id", "died_in_hospital", "p_mortality")
        .join(x1, on="hadm_id", how="left")
        .join(x2, on="hadm_id", how="left")
        .fill_null(strategy="mean")
        .fill_null(0)
    )
    X = d.drop("hadm_id", "died_in_hospital", "p_mortality").to_numpy()
    y = d["died_in_hospital"].to_numpy()
    tr = np.arange(len(y)) % 3 != 0
    m = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(X[tr], y[tr])
    auc = roc_auc_score(y[~tr], m.predict_proba(X[~tr])[:, 1])
    oracle = roc_auc_score(y[~tr], d["p_mortality"].to_numpy()[~tr])
    assert oracle - 0.05 < auc <= oracle + 0.02, (auc, oracle)


def _synth_files(tmp: Path, coretype: str) -> dict[str, str]:
    """Run `ehr-hcl synth` with OpenBLAS forced to one CPU family's kernels; md5 of every file written."""
    import hashlib
    import os
    import subprocess
    import sys

    out = tmp / coretype
    env = {**os.environ, "OPENBLAS_CORETYPE": coretype, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "pipeline", "synth", "--patients", "600", "--output", str(out), "--quiet"],
        env=env,
        check=True,
        cwd=tmp,
    )
    return {str(p.relative_to(out)): hashlib.md5(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}


def test_synth_bytes_do_not_depend_on_the_cpu_family(tmp_path):
    """Point 11 of issue 13: BLAS kernels of two CPU families (as on two machines) give the same files.

    Before the true probabilities were rounded, truth/admissions.parquet differed between these two runs.
    """
    a = _synth_files(tmp_path, "SkylakeX")
    b = _synth_files(tmp_path, "Sandybridge")
    assert len(a) == 14 and a == b


def test_cli_pins_the_numeric_kernels(monkeypatch):
    """Every stage run from the CLI uses the same instruction set for torch, oneDNN, MKL and OpenBLAS."""
    import os

    from pipeline.cli import REPRODUCIBLE_NUMERICS, _set_environment

    for key in REPRODUCIBLE_NUMERICS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Zen")  # a user's own choice is kept
    _set_environment()
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2" and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert os.environ["OPENBLAS_CORETYPE"] == "Zen"

"""One generator per MIMIC-IV table, for one chunk of patients.

:func:`generate_chunk` calls them in a fixed order on one random stream per chunk, so the output depends only
on the configuration (the order of the draws is part of the contract: reordering them changes the data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.sources.synthetic.model import (
    DAY_US,
    HOUR_US,
    SynthConfig,
    _factor_columns,
    _gumbel_topk,
    _Model,
    _sigmoid,
    _ts,
    _year_start_us,
)
from pipeline.sources.synthetic.vocabulary import (
    ADMISSION_LOCATIONS,
    ADMISSION_TYPES,
    DIAGNOSES,
    DISCHARGE_LOCATIONS,
    DRUGS,
    INSURANCES,
    LAB_ITEMS,
    NOTE_FILLER,
    NOTE_TOPICS,
    PROCEDURES,
    RACES,
    ROUTES,
)

_MINUTE_US = 60_000_000
#: precision of the stored true probabilities (far finer than any AUROC can tell apart)
PROBABILITY_DECIMALS = 6
_NO_DEATH = np.iinfo(np.int64).min


@dataclass
class _Patients:
    """Per-patient draws of one chunk."""

    lo: int  # index of the chunk's first patient
    subject_id: np.ndarray
    z: np.ndarray  # (n, factors) patient-level latent factors
    gender: np.ndarray
    anchor_age: np.ndarray
    anchor_year: np.ndarray
    anchor_year_group: list[str]


@dataclass
class _Admissions:
    """Per-admission arrays of one chunk, sorted by (patient, admission index)."""

    A: dict[str, np.ndarray]  # pidx, j, u, p_mort, p_read, admit, disch, los_h, died, readmit
    subject: np.ndarray  # subject_id of each admission
    hadm_id: np.ndarray
    dod: np.ndarray  # per patient: date of death in us, or _NO_DEATH


def generate_chunk(cfg: SynthConfig, model: _Model, chunk: int, lo: int, hi: int, state: dict):
    """Generate patients ``lo:hi`` (chunk number ``chunk``): their tables and ground truth.

    Parameters
    ----------
    cfg : SynthConfig
        Generator knobs.
    model : _Model
        Fixed loadings and baselines.
    chunk, lo, hi : int
        Chunk number (seeds its random stream) and the patient index range.
    state : dict
        Running row ids (``labevent_id``, ``pharmacy_id``, ``specimen_id``), advanced in place.

    Returns
    -------
    tuple
        ``(tables, latent, admission_latent, truth)``: MIMIC table name -> frame, and the truth frames.
    """
    rng = np.random.default_rng([cfg.seed, chunk])
    patients = _draw_patients(rng, lo, hi)
    adm = _admission_sequences(cfg, model, rng, patients)
    admissions = _admissions_table(rng, adm, len(patients.subject_id))
    tables = {
        "hosp/patients": _patients_table(patients, adm.dod),
        "hosp/admissions": admissions,
        "hosp/diagnoses_icd": None,
        "hosp/procedures_icd": None,
        "hosp/labevents": _labevents_table(cfg, model, rng, adm, state),
        "hosp/prescriptions": None,
        "note/discharge": None,
        "note/radiology": None,
    }
    tables["hosp/diagnoses_icd"], tables["hosp/procedures_icd"] = _diagnoses_procedures_tables(
        model, rng, adm
    )
    tables["hosp/prescriptions"] = _prescriptions_table(model, rng, adm, state)
    tables["note/radiology"] = _radiology_table(model, rng, adm)
    tables["note/discharge"] = _discharge_table(model, rng, adm)
    return (tables, *_truth_frames(patients, adm))


def _draw_patients(rng: np.random.Generator, lo: int, hi: int) -> _Patients:
    """Demographics and patient-level factors."""
    n = hi - lo
    z = rng.standard_normal((n, len(_factor_columns())))
    gender = np.where(rng.random(n) < 0.5, "F", "M")
    anchor_age = rng.integers(18, 85, n)
    anchor_year = rng.integers(2110, 2190, n)
    group_start = 2008 + 3 * rng.integers(0, 5, n)
    return _Patients(
        lo=lo,
        subject_id=10_000_000 + np.arange(lo, hi, dtype=np.int64),
        z=z,
        gender=gender,
        anchor_age=anchor_age,
        anchor_year=anchor_year,
        anchor_year_group=[f"{g} - {g + 2}" for g in group_start],
    )


def _admission_sequences(
    cfg: SynthConfig, model: _Model, rng: np.random.Generator, patients: _Patients
) -> _Admissions:
    """Each patient's admissions in time order: factors, true risks, outcomes and the next admission."""
    n, n_factors = patients.z.shape
    a = cfg.admission_noise
    t = _year_start_us(patients.anchor_year) + (rng.random(n) * 2 * 365 * DAY_US).astype(np.int64)
    active = np.ones(n, bool)
    dod = np.full(n, _NO_DEATH)
    rows = []  # per admission index j: arrays over the patients still active
    for j in range(cfg.max_admissions):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        m = idx.size
        u = np.sqrt(1 - a * a) * patients.z[idx] + a * rng.standard_normal((m, n_factors))
        p_mort = _sigmoid(cfg.mortality_intercept + u[:, model.mort_cols] @ model.mort_w)
        p_read = _sigmoid(cfg.readmission_intercept + u[:, model.read_cols] @ model.read_w)
        admit = t[idx] // _MINUTE_US * _MINUTE_US
        los_h = 6 + rng.gamma(1.6, 60.0, m)  # ~20 % of stays are shorter than 48 h
        died = rng.random(m) < p_mort
        # deaths are observed after the 48 h prediction time
        los_h = np.where(died & (los_h < 50), 50 + rng.gamma(2.0, 24.0, m), los_h)
        disch = admit + (los_h * 60).astype(np.int64) * _MINUTE_US
        los_h = (disch - admit) / HOUR_US
        read_draw = rng.random(m) < p_read
        readmit = (~died) & read_draw & (j + 1 < cfg.max_admissions)
        post_death = (~died) & (~readmit) & (rng.random(m) < 0.06)
        cont = (~died) & (~readmit) & (~post_death) & (rng.random(m) < 0.55) & (j + 1 < cfg.max_admissions)
        gap_days = np.where(readmit, 0.5 + rng.random(m) * 29.0, 31.0 + rng.exponential(300.0, m))
        after_death = disch + ((1 + rng.random(m) * 200) * DAY_US).astype(np.int64)
        dod[idx] = np.where(died, disch, np.where(post_death, after_death, dod[idx]))
        names = ("pidx", "j", "u", "p_mort", "p_read", "admit", "disch", "los_h", "died", "readmit")
        values = (idx, np.full(m, j), u, p_mort, p_read, admit, disch, los_h, died, readmit)
        rows.append(dict(zip(names, values, strict=True)))
        t[idx] = disch + (gap_days * DAY_US).astype(np.int64)
        active[idx] = readmit | cont
    A = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    order = np.lexsort((A["j"], A["pidx"]))
    A = {k: v[order] for k, v in A.items()}
    hadm_id = 20_000_000 + (patients.lo + A["pidx"]).astype(np.int64) * 16 + A["j"]
    return _Admissions(A=A, subject=patients.subject_id[A["pidx"]], hadm_id=hadm_id, dod=dod)


def _admissions_table(rng: np.random.Generator, adm: _Admissions, n_patients: int) -> pl.DataFrame:
    """``hosp/admissions``: types, locations, insurance, ED times and the expire flag."""
    A, na = adm.A, len(adm.hadm_id)
    adm_type = np.asarray(ADMISSION_TYPES)[
        rng.choice(len(ADMISSION_TYPES), na, p=[0.45, 0.2, 0.1, 0.1, 0.1, 0.05])
    ]
    disch_loc = np.where(
        A["died"],
        "DIED",
        np.asarray(DISCHARGE_LOCATIONS)[
            rng.choice(len(DISCHARGE_LOCATIONS), na, p=[0.4, 0.3, 0.15, 0.1, 0.05])
        ],
    )
    insurance = np.asarray(INSURANCES)[rng.choice(3, na, p=[0.45, 0.2, 0.35])]
    patient_race = np.asarray(RACES)[rng.choice(len(RACES), n_patients)]
    not_ed = pl.Series(adm_type != "EW EMER.")
    edreg = np.where(adm_type == "EW EMER.", A["admit"] - (rng.random(na) * 6 * HOUR_US).astype(np.int64), 0)
    return pl.DataFrame(
        {
            "subject_id": adm.subject,
            "hadm_id": adm.hadm_id,
            "admittime": _ts(A["admit"]),
            "dischtime": _ts(A["disch"]),
            "deathtime": _ts(A["disch"]).set(pl.Series(~A["died"]), None),
            "admission_type": adm_type,
            "admit_provider_id": np.char.add("P", (rng.integers(10000, 99999, na)).astype(str)),
            "admission_location": np.asarray(ADMISSION_LOCATIONS)[rng.choice(len(ADMISSION_LOCATIONS), na)],
            "discharge_location": disch_loc,
            "insurance": insurance,
            "language": np.full(na, "ENGLISH"),
            "marital_status": np.asarray(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED"])[rng.choice(4, na)],
            "race": patient_race[A["pidx"]],
            "edregtime": _ts(edreg).set(not_ed, None),
            "edouttime": _ts(A["admit"] + HOUR_US).set(not_ed, None),
            "hospital_expire_flag": A["died"].astype(np.int64),
        }
    )


def _patients_table(patients: _Patients, dod: np.ndarray) -> pl.DataFrame:
    """``hosp/patients``: demographics and date of death (in or after hospital)."""
    dod_date = dod.astype("datetime64[us]").astype("datetime64[D]")
    return pl.DataFrame(
        {
            "subject_id": patients.subject_id,
            "gender": patients.gender,
            "anchor_age": patients.anchor_age,
            "anchor_year": patients.anchor_year,
            "anchor_year_group": patients.anchor_year_group,
            "dod": pl.Series(dod_date).set(pl.Series(dod == _NO_DEATH), None),
        }
    )


def _labevents_table(
    cfg: SynthConfig, model: _Model, rng: np.random.Generator, adm: _Admissions, state: dict
) -> pl.DataFrame:
    """``hosp/labevents``: panels every 12 h in the first 48 h, then daily, before discharge."""
    A, na = adm.A, len(adm.hadm_id)
    u_lab = A["u"][:, model.cols["labs"]]
    n_panels = np.minimum(4 + np.maximum(0, np.floor((A["los_h"] - 48) / 24)).astype(int), 40)
    p_adm = np.repeat(np.arange(na), n_panels)
    p_k = np.arange(len(p_adm)) - np.repeat(np.cumsum(n_panels) - n_panels, n_panels)
    p_off_h = np.where(p_k < 4, p_k * 12.0, 48.0 + (p_k - 4) * 24.0) + rng.random(len(p_adm)) * 8.0 + 0.25
    keep = p_off_h < A["los_h"][p_adm]
    p_adm, p_off_h = p_adm[keep], p_off_h[keep]
    n_p, n_items = len(p_adm), len(LAB_ITEMS)
    present = rng.random((n_p, n_items)) < 0.8
    mean_eff = u_lab[p_adm] @ model.lab_loadings.T  # (n_p, n_items)
    noise = rng.standard_normal((n_p, n_items)) * cfg.lab_noise
    base = np.asarray([i[5] for i in LAB_ITEMS])
    sd = np.asarray([i[6] for i in LAB_ITEMS])
    rows, items = np.nonzero(present)
    vals = (base + sd * (mean_eff + noise))[rows, items]
    lab_adm = p_adm[rows]
    decimals = np.asarray([i[7] for i in LAB_ITEMS])[items]
    vals = np.where(base[items] > 0, np.abs(vals), vals)
    vals = np.round(vals * 10.0**decimals) / 10.0**decimals
    nl = len(vals)
    chart = (A["admit"][lab_adm] + (p_off_h[rows] * HOUR_US).astype(np.int64)) // _MINUTE_US * _MINUTE_US
    store = chart + ((0.5 + rng.random(nl) * 2.5) * HOUR_US).astype(np.int64) // _MINUTE_US * _MINUTE_US
    missing = rng.random(nl) < cfg.lab_missing_value_rate
    lo_ref = base[items] - 1.5 * sd[items]
    hi_ref = base[items] + 1.5 * sd[items]
    valuenum = pl.Series(vals).set(pl.Series(missing), None)
    units = np.asarray([i[4] for i in LAB_ITEMS])[items]
    specimen = np.asarray(state["specimen_id"] + rows, dtype=np.int64) if nl else np.zeros(0, np.int64)
    labevents = pl.DataFrame(
        {
            "labevent_id": np.arange(state["labevent_id"], state["labevent_id"] + nl, dtype=np.int64),
            "subject_id": adm.subject[lab_adm],
            "hadm_id": adm.hadm_id[lab_adm],
            "specimen_id": specimen,
            "itemid": np.asarray([i[0] for i in LAB_ITEMS], dtype=np.int64)[items],
            "order_provider_id": pl.Series([None] * nl, dtype=pl.String),
            "charttime": _ts(chart),
            "storetime": _ts(store),
            "value": valuenum.cast(pl.String).fill_null("___"),
            "valuenum": valuenum,
            "valueuom": pl.Series(units).replace("", None),
            "ref_range_lower": np.round(lo_ref, 2),
            "ref_range_upper": np.round(hi_ref, 2),
            "flag": pl.Series(np.where((vals < lo_ref) | (vals > hi_ref), "abnormal", "")).replace("", None),
            "priority": np.where(p_off_h[rows] < 48, "STAT", "ROUTINE"),
            "comments": pl.Series([None] * nl, dtype=pl.String),
        }
    )
    state["labevent_id"] += nl
    state["specimen_id"] += n_p
    return labevents


def _diagnoses_procedures_tables(
    model: _Model, rng: np.random.Generator, adm: _Admissions
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``hosp/diagnoses_icd`` and ``hosp/procedures_icd`` (stamped at discharge downstream)."""
    A, na = adm.A, len(adm.hadm_id)
    u_codes = A["u"][:, model.cols["codes"]]
    k_dx = np.minimum(3 + rng.poisson(5, na), len(DIAGNOSES))
    r_dx, c_dx = _gumbel_topk(rng, model.dx_base + u_codes @ model.dx_loadings.T, k_dx)
    seq = np.arange(len(r_dx)) - np.repeat(np.cumsum(k_dx) - k_dx, k_dx) + 1
    diagnoses = pl.DataFrame(
        {
            "subject_id": adm.subject[r_dx],
            "hadm_id": adm.hadm_id[r_dx],
            "seq_num": seq.astype(np.int64),
            "icd_code": np.asarray([d[1] for d in DIAGNOSES])[c_dx],
            "icd_version": np.asarray([d[0] for d in DIAGNOSES], dtype=np.int64)[c_dx],
        }
    )
    k_px = np.minimum(rng.poisson(1.2, na), len(PROCEDURES))
    r_px, c_px = _gumbel_topk(rng, model.px_base + u_codes @ model.px_loadings.T, k_px)
    seq = np.arange(len(r_px)) - np.repeat(np.cumsum(k_px) - k_px, k_px) + 1
    px_day = A["admit"][r_px] + (rng.random(len(r_px)) * A["los_h"][r_px] * HOUR_US).astype(np.int64)
    procedures = pl.DataFrame(
        {
            "subject_id": adm.subject[r_px],
            "hadm_id": adm.hadm_id[r_px],
            "seq_num": seq.astype(np.int64),
            "chartdate": pl.Series(px_day.astype("datetime64[us]").astype("datetime64[D]")),
            "icd_code": np.asarray([d[1] for d in PROCEDURES])[c_px],
            "icd_version": np.asarray([d[0] for d in PROCEDURES], dtype=np.int64)[c_px],
        }
    )
    return diagnoses, procedures


def _prescriptions_table(
    model: _Model, rng: np.random.Generator, adm: _Admissions, state: dict
) -> pl.DataFrame:
    """``hosp/prescriptions``: drugs mostly started in the first 48 h."""
    A, na = adm.A, len(adm.hadm_id)
    u_med = A["u"][:, model.cols["medications"]]
    k_rx = np.minimum(3 + rng.poisson(4, na), len(DRUGS))
    r_rx, c_rx = _gumbel_topk(rng, model.rx_base + u_med @ model.rx_loadings.T, k_rx)
    nr = len(r_rx)
    early = rng.random(nr) < 0.75
    start_h = np.where(
        early, rng.random(nr) * np.minimum(46.0, A["los_h"][r_rx]), rng.random(nr) * A["los_h"][r_rx]
    )
    start = (A["admit"][r_rx] + (start_h * HOUR_US).astype(np.int64)) // _MINUTE_US * _MINUTE_US
    stop = np.minimum(start + ((6 + rng.random(nr) * 96) * HOUR_US).astype(np.int64), A["disch"][r_rx])
    null_rx = pl.Series([None] * nr, dtype=pl.String)
    unknown = ("poe_id", "order_provider_id", "formulary_drug_cd", "gsn", "ndc", "prod_strength", "form_rx",
               "dose_val_rx", "dose_unit_rx", "form_val_disp", "form_unit_disp")  # fmt: skip
    columns = {
        "subject_id": adm.subject[r_rx],
        "hadm_id": adm.hadm_id[r_rx],
        "pharmacy_id": np.arange(state["pharmacy_id"], state["pharmacy_id"] + nr, dtype=np.int64),
        "poe_id": null_rx,
        "poe_seq": pl.Series([None] * nr, dtype=pl.Int64),
        "order_provider_id": null_rx,
        "starttime": _ts(start),
        "stoptime": _ts(stop),
        "drug_type": np.full(nr, "MAIN"),
        "drug": np.asarray(DRUGS)[c_rx],
        **{name: null_rx for name in unknown[2:]},
        "doses_per_24_hrs": pl.Series([None] * nr, dtype=pl.Float64),
        "route": np.asarray(ROUTES)[rng.integers(0, len(ROUTES), nr)],
    }
    state["pharmacy_id"] += nr
    return pl.DataFrame(columns)


def _radiology_table(model: _Model, rng: np.random.Generator, adm: _Admissions) -> pl.DataFrame:
    """``note/radiology``: one to three reports per stay longer than 6 h, stored within 44 h."""
    A, na = adm.A, len(adm.hadm_id)
    u_note = A["u"][:, model.cols["notes"]]
    n_rad = np.where(A["los_h"] > 6, rng.integers(1, 4, na), 0)
    r_rad = np.repeat(np.arange(na), n_rad)
    rad_seq = np.arange(len(r_rad)) - np.repeat(np.cumsum(n_rad) - n_rad, n_rad) + 1
    chart = A["admit"][r_rad] + (
        rng.random(len(r_rad)) * np.minimum(40.0, A["los_h"][r_rad] - 4) * HOUR_US
    ).astype(np.int64)
    chart = chart // _MINUTE_US * _MINUTE_US
    store = (
        chart + ((0.5 + rng.random(len(r_rad)) * 3.0) * HOUR_US).astype(np.int64) // _MINUTE_US * _MINUTE_US
    )
    note_seq = A["j"][r_rad] * 4 + rad_seq
    subject = adm.subject[r_rad]
    return pl.DataFrame(
        {
            "note_id": [f"{s}-RR-{k}" for s, k in zip(subject.tolist(), note_seq.tolist(), strict=True)],
            "subject_id": subject,
            "hadm_id": adm.hadm_id[r_rad],
            "note_type": np.full(len(r_rad), "RR"),
            "note_seq": note_seq.astype(np.int64),
            "charttime": _ts(chart),
            "storetime": _ts(store),
            "text": _note_texts(rng, u_note[r_rad], "RADIOLOGY REPORT", 5),
        }
    )


def _discharge_table(model: _Model, rng: np.random.Generator, adm: _Admissions) -> pl.DataFrame:
    """``note/discharge``: one summary per admission, stored 1-21 h after discharge."""
    A, na = adm.A, len(adm.hadm_id)
    u_note = A["u"][:, model.cols["notes"]]
    store = A["disch"] + ((1 + rng.random(na) * 20) * HOUR_US).astype(np.int64) // _MINUTE_US * _MINUTE_US
    return pl.DataFrame(
        {
            "note_id": [
                f"{s}-DS-{k}" for s, k in zip(adm.subject.tolist(), (A["j"] + 1).tolist(), strict=True)
            ],
            "subject_id": adm.subject,
            "hadm_id": adm.hadm_id,
            "note_type": np.full(na, "DS"),
            "note_seq": (A["j"] + 1).astype(np.int64),
            "charttime": _ts(A["disch"] // DAY_US * DAY_US),
            "storetime": _ts(store),
            "text": _note_texts(rng, u_note, "DISCHARGE SUMMARY", 8),
        }
    )


def _truth_frames(patients: _Patients, adm: _Admissions) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Patient factors, admission factors, and true risks and outcomes per admission."""
    cols = _factor_columns()
    A = adm.A
    latent = pl.DataFrame(
        {"subject_id": patients.subject_id, **{c: patients.z[:, i] for i, c in enumerate(cols)}}
    )
    adm_latent = pl.DataFrame(
        {"subject_id": adm.subject, "hadm_id": adm.hadm_id, **{c: A["u"][:, i] for i, c in enumerate(cols)}}
    )
    truth = pl.DataFrame(
        {
            "subject_id": adm.subject,
            "hadm_id": adm.hadm_id,
            # rounded: the last bits of a BLAS product differ between CPU families, and stored at full
            # precision they made this file (and dvc.lock) machine-dependent
            "p_mortality": np.round(A["p_mort"], PROBABILITY_DECIMALS),
            "p_readmission_30d": np.round(A["p_read"], PROBABILITY_DECIMALS),
            "died_in_hospital": A["died"],
            "readmitted_30d": A["readmit"],
            "los_hours": A["los_h"],
        }
    )
    return latent, adm_latent, truth


def _note_texts(rng: np.random.Generator, u: np.ndarray, header: str, n_topic: int) -> list[str]:
    """Note texts whose sentence polarity per factor dimension k follows sigmoid(2 u_k)."""
    m, d = u.shape
    if m == 0:
        return []
    dims = rng.integers(0, d, (m, n_topic))
    pos = rng.random((m, n_topic)) < _sigmoid(2.0 * np.take_along_axis(u, dims, axis=1))
    which = rng.integers(0, 3, (m, n_topic))
    filler = rng.integers(0, len(NOTE_FILLER), (m, 3))
    pools = [[NOTE_TOPICS[k][0 if p else 1] for p in (True, False)] for k in range(d)]
    out = []
    for i in range(m):
        parts = [header + ".", NOTE_FILLER[filler[i, 0]]]
        for s in range(n_topic):
            k = dims[i, s]
            parts.append(pools[k][0 if pos[i, s] else 1][which[i, s]])
            if s == n_topic // 2:
                parts.append(NOTE_FILLER[filler[i, 1]])
        parts.append(NOTE_FILLER[filler[i, 2]])
        out.append(" ".join(parts))
    return out

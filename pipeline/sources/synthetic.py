"""Synthetic EHR in the MIMIC-IV layout, generated from a known hierarchical latent model.

Per patient, latent factors ``z_S`` (standard normal, uncorrelated) for each *structure* ``S`` (a subset of
the modalities codes, labs, medications, notes): one global structure, three partially shared ones
(``codes+labs``, ``labs+medications``, ``codes+notes``) and one private structure per modality. Each
admission draws its own factors ``u = sqrt(1 - a^2) z + a e`` (admission noise ``a``), and every observation
of a modality during that admission is driven by the factors of the structures that contain it:

- labs: ``value = baseline + sd * (L u_labs + noise)``, ~30 itemids, one panel every 12 h during the first
  48 h and daily afterwards; ``storetime`` 0.5-3 h after ``charttime``; some ``valuenum`` null with a text
  ``value`` (as in MIMIC);
- codes: ICD-9/ICD-10 diagnoses and procedures sampled without replacement with log-odds ``b + B u_codes``;
- medications: drug names sampled the same way from ``u_medications``, mostly started in the first 48 h;
- notes: radiology reports (stored in the first 48 h) and a discharge summary, made of sentences whose
  polarity per note-driving factor dimension follows ``sigmoid(2 u_k)``, mixed with clinical filler.

In-hospital mortality and 30-day readmission are Bernoulli with logistic probabilities in a known sparse
subset of structures (:data:`OUTCOME_STRUCTURES`). Deaths happen after 48 h; a readmission within 30 days
happens exactly when the admission's readmission draw is positive (otherwise the next admission, if any,
comes more than 30 days later); some patients die after discharge (``patients.dod``).

The truth goes to ``truth/``: ``structure.json``, ``latent.parquet`` (patient factors),
``admission_latent.parquet`` (admission factors) and ``admissions.parquet`` (true probabilities and
outcomes). Files are byte-identical for the same configuration (gzip ``mtime=0``; one RNG stream per chunk).
"""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from pipeline.io import atomic_dir, write_json
from pipeline.schema import MODALITIES

log = logging.getLogger(__name__)

#: structure -> rank of its latent block
STRUCTURE_RANKS: dict[str, int] = {
    "codes+labs+medications+notes": 2,
    "codes+labs": 2,
    "labs+medications": 2,
    "codes+notes": 2,
    "codes": 1,
    "labs": 1,
    "medications": 1,
    "notes": 1,
}
#: task -> structures whose factors enter the true log-odds
OUTCOME_STRUCTURES: dict[str, list[str]] = {
    "in_hospital_mortality": ["codes+labs+medications+notes", "labs+medications"],
    "readmission_30d": ["codes+labs", "medications"],
}
#: the cohort outcome (``CohortSpec.outcome.key``) each simulated task is: (task, true-probability column)
OUTCOME_TRUTH: dict[str, tuple[str, str]] = {
    "death_before_discharge": ("in_hospital_mortality", "p_mortality"),
    "readmission_30d": ("readmission_30d", "p_readmission_30d"),
}
TABLE_MODALITY = {
    "hosp/diagnoses_icd": "codes",
    "hosp/procedures_icd": "codes",
    "hosp/labevents": "labs",
    "hosp/prescriptions": "medications",
    "note/discharge": "notes",
    "note/radiology": "notes",
}

# itemid, label, fluid, category, unit, baseline, sd, decimals
LAB_ITEMS = [
    (50912, "Creatinine", "Blood", "Chemistry", "mg/dL", 1.1, 0.5, 1),
    (50983, "Sodium", "Blood", "Chemistry", "mEq/L", 139.0, 4.0, 0),
    (50971, "Potassium", "Blood", "Chemistry", "mEq/L", 4.2, 0.5, 1),
    (50902, "Chloride", "Blood", "Chemistry", "mEq/L", 102.0, 4.0, 0),
    (50882, "Bicarbonate", "Blood", "Chemistry", "mEq/L", 25.0, 3.5, 0),
    (50868, "Anion Gap", "Blood", "Chemistry", "mEq/L", 14.0, 3.0, 0),
    (51006, "Urea Nitrogen", "Blood", "Chemistry", "mg/dL", 20.0, 9.0, 0),
    (50931, "Glucose", "Blood", "Chemistry", "mg/dL", 120.0, 35.0, 0),
    (50960, "Magnesium", "Blood", "Chemistry", "mg/dL", 2.0, 0.3, 1),
    (50970, "Phosphate", "Blood", "Chemistry", "mg/dL", 3.5, 0.8, 1),
    (50893, "Calcium, Total", "Blood", "Chemistry", "mg/dL", 8.9, 0.6, 1),
    (50862, "Albumin", "Blood", "Chemistry", "g/dL", 3.6, 0.5, 1),
    (50885, "Bilirubin, Total", "Blood", "Chemistry", "mg/dL", 0.9, 0.5, 1),
    (50861, "Alanine Aminotransferase (ALT)", "Blood", "Chemistry", "IU/L", 30.0, 15.0, 0),
    (50878, "Asparate Aminotransferase (AST)", "Blood", "Chemistry", "IU/L", 35.0, 18.0, 0),
    (50863, "Alkaline Phosphatase", "Blood", "Chemistry", "IU/L", 90.0, 30.0, 0),
    (50813, "Lactate", "Blood", "Blood Gas", "mmol/L", 1.6, 0.8, 1),
    (50820, "pH", "Blood", "Blood Gas", "units", 7.39, 0.05, 2),
    (50821, "pO2", "Blood", "Blood Gas", "mm Hg", 90.0, 25.0, 0),
    (50818, "pCO2", "Blood", "Blood Gas", "mm Hg", 41.0, 6.0, 0),
    (51222, "Hemoglobin", "Blood", "Hematology", "g/dL", 11.5, 1.8, 1),
    (51221, "Hematocrit", "Blood", "Hematology", "%", 34.5, 5.0, 1),
    (51301, "White Blood Cells", "Blood", "Hematology", "K/uL", 9.0, 3.5, 1),
    (51265, "Platelet Count", "Blood", "Hematology", "K/uL", 230.0, 70.0, 0),
    (51279, "Red Blood Cells", "Blood", "Hematology", "m/uL", 3.9, 0.6, 2),
    (51250, "MCV", "Blood", "Hematology", "fL", 90.0, 6.0, 0),
    (51248, "MCH", "Blood", "Hematology", "pg", 30.0, 2.0, 1),
    (51277, "RDW", "Blood", "Hematology", "%", 14.5, 1.8, 1),
    (51237, "INR(PT)", "Blood", "Hematology", "", 1.2, 0.3, 1),
    (51275, "PTT", "Blood", "Hematology", "sec", 32.0, 6.0, 1),
]

DIAGNOSES = [  # (icd_version, icd_code)
    *[
        (10, c)
        for c in (
            "I10",
            "E119",
            "N179",
            "J189",
            "I4891",
            "E785",
            "I2510",
            "N183",
            "J449",
            "K219",
            "E039",
            "F329",
            "D649",
            "E871",
            "I509",
            "A419",
            "R6521",
            "J9601",
            "K7030",
            "N390",
            "E1122",
            "I480",
            "G4733",
            "Z794",
            "F17210",
            "E669",
            "M810",
            "C3490",
            "K5790",
            "I639",
            "Z8673",
            "R0902",
            "E872",
            "D62",
            "J690",
            "K922",
            "I129",
            "N186",
            "Z955",
            "E876",
        )
    ],
    *[
        (9, c)
        for c in (
            "4019",
            "25000",
            "5849",
            "486",
            "42731",
            "2724",
            "41401",
            "5859",
            "496",
            "53081",
            "2449",
            "311",
            "2859",
            "2761",
            "4280",
            "0389",
            "78552",
            "51881",
            "5715",
            "5990",
            "3051",
            "2768",
            "99592",
            "V5861",
            "4254",
        )
    ],
]
PROCEDURES = [
    (10, "02HV33Z"),
    (10, "0DJ08ZZ"),
    (10, "5A1955Z"),
    (10, "0BH17EZ"),
    (10, "3E0G76Z"),
    (10, "B2111ZZ"),
    (9, "3893"),
    (9, "9604"),
    (9, "9671"),
    (9, "3995"),
    (9, "4513"),
    (9, "8856"),
]
DRUGS = [
    "Heparin",
    "Sodium Chloride 0.9%  Flush",
    "Acetaminophen",
    "Insulin",
    "Furosemide",
    "Metoprolol Tartrate",
    "Potassium Chloride",
    "Docusate Sodium",
    "Senna",
    "Ondansetron",
    "Pantoprazole",
    "Aspirin",
    "Atorvastatin",
    "Magnesium Sulfate",
    "Vancomycin",
    "Piperacillin-Tazobactam",
    "Lorazepam",
    "Oxycodone (Immediate Release)",
    "Morphine Sulfate",
    "Lisinopril",
    "Amlodipine",
    "Warfarin",
    "Enoxaparin Sodium",
    "Ceftriaxone",
    "Levothyroxine Sodium",
    "Albuterol 0.083% Neb Soln",
    "Prednisone",
    "Norepinephrine",
    "Propofol",
    "Fentanyl Citrate",
    "Midazolam",
    "Lactulose",
    "Rifaximin",
    "Ciprofloxacin HCl",
    "Metronidazole",
    "Haloperidol",
    "Quetiapine Fumarate",
    "Gabapentin",
    "Tamsulosin",
    "Calcium Gluconate",
]
ROUTES = ["PO", "IV", "SC", "PO/NG", "IH", "IV DRIP"]

# One pair (positive, negative) of sentence pools per note-driving factor dimension, in the order of the
# notes modality's factor columns (global 0-1, codes+notes 0-1, notes 0).
NOTE_TOPICS = [
    (
        [
            "Patient in severe respiratory distress requiring escalating oxygen support.",
            "Bilateral diffuse airspace opacities concerning for ARDS.",
            "Worsening hypoxemia despite high flow nasal cannula.",
        ],
        [
            "Breathing comfortably on room air.",
            "Lungs are clear bilaterally without focal consolidation.",
            "No acute cardiopulmonary process.",
        ],
    ),
    (
        [
            "Hypotensive and started on vasopressors for septic shock.",
            "Lactate rising, concern for hypoperfusion.",
            "Mottled extremities with delayed capillary refill.",
        ],
        [
            "Hemodynamically stable throughout the stay.",
            "Blood pressure well controlled on home regimen.",
            "Warm and well perfused extremities.",
        ],
    ),
    (
        [
            "Acute on chronic kidney injury with rising creatinine.",
            "Oliguric, nephrology consulted for dialysis.",
            "Renal ultrasound shows echogenic kidneys.",
        ],
        [
            "Renal function at baseline.",
            "Good urine output without electrolyte derangement.",
            "No hydronephrosis on renal imaging.",
        ],
    ),
    (
        [
            "Known cirrhosis with ascites and hepatic encephalopathy.",
            "Paracentesis performed for tense ascites.",
            "Liver is nodular with splenomegaly.",
        ],
        [
            "Liver enzymes within normal limits.",
            "No hepatic abnormality identified.",
            "Alert and oriented without asterixis.",
        ],
    ),
    (
        [
            "Metastatic disease with multiple pulmonary nodules.",
            "Goals of care discussed with family, palliative care following.",
            "Mass lesion with surrounding edema.",
        ],
        [
            "No evidence of malignancy.",
            "Independent at baseline, lives with spouse.",
            "Ambulating independently with physical therapy.",
        ],
    ),
]
NOTE_FILLER = [
    "Vital signs reviewed.",
    "Medications reconciled.",
    "Seen and examined at bedside.",
    "Follow up with primary care provider.",
    "Comparison is made to prior study.",
    "Diet as tolerated.",
    "Labs reviewed and noted above.",
    "Patient counseled regarding plan.",
    "Technique: portable AP view.",
    "Discussed with attending.",
]

ADMISSION_TYPES = ["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT", "DIRECT EMER.", "EU OBSERVATION"]
ADMISSION_LOCATIONS = [
    "EMERGENCY ROOM",
    "PHYSICIAN REFERRAL",
    "TRANSFER FROM HOSPITAL",
    "WALK-IN/SELF REFERRAL",
]
DISCHARGE_LOCATIONS = ["HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB", "HOSPICE"]
INSURANCES = ["Medicare", "Medicaid", "Other"]
RACES = ["WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN", "OTHER", "UNKNOWN"]

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
_EPOCH_YEAR = 1970


class SynthConfig(BaseModel):
    """Knobs of the synthetic EHR generator (``synth`` section of ``params.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    patients: int = Field(3000, ge=1, description="number of patients")
    seed: int = Field(0, ge=0, description="seed of every random draw")
    chunk_patients: int = Field(2500, ge=100, description="patients generated and written per chunk")
    admission_noise: float = Field(0.35, ge=0.0, lt=1.0, description="share of admission-specific noise a")
    lab_noise: float = Field(0.6, gt=0.0, description="per-draw lab noise (in units of the factor effect)")
    mortality_intercept: float = Field(-2.7, description="log-odds of in-hospital death at u = 0")
    readmission_intercept: float = Field(-2.0, description="log-odds of 30-day readmission at u = 0")
    outcome_effect: float = Field(0.75, gt=0.0, description="log-odds change per SD of each relevant factor")
    max_admissions: int = Field(12, ge=1, le=15, description="cap on admissions per patient")
    lab_missing_value_rate: float = Field(0.01, ge=0.0, le=1.0, description="labs with null valuenum")
    compresslevel: int = Field(3, ge=1, le=9, description="gzip level of the CSV files")


def _factor_columns() -> list[str]:
    return [f"{s}__{k}" for s, r in STRUCTURE_RANKS.items() for k in range(r)]


def _modality_columns(modality: str) -> np.ndarray:
    """Indices of the factor columns of the structures containing ``modality``."""
    idx, pos = [], 0
    for s, r in STRUCTURE_RANKS.items():
        if modality in s.split("+"):
            idx.extend(range(pos, pos + r))
        pos += r
    return np.asarray(idx)


def _structure_columns(structures: list[str]) -> np.ndarray:
    idx, pos = [], 0
    for s, r in STRUCTURE_RANKS.items():
        if s in structures:
            idx.extend(range(pos, pos + r))
        pos += r
    return np.asarray(idx)


class _Model:
    """Fixed parameters (loadings, baselines) drawn once from the seed."""

    def __init__(self, cfg: SynthConfig):
        rng = np.random.default_rng([cfg.seed, 2**31 - 1])
        self.cols = {m: _modality_columns(m) for m in MODALITIES}
        d = {m: len(c) for m, c in self.cols.items()}
        self.lab_loadings = rng.normal(size=(len(LAB_ITEMS), d["labs"])) / np.sqrt(d["labs"]) * 1.2
        self.dx_base = rng.normal(-0.5, 1.0, size=len(DIAGNOSES))
        self.dx_loadings = rng.normal(size=(len(DIAGNOSES), d["codes"])) * 1.1
        self.px_base = rng.normal(-0.5, 1.0, size=len(PROCEDURES))
        self.px_loadings = rng.normal(size=(len(PROCEDURES), d["codes"])) * 0.9
        self.rx_base = rng.normal(0.0, 1.0, size=len(DRUGS))
        self.rx_loadings = rng.normal(size=(len(DRUGS), d["medications"])) * 1.1
        self.mort_cols = _structure_columns(OUTCOME_STRUCTURES["in_hospital_mortality"])
        self.read_cols = _structure_columns(OUTCOME_STRUCTURES["readmission_30d"])
        signs = lambda n: np.where(rng.random(n) < 0.5, -1.0, 1.0)  # noqa: E731
        self.mort_w = signs(len(self.mort_cols)) * cfg.outcome_effect
        self.read_w = signs(len(self.read_cols)) * cfg.outcome_effect


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _gumbel_topk(
    rng: np.random.Generator, logits: np.ndarray, k: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``k[i]`` distinct columns of row ``i`` with probabilities ~ softmax(logits) (Gumbel top-k)."""
    keys = logits + rng.gumbel(size=logits.shape)
    order = np.argsort(-keys, axis=1)
    take = np.arange(logits.shape[1])[None, :] < k[:, None]
    rows = np.nonzero(take)[0]
    return rows, order[take]


def _ts(us: np.ndarray) -> pl.Series:
    return pl.Series(us.astype(np.int64)).cast(pl.Datetime("us"))


def _year_start_us(year: np.ndarray) -> np.ndarray:
    return (
        (np.asarray(year, dtype="int64") - _EPOCH_YEAR)
        .astype("datetime64[Y]")
        .astype("datetime64[us]")
        .astype(np.int64)
    )


class _Writers:
    """One gzip CSV stream per table, written chunk by chunk with a fixed gzip mtime."""

    DT_FMT = "%Y-%m-%d %H:%M:%S"

    def __init__(self, root: Path, compresslevel: int):
        self.root, self.level, self.files = root, compresslevel, {}

    def write(self, table: str, df: pl.DataFrame) -> None:
        if table not in self.files:
            path = self.root / f"{table}.csv.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            raw = open(path, "wb")  # noqa: SIM115 - closed in close()
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=self.level, mtime=0)
            self.files[table] = (raw, gz, True)
        raw, gz, first = self.files[table]
        for offset in range(0, max(df.height, 1), 200_000):  # slices keep the CSV text buffer small
            buf = io.BytesIO()
            df.slice(offset, 200_000).write_csv(
                buf, include_header=first, datetime_format=self.DT_FMT, date_format="%Y-%m-%d"
            )
            gz.write(buf.getbuffer())
            first = False
        self.files[table] = (raw, gz, False)

    def close(self) -> None:
        for raw, gz, _ in self.files.values():
            gz.close()
            raw.close()


def synthesize(config: SynthConfig, output_dir: Path, progress: bool = True) -> dict:
    """Write a synthetic MIMIC-IV-shaped dataset and its ground truth under ``output_dir``.

    Parameters
    ----------
    config : SynthConfig
        Generator knobs (number of patients, seed, effect sizes, ...).
    output_dir : Path
        Folder to (re)create atomically: ``hosp/``, ``note/`` and ``truth/`` go inside it.
    progress : bool
        Show a tqdm progress bar over patient chunks.

    Returns
    -------
    dict
        Summary: patients, admissions, rows per table, mortality and readmission prevalence, oracle AUROC.
    """
    from tqdm import tqdm

    output_dir = Path(output_dir)
    model = _Model(config)
    counts: dict[str, int] = {}
    truth_frames: list[pl.DataFrame] = []
    n_chunks = -(-config.patients // config.chunk_patients)
    with atomic_dir(output_dir) as tmp:
        writers = _Writers(tmp, config.compresslevel)
        (tmp / "truth").mkdir(parents=True, exist_ok=True)
        import pyarrow.parquet as pq

        latent_writer = adm_latent_writer = None
        state = {"labevent_id": 1, "pharmacy_id": 1, "specimen_id": 1}
        try:
            for c in tqdm(range(n_chunks), desc="synth", unit="chunk", disable=not progress):
                lo = c * config.chunk_patients
                hi = min(config.patients, lo + config.chunk_patients)
                tables, latent, adm_latent, truth = _chunk(config, model, c, lo, hi, state)
                for name, df in tables.items():
                    writers.write(name, df)
                    counts[name] = counts.get(name, 0) + df.height
                for path_name, df in (("latent", latent), ("admission_latent", adm_latent)):
                    tbl = df.to_arrow()
                    if path_name == "latent":
                        latent_writer = latent_writer or pq.ParquetWriter(
                            tmp / "truth" / "latent.parquet", tbl.schema, compression="zstd"
                        )
                        latent_writer.write_table(tbl)
                    else:
                        adm_latent_writer = adm_latent_writer or pq.ParquetWriter(
                            tmp / "truth" / "admission_latent.parquet", tbl.schema, compression="zstd"
                        )
                        adm_latent_writer.write_table(tbl)
                truth_frames.append(truth)
            # d_labitems: one small table
            writers.write(
                "hosp/d_labitems",
                pl.DataFrame(
                    {
                        "itemid": [i[0] for i in LAB_ITEMS],
                        "label": [i[1] for i in LAB_ITEMS],
                        "fluid": [i[2] for i in LAB_ITEMS],
                        "category": [i[3] for i in LAB_ITEMS],
                    },
                    schema={
                        "itemid": pl.Int64,
                        "label": pl.String,
                        "fluid": pl.String,
                        "category": pl.String,
                    },
                ),
            )
        finally:
            writers.close()
            for w in (latent_writer, adm_latent_writer):
                if w is not None:
                    w.close()
        truth = pl.concat(truth_frames)
        truth.write_parquet(tmp / "truth" / "admissions.parquet", compression="zstd")
        summary = _summary(config, truth, counts)
        write_json(
            {
                "modalities": list(MODALITIES),
                "structures": {
                    s: {"rank": r, "modalities": s.split("+"), "kind": _kind(s)}
                    for s, r in STRUCTURE_RANKS.items()
                },
                "outcome_structures": OUTCOME_STRUCTURES,
                # keyed by the cohort YAML's outcome (``CohortSpec.outcome.key``), never by a cohort's name
                "outcomes": {
                    key: {"probability_column": column, "structures": OUTCOME_STRUCTURES[task]}
                    for key, (task, column) in OUTCOME_TRUTH.items()
                },
                "outcome_weights": {
                    "in_hospital_mortality": dict(
                        zip(
                            [_factor_columns()[i] for i in model.mort_cols],
                            model.mort_w.tolist(),
                            strict=True,
                        )
                    ),
                    "readmission_30d": dict(
                        zip(
                            [_factor_columns()[i] for i in model.read_cols],
                            model.read_w.tolist(),
                            strict=True,
                        )
                    ),
                },
                "intercepts": {
                    "in_hospital_mortality": config.mortality_intercept,
                    "readmission_30d": config.readmission_intercept,
                },
                "table_modality": TABLE_MODALITY,
                "admission_noise": config.admission_noise,
                "outcome_factor_level": "admission (truth/admission_latent.parquet)",
                "config": config.model_dump(),
            },
            tmp / "truth" / "structure.json",
        )
        write_json(summary, tmp / "truth" / "summary.json")
    log.info(
        "synth: %d patients, %d admissions, %d lab rows; mortality %.3f, readmission %.3f, oracle AUROC %.3f / %.3f",
        summary["patients"],
        summary["admissions"],
        summary["rows"].get("hosp/labevents", 0),
        summary["mortality_rate"],
        summary["readmission_rate"],
        summary["oracle_auroc"]["in_hospital_mortality"],
        summary["oracle_auroc"]["readmission_30d"],
    )
    return summary


def _kind(s: str) -> str:
    n = len(s.split("+"))
    return "global" if n == len(MODALITIES) else ("private" if n == 1 else "partial")


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y, bool)
    if y.all() or not y.any():
        return float("nan")
    ranks = np.empty(len(p))
    order = np.argsort(p, kind="mergesort")
    ranks[order] = np.arange(1, len(p) + 1)
    # average ties
    _, inv, cnt = np.unique(p, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / cnt)[inv]
    n1, n0 = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _summary(cfg: SynthConfig, truth: pl.DataFrame, counts: dict) -> dict:
    long = truth.filter(pl.col("los_hours") > 48)
    surv = truth.filter(~pl.col("died_in_hospital"))
    return {
        "patients": cfg.patients,
        "admissions": truth.height,
        "rows": dict(sorted(counts.items())),
        "mortality_rate": float(long["died_in_hospital"].mean()) if long.height else float("nan"),
        "readmission_rate": float(surv["readmitted_30d"].mean()) if surv.height else float("nan"),
        "oracle_auroc": {
            "in_hospital_mortality": _auroc(
                long["died_in_hospital"].to_numpy(), long["p_mortality"].to_numpy()
            ),
            "readmission_30d": _auroc(
                surv["readmitted_30d"].to_numpy(), surv["p_readmission_30d"].to_numpy()
            ),
        },
        "note": "mortality over stays > 48 h; readmission over survived admissions",
    }


def _chunk(cfg: SynthConfig, model: _Model, chunk: int, lo: int, hi: int, state: dict):
    rng = np.random.default_rng([cfg.seed, chunk])
    n = hi - lo
    cols = _factor_columns()
    subject_id = 10_000_000 + np.arange(lo, hi, dtype=np.int64)
    z = rng.standard_normal((n, len(cols)))

    # ---------------- patients
    gender = np.where(rng.random(n) < 0.5, "F", "M")
    anchor_age = rng.integers(18, 85, n)
    anchor_year = rng.integers(2110, 2190, n)
    group_start = 2008 + 3 * rng.integers(0, 5, n)
    anchor_year_group = [f"{g} - {g + 2}" for g in group_start]

    # ---------------- admission sequences
    a = cfg.admission_noise
    maxa = cfg.max_admissions
    t = _year_start_us(anchor_year) + (rng.random(n) * 2 * 365 * DAY_US).astype(np.int64)
    active = np.ones(n, bool)
    dod = np.full(n, np.iinfo(np.int64).min)
    adm_rows = []  # per admission-index j: arrays
    for j in range(maxa):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        m = idx.size
        u = np.sqrt(1 - a * a) * z[idx] + a * rng.standard_normal((m, len(cols)))
        p_mort = _sigmoid(cfg.mortality_intercept + u[:, model.mort_cols] @ model.mort_w)
        p_read = _sigmoid(cfg.readmission_intercept + u[:, model.read_cols] @ model.read_w)
        admit = t[idx] // 60_000_000 * 60_000_000
        los_h = 6 + rng.gamma(1.6, 60.0, m)  # ~20 % of stays are shorter than 48 h
        died = rng.random(m) < p_mort
        # deaths are observed after the 48 h prediction time
        los_h = np.where(died & (los_h < 50), 50 + rng.gamma(2.0, 24.0, m), los_h)
        disch = admit + (los_h * 60).astype(np.int64) * 60_000_000
        los_h = (disch - admit) / HOUR_US
        read_draw = rng.random(m) < p_read
        readmit = (~died) & read_draw & (j + 1 < maxa)
        post_death = (~died) & (~readmit) & (rng.random(m) < 0.06)
        cont = (~died) & (~readmit) & (~post_death) & (rng.random(m) < 0.55) & (j + 1 < maxa)
        gap_days = np.where(readmit, 0.5 + rng.random(m) * 29.0, 31.0 + rng.exponential(300.0, m))
        nxt = disch + (gap_days * DAY_US).astype(np.int64)
        dod_new = np.where(
            died,
            disch,
            np.where(post_death, disch + ((1 + rng.random(m) * 200) * DAY_US).astype(np.int64), dod[idx]),
        )
        dod[idx] = dod_new
        adm_rows.append(
            dict(
                pidx=idx,
                j=np.full(m, j),
                u=u,
                p_mort=p_mort,
                p_read=p_read,
                admit=admit,
                disch=disch,
                los_h=los_h,
                died=died,
                readmit=readmit,
            )
        )
        t[idx] = nxt
        active[idx] = readmit | cont
    A = {k: np.concatenate([r[k] for r in adm_rows]) for k in adm_rows[0]}
    order = np.lexsort((A["j"], A["pidx"]))
    A = {k: v[order] for k, v in A.items()}
    na = len(A["pidx"])
    a_subject = subject_id[A["pidx"]]
    hadm_id = 20_000_000 + (lo + A["pidx"]).astype(np.int64) * 16 + A["j"]
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
    patient_race = np.asarray(RACES)[rng.choice(len(RACES), n)]
    null_s = pl.Series([None] * na, dtype=pl.String)
    edreg = np.where(adm_type == "EW EMER.", A["admit"] - (rng.random(na) * 6 * HOUR_US).astype(np.int64), 0)
    admissions = pl.DataFrame(
        {
            "subject_id": a_subject,
            "hadm_id": hadm_id,
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
            "edregtime": _ts(edreg).set(pl.Series(adm_type != "EW EMER."), None),
            "edouttime": _ts(A["admit"] + HOUR_US).set(pl.Series(adm_type != "EW EMER."), None),
            "hospital_expire_flag": A["died"].astype(np.int64),
        }
    )
    dod_date = dod.astype("datetime64[us]").astype("datetime64[D]")
    patients = pl.DataFrame(
        {
            "subject_id": subject_id,
            "gender": gender,
            "anchor_age": anchor_age,
            "anchor_year": anchor_year,
            "anchor_year_group": anchor_year_group,
            "dod": pl.Series(dod_date).set(pl.Series(dod == np.iinfo(np.int64).min), None),
        }
    )

    # ---------------- labs: panels every 12 h in the first 48 h, then daily, before discharge
    u_lab = A["u"][:, model.cols["labs"]]
    n_panels = 4 + np.maximum(0, np.floor((A["los_h"] - 48) / 24)).astype(int)
    n_panels = np.minimum(n_panels, 40)
    p_adm = np.repeat(np.arange(na), n_panels)
    p_k = np.arange(len(p_adm)) - np.repeat(np.cumsum(n_panels) - n_panels, n_panels)
    p_off_h = np.where(p_k < 4, p_k * 12.0, 48.0 + (p_k - 4) * 24.0) + rng.random(len(p_adm)) * 8.0 + 0.25
    keep = p_off_h < A["los_h"][p_adm]
    p_adm, p_off_h = p_adm[keep], p_off_h[keep]
    n_p = len(p_adm)
    n_items = len(LAB_ITEMS)
    present = rng.random((n_p, n_items)) < 0.8
    mean_eff = u_lab[p_adm] @ model.lab_loadings.T  # (n_p, n_items)
    noise = rng.standard_normal((n_p, n_items)) * cfg.lab_noise
    base = np.asarray([i[5] for i in LAB_ITEMS])
    sd = np.asarray([i[6] for i in LAB_ITEMS])
    vals = base + sd * (mean_eff + noise)
    rows, items = np.nonzero(present)
    vals = vals[rows, items]
    lab_adm = p_adm[rows]
    decimals = np.asarray([i[7] for i in LAB_ITEMS])[items]
    vals = np.where(base[items] > 0, np.abs(vals), vals)
    vals = np.round(vals * 10.0**decimals) / 10.0**decimals
    nl = len(vals)
    chart = A["admit"][lab_adm] + (p_off_h[rows] * HOUR_US).astype(np.int64)
    chart = chart // 60_000_000 * 60_000_000  # whole minutes
    store = chart + ((0.5 + rng.random(nl) * 2.5) * HOUR_US).astype(np.int64) // 60_000_000 * 60_000_000
    missing = rng.random(nl) < cfg.lab_missing_value_rate
    lo_ref = base[items] - 1.5 * sd[items]
    hi_ref = base[items] + 1.5 * sd[items]
    valuenum = pl.Series(vals).set(pl.Series(missing), None)
    value = valuenum.cast(pl.String).fill_null("___")
    units = np.asarray([i[4] for i in LAB_ITEMS])[items]
    specimen = np.asarray(state["specimen_id"] + rows, dtype=np.int64) if nl else np.zeros(0, np.int64)
    labevents = pl.DataFrame(
        {
            "labevent_id": np.arange(state["labevent_id"], state["labevent_id"] + nl, dtype=np.int64),
            "subject_id": a_subject[lab_adm],
            "hadm_id": hadm_id[lab_adm],
            "specimen_id": specimen,
            "itemid": np.asarray([i[0] for i in LAB_ITEMS], dtype=np.int64)[items],
            "order_provider_id": pl.Series([None] * nl, dtype=pl.String),
            "charttime": _ts(chart),
            "storetime": _ts(store),
            "value": value,
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

    # ---------------- diagnoses and procedures (stamped at discharge downstream)
    u_codes = A["u"][:, model.cols["codes"]]
    k_dx = np.minimum(3 + rng.poisson(5, na), len(DIAGNOSES))
    r_dx, c_dx = _gumbel_topk(rng, model.dx_base + u_codes @ model.dx_loadings.T, k_dx)
    seq = np.arange(len(r_dx)) - np.repeat(np.cumsum(k_dx) - k_dx, k_dx) + 1
    diagnoses = pl.DataFrame(
        {
            "subject_id": a_subject[r_dx],
            "hadm_id": hadm_id[r_dx],
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
            "subject_id": a_subject[r_px],
            "hadm_id": hadm_id[r_px],
            "seq_num": seq.astype(np.int64),
            "chartdate": pl.Series(px_day.astype("datetime64[us]").astype("datetime64[D]")),
            "icd_code": np.asarray([d[1] for d in PROCEDURES])[c_px],
            "icd_version": np.asarray([d[0] for d in PROCEDURES], dtype=np.int64)[c_px],
        }
    )

    # ---------------- prescriptions: mostly started in the first 48 h
    u_med = A["u"][:, model.cols["medications"]]
    k_rx = np.minimum(3 + rng.poisson(4, na), len(DRUGS))
    r_rx, c_rx = _gumbel_topk(rng, model.rx_base + u_med @ model.rx_loadings.T, k_rx)
    nr = len(r_rx)
    early = rng.random(nr) < 0.75
    start_h = np.where(
        early, rng.random(nr) * np.minimum(46.0, A["los_h"][r_rx]), rng.random(nr) * A["los_h"][r_rx]
    )
    start = (A["admit"][r_rx] + (start_h * HOUR_US).astype(np.int64)) // 60_000_000 * 60_000_000
    stop = np.minimum(start + ((6 + rng.random(nr) * 96) * HOUR_US).astype(np.int64), A["disch"][r_rx])
    null_rx = pl.Series([None] * nr, dtype=pl.String)
    prescriptions = pl.DataFrame(
        {
            "subject_id": a_subject[r_rx],
            "hadm_id": hadm_id[r_rx],
            "pharmacy_id": np.arange(state["pharmacy_id"], state["pharmacy_id"] + nr, dtype=np.int64),
            "poe_id": null_rx,
            "poe_seq": pl.Series([None] * nr, dtype=pl.Int64),
            "order_provider_id": null_rx,
            "starttime": _ts(start),
            "stoptime": _ts(stop),
            "drug_type": np.full(nr, "MAIN"),
            "drug": np.asarray(DRUGS)[c_rx],
            "formulary_drug_cd": null_rx,
            "gsn": null_rx,
            "ndc": null_rx,
            "prod_strength": null_rx,
            "form_rx": null_rx,
            "dose_val_rx": null_rx,
            "dose_unit_rx": null_rx,
            "form_val_disp": null_rx,
            "form_unit_disp": null_rx,
            "doses_per_24_hrs": pl.Series([None] * nr, dtype=pl.Float64),
            "route": np.asarray(ROUTES)[rng.integers(0, len(ROUTES), nr)],
        }
    )
    state["pharmacy_id"] += nr

    # ---------------- notes
    u_note = A["u"][:, model.cols["notes"]]
    n_rad = np.where(A["los_h"] > 6, rng.integers(1, 4, na), 0)
    r_rad = np.repeat(np.arange(na), n_rad)
    rad_seq = np.arange(len(r_rad)) - np.repeat(np.cumsum(n_rad) - n_rad, n_rad) + 1
    rad_chart = A["admit"][r_rad] + (
        rng.random(len(r_rad)) * np.minimum(40.0, A["los_h"][r_rad] - 4) * HOUR_US
    ).astype(np.int64)
    rad_chart = rad_chart // 60_000_000 * 60_000_000
    rad_store = (
        rad_chart
        + ((0.5 + rng.random(len(r_rad)) * 3.0) * HOUR_US).astype(np.int64) // 60_000_000 * 60_000_000
    )
    radiology = pl.DataFrame(
        {
            "note_id": [
                f"{s}-RR-{k}"
                for s, k in zip(
                    a_subject[r_rad].tolist(), (A["j"][r_rad] * 4 + rad_seq).tolist(), strict=True
                )
            ],
            "subject_id": a_subject[r_rad],
            "hadm_id": hadm_id[r_rad],
            "note_type": np.full(len(r_rad), "RR"),
            "note_seq": (A["j"][r_rad] * 4 + rad_seq).astype(np.int64),
            "charttime": _ts(rad_chart),
            "storetime": _ts(rad_store),
            "text": _note_texts(rng, u_note[r_rad], "RADIOLOGY REPORT", 5),
        }
    )
    ds_store = A["disch"] + ((1 + rng.random(na) * 20) * HOUR_US).astype(np.int64) // 60_000_000 * 60_000_000
    discharge = pl.DataFrame(
        {
            "note_id": [
                f"{s}-DS-{k}" for s, k in zip(a_subject.tolist(), (A["j"] + 1).tolist(), strict=True)
            ],
            "subject_id": a_subject,
            "hadm_id": hadm_id,
            "note_type": np.full(na, "DS"),
            "note_seq": (A["j"] + 1).astype(np.int64),
            "charttime": _ts(A["disch"] // DAY_US * DAY_US),
            "storetime": _ts(ds_store),
            "text": _note_texts(rng, u_note, "DISCHARGE SUMMARY", 8),
        }
    )

    tables = {
        "hosp/patients": patients,
        "hosp/admissions": admissions,
        "hosp/diagnoses_icd": diagnoses,
        "hosp/procedures_icd": procedures,
        "hosp/labevents": labevents,
        "hosp/prescriptions": prescriptions,
        "note/discharge": discharge,
        "note/radiology": radiology,
    }
    latent = pl.DataFrame({"subject_id": subject_id, **{c: z[:, i] for i, c in enumerate(cols)}})
    adm_latent = pl.DataFrame(
        {"subject_id": a_subject, "hadm_id": hadm_id, **{c: A["u"][:, i] for i, c in enumerate(cols)}}
    )
    truth = pl.DataFrame(
        {
            "subject_id": a_subject,
            "hadm_id": hadm_id,
            "p_mortality": A["p_mort"],
            "p_readmission_30d": A["p_read"],
            "died_in_hospital": A["died"],
            "readmitted_30d": A["readmit"],
            "los_hours": A["los_h"],
        }
    )
    del null_s
    return tables, latent, adm_latent, truth


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

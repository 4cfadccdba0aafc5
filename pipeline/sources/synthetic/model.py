"""The generator's latent model, and the small numeric helpers every table generator shares.

It holds the structures and their ranks, the outcome structures and the fixed loadings.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from pipeline.schema import EMBEDDING_COLUMN_SEPARATOR, MODALITIES
from pipeline.sources.synthetic.vocabulary import DIAGNOSES, DRUGS, LAB_ITEMS, PROCEDURES

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
    return [f"{s}{EMBEDDING_COLUMN_SEPARATOR}{k}" for s, r in STRUCTURE_RANKS.items() for k in range(r)]


def _modality_columns(modality: str) -> np.ndarray:
    """Return the indices of the factor columns of the structures containing ``modality``."""
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

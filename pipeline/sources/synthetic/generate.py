"""``synthesize``: write the synthetic MIMIC-IV tables chunk by chunk, and the ground truth beside them."""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.io import atomic_dir, write_json
from pipeline.schema import MODALITIES
from pipeline.sources.synthetic.model import (
    OUTCOME_STRUCTURES,
    OUTCOME_TRUTH,
    STRUCTURE_RANKS,
    TABLE_MODALITY,
    SynthConfig,
    _factor_columns,
    _Model,
)
from pipeline.sources.synthetic.tables import generate_chunk
from pipeline.sources.synthetic.vocabulary import LAB_ITEMS

log = logging.getLogger(__name__)


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
    output_dir = Path(output_dir)
    model = _Model(config)
    counts: dict[str, int] = {}
    with atomic_dir(output_dir) as tmp:
        (tmp / "truth").mkdir(parents=True, exist_ok=True)
        truth = _write_chunks(config, model, tmp, counts, progress)
        truth.write_parquet(tmp / "truth" / "admissions.parquet", compression="zstd")
        summary = _summary(config, truth, counts)
        write_json(_structure(config, model), tmp / "truth" / "structure.json")
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


def _write_chunks(
    config: SynthConfig, model: _Model, root: Path, counts: dict, progress: bool
) -> pl.DataFrame:
    """Generate and append every chunk's tables and latent factors; return the per-admission truth."""
    writers = _Writers(root, config.compresslevel)
    latent_writers: dict[str, pq.ParquetWriter] = {}
    truth_frames: list[pl.DataFrame] = []
    state = {"labevent_id": 1, "pharmacy_id": 1, "specimen_id": 1}
    n_chunks = -(-config.patients // config.chunk_patients)
    try:
        with tqdm(range(n_chunks), desc="synth", unit="chunk", disable=not progress) as bar:
            for c in bar:
                lo = c * config.chunk_patients
                hi = min(config.patients, lo + config.chunk_patients)
                tables, latent, adm_latent, truth = generate_chunk(config, model, c, lo, hi, state)
                for name, df in tables.items():
                    writers.write(name, df)
                    counts[name] = counts.get(name, 0) + df.height
                for file_name, df in (("latent", latent), ("admission_latent", adm_latent)):
                    tbl = df.to_arrow()
                    if file_name not in latent_writers:
                        latent_writers[file_name] = pq.ParquetWriter(
                            root / "truth" / f"{file_name}.parquet", tbl.schema, compression="zstd"
                        )
                    latent_writers[file_name].write_table(tbl)
                truth_frames.append(truth)
        writers.write("hosp/d_labitems", _d_labitems())
    finally:
        writers.close()
        for w in latent_writers.values():
            w.close()
    return pl.concat(truth_frames)


def _d_labitems() -> pl.DataFrame:
    """``hosp/d_labitems``: the lab item dictionary."""
    return pl.DataFrame(
        {
            "itemid": [i[0] for i in LAB_ITEMS],
            "label": [i[1] for i in LAB_ITEMS],
            "fluid": [i[2] for i in LAB_ITEMS],
            "category": [i[3] for i in LAB_ITEMS],
        },
        schema={"itemid": pl.Int64, "label": pl.String, "fluid": pl.String, "category": pl.String},
    )


def _structure(config: SynthConfig, model: _Model) -> dict:
    """Describe the generator's truth as ``structure.json``: structures, outcome structures and weights."""
    factor_names = _factor_columns()
    return {
        "modalities": list(MODALITIES),
        "structures": {
            s: {"rank": r, "modalities": s.split("+"), "kind": _kind(s)} for s, r in STRUCTURE_RANKS.items()
        },
        "outcome_structures": OUTCOME_STRUCTURES,
        # keyed by the cohort YAML's outcome (``CohortSpec.outcome.key``), never by a cohort's name
        "outcomes": {
            key: {"probability_column": column, "structures": OUTCOME_STRUCTURES[task]}
            for key, (task, column) in OUTCOME_TRUTH.items()
        },
        "outcome_weights": {
            "in_hospital_mortality": dict(
                zip([factor_names[i] for i in model.mort_cols], model.mort_w.tolist(), strict=True)
            ),
            "readmission_30d": dict(
                zip([factor_names[i] for i in model.read_cols], model.read_w.tolist(), strict=True)
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
    }


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

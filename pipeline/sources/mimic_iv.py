"""MIMIC-IV (``hosp/`` and ``note/`` modules, ``.csv.gz``, ``.csv`` or parquet) -> MEDS events.

Each event is stamped when its fact became *available*: ICD diagnoses/procedures and DRG codes at the
admission's ``dischtime``; labs at ``storetime`` (else ``charttime``, and never before ``charttime``);
notes at ``storetime`` (else ``charttime``); prescriptions at ``starttime``; death at ``deathtime``, else
``patients.dod``; birth at 1 January of ``anchor_year - anchor_age``.

``patients`` and ``admissions`` are read whole (a few hundred thousand rows at MIMIC-IV scale); every other
table is streamed block by block, so memory does not grow with the number of lab rows. Row problems become
reject rows (:data:`pipeline.sources.REJECTS_SCHEMA`); schema problems raise
:class:`~pipeline.exceptions.InputSchemaError`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.exceptions import InputSchemaError
from pipeline.sources import (
    DATE,
    DATETIME,
    FLOAT,
    INT,
    STRING,
    TableReader,
    find_table,
    make_rejects,
    parse_columns,
    to_events,
)

log = logging.getLogger(__name__)

# discharge and radiology notes share one layout in MIMIC-IV-Note
_NOTE_TABLE = (
    {
        "note_id": STRING,
        "subject_id": INT,
        "hadm_id": INT,
        "charttime": DATETIME,
        "storetime": DATETIME,
        "text": STRING,
    },
    {"subject_id", "text"},
)
#: table -> (columns and kinds, required (non-null) columns)
TABLES: dict[str, tuple[dict[str, str], set[str]]] = {
    "hosp/patients": (
        {"subject_id": INT, "gender": STRING, "anchor_age": INT, "anchor_year": INT, "dod": DATE},
        {"subject_id", "anchor_age", "anchor_year"},
    ),
    "hosp/admissions": (
        {
            "subject_id": INT,
            "hadm_id": INT,
            "admittime": DATETIME,
            "dischtime": DATETIME,
            "deathtime": DATETIME,
            "admission_type": STRING,
            "discharge_location": STRING,
            "insurance": STRING,
        },
        {"subject_id", "hadm_id", "admittime", "dischtime"},
    ),
    "hosp/transfers": (
        {"subject_id": INT, "hadm_id": INT, "eventtype": STRING, "careunit": STRING, "intime": DATETIME},
        {"subject_id", "intime"},
    ),
    "hosp/diagnoses_icd": (
        {"subject_id": INT, "hadm_id": INT, "icd_code": STRING, "icd_version": INT},
        {"subject_id", "hadm_id", "icd_code", "icd_version"},
    ),
    "hosp/procedures_icd": (
        {"subject_id": INT, "hadm_id": INT, "icd_code": STRING, "icd_version": INT},
        {"subject_id", "hadm_id", "icd_code", "icd_version"},
    ),
    "hosp/drgcodes": (
        {"subject_id": INT, "hadm_id": INT, "drg_type": STRING, "drg_code": STRING, "description": STRING},
        {"subject_id", "hadm_id", "drg_type", "drg_code"},
    ),
    "hosp/labevents": (
        {
            "subject_id": INT,
            "hadm_id": INT,
            "itemid": INT,
            "charttime": DATETIME,
            "storetime": DATETIME,
            "value": STRING,
            "valuenum": FLOAT,
            "valueuom": STRING,
        },
        {"subject_id", "itemid", "charttime"},
    ),
    "hosp/prescriptions": (
        {"subject_id": INT, "hadm_id": INT, "starttime": DATETIME, "drug": STRING, "ndc": STRING},
        {"subject_id", "starttime"},
    ),
    "note/discharge": _NOTE_TABLE,
    "note/radiology": _NOTE_TABLE,
}
REQUIRED_TABLES = ("hosp/patients", "hosp/admissions")
DICTIONARIES = {
    "hosp/d_labitems": {"itemid": INT, "label": STRING, "fluid": STRING, "category": STRING},
    "hosp/d_icd_diagnoses": {"icd_code": STRING, "icd_version": INT, "long_title": STRING},
    "hosp/d_icd_procedures": {"icd_code": STRING, "icd_version": INT, "long_title": STRING},
}
SECRET = {"text"}
FIXED_DESCRIPTIONS = {
    "MEDS_BIRTH": "birth (1 January of anchor_year - anchor_age)",
    "MEDS_DEATH": "death (deathtime, else dod)",
    "NOTE//DISCHARGE": "discharge summary (text in text_value)",
    "NOTE//RADIOLOGY": "radiology report (text in text_value)",
}


class MimicIVSource:
    """Reader of a MIMIC-IV folder (``hosp/``, optional ``note/``) into MEDS event batches.

    Parameters
    ----------
    input_dir : Path
        Folder holding ``hosp/`` (and optionally ``note/``).
    block_size : int
        Bytes per CSV block read at a time.
    """

    name = "mimic-iv"

    def __init__(self, input_dir: Path, block_size: int = 16 << 20):
        self.input_dir = Path(input_dir)
        self.block_size = block_size
        self.paths: dict[str, Path] = {}
        self.absent: list[str] = []
        self.rows_read: dict[str, int] = {}
        self._drg_desc: list[pl.DataFrame] = []
        self.adm: pl.DataFrame | None = None
        self.subjects: pl.DataFrame | None = None

    # ------------------------------------------------------------------ schema
    def reader(self, table: str) -> TableReader:
        """Return the reader of one MIMIC-IV table, with the column kinds it must parse."""
        kinds = TABLES[table][0] if table in TABLES else DICTIONARIES[table]
        return TableReader(
            self.paths[table],
            kinds,
            secret=SECRET,
            block_size=self.block_size,
            multiline=table.startswith("note/"),
        )

    def check(self) -> None:
        """Check every present table (columns, first block's types) before any work; note absent ones."""
        if not self.input_dir.is_dir():
            raise InputSchemaError(
                f"{self.input_dir}: input folder not found; pass the MIMIC-IV root (holding hosp/)"
            )
        for table in [*TABLES, *DICTIONARIES]:
            path = find_table(self.input_dir, table)
            if path is None:
                if table in REQUIRED_TABLES:
                    raise InputSchemaError(
                        f"{self.input_dir / table}.csv.gz: required table is missing (also tried .csv, .parquet); "
                        "pass the MIMIC-IV root folder that holds hosp/"
                    )
                self.absent.append(table)
                continue
            self.paths[table] = path
            self.reader(table).check()  # header, columns, first block's types
        if self.absent:
            log.info("mimic-iv: tables absent (their modality will be empty): %s", ", ".join(self.absent))

    def tables(self) -> list[str]:
        """Streamed tables present, in processing order."""
        return [t for t in TABLES if t in self.paths and t not in REQUIRED_TABLES]

    # ------------------------------------------------------------------ whole tables
    def _read_whole(self, table: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        kinds, required = TABLES[table]
        goods, rejs = [], []
        for b in self.reader(table).batches():
            g, r = parse_columns(b, table, kinds, required, SECRET)
            goods.append(g)
            rejs.append(r)
        self.rows_read[table] = sum(g.height for g in goods) + sum(r.height for r in rejs)
        return pl.concat(goods), pl.concat(rejs)

    def prepare(self) -> tuple[np.ndarray, list[tuple[str, pl.DataFrame, pl.DataFrame]]]:
        """Read patients and admissions; return all subject ids and their (table, events, rejects)."""
        adm, adm_rej = self._read_whole("hosp/admissions")
        bad_order = adm.filter(pl.col("dischtime") < pl.col("admittime"))
        adm_rej = pl.concat(
            [adm_rej, make_rejects(bad_order, "hosp/admissions", "dischtime before admittime", "dischtime")]
        )
        adm = adm.filter(~(pl.col("dischtime") < pl.col("admittime")))
        dup = ~adm["hadm_id"].is_first_distinct()
        adm_rej = pl.concat(
            [adm_rej, make_rejects(adm.filter(dup), "hosp/admissions", "duplicated hadm_id", "hadm_id")]
        )
        adm = adm.filter(~dup)
        self.adm = adm.select("subject_id", "hadm_id", "admittime", "dischtime", "deathtime")

        pat, pat_rej = self._read_whole("hosp/patients")
        all_subjects = pl.concat(
            [pat.select("subject_id"), pat_rej.select("subject_id").drop_nulls(), adm.select("subject_id")]
        )
        neg = pat["anchor_age"] < 0
        pat_rej = pl.concat(
            [pat_rej, make_rejects(pat.filter(neg), "hosp/patients", "negative anchor_age", "anchor_age")]
        )
        pat = pat.filter(~neg)
        dup = ~pat["subject_id"].is_first_distinct()
        pat_rej = pl.concat(
            [pat_rej, make_rejects(pat.filter(dup), "hosp/patients", "duplicated subject_id", "subject_id")]
        )
        pat = pat.filter(~dup)
        self.subjects = all_subjects.unique().sort("subject_id")

        adm_events = pl.concat(
            [
                adm.select(
                    "subject_id",
                    "hadm_id",
                    time="admittime",
                    code=pl.lit("HOSPITAL_ADMISSION//") + pl.col("admission_type").fill_null("UNKNOWN"),
                ),
                adm.select(
                    "subject_id",
                    "hadm_id",
                    time="dischtime",
                    code=pl.lit("HOSPITAL_DISCHARGE//") + pl.col("discharge_location").fill_null("UNKNOWN"),
                ),
                adm.filter(pl.col("insurance").is_not_null()).select(
                    "subject_id",
                    "hadm_id",
                    time="admittime",
                    code=pl.lit("INSURANCE//") + pl.col("insurance"),
                ),
                adm.filter(pl.col("deathtime").is_not_null()).select(
                    "subject_id", "hadm_id", time="deathtime", code=pl.lit("MEDS_DEATH")
                ),
            ],
            how="diagonal",
        )
        died_in_adm = adm.filter(pl.col("deathtime").is_not_null()).select("subject_id").unique()
        birth = pl.datetime(pl.col("anchor_year") - pl.col("anchor_age"), 1, 1, time_unit="us")
        pat_events = pl.concat(
            [
                pat.select("subject_id", time=birth, code=pl.lit("MEDS_BIRTH")),
                pat.filter(pl.col("gender").is_not_null()).select(
                    "subject_id", time=birth, code=pl.lit("GENDER//") + pl.col("gender")
                ),
                pat.filter(pl.col("dod").is_not_null())
                .join(died_in_adm, on="subject_id", how="anti")
                .select("subject_id", time="dod", code=pl.lit("MEDS_DEATH")),
            ],
            how="diagonal",
        )
        return self.subjects["subject_id"].to_numpy(), [
            ("hosp/patients", to_events(pat_events), pat_rej),
            ("hosp/admissions", to_events(adm_events), adm_rej),
        ]

    # ------------------------------------------------------------------ streamed tables
    def iter_table(self, table: str) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        """Yield (events, rejects) per block of ``table``."""
        kinds, required = TABLES[table]
        n = 0
        for b in self.reader(table).batches():
            n += b.df.height
            good, rej = parse_columns(b, table, kinds, required, SECRET)
            unknown = good.join(self.subjects, on="subject_id", how="anti")
            rejs = [rej]
            if unknown.height:
                rejs.append(
                    make_rejects(unknown, table, "subject_id not in patients or admissions", "subject_id")
                )
                good = good.join(self.subjects, on="subject_id", how="semi")
            events, more = self._convert(table, good)
            if more is not None and more.height:
                rejs.append(more)
            yield events, pl.concat(rejs)
        self.rows_read[table] = n

    def _with_discharge(self, table: str, good: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        joined = good.join(self.adm.select("hadm_id", "dischtime"), on="hadm_id", how="left")
        missing = joined.filter(pl.col("dischtime").is_null())
        rej = make_rejects(
            missing, table, "hadm_id not in admissions (or its admission was rejected)", "hadm_id"
        )
        return joined.filter(pl.col("dischtime").is_not_null()), rej

    def _convert(self, table: str, g: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        if table in ("hosp/diagnoses_icd", "hosp/procedures_icd"):
            g, rej = self._with_discharge(table, g)
            kind = "DIAGNOSIS" if table == "hosp/diagnoses_icd" else "PROCEDURE"
            code = pl.concat_str(
                pl.lit(f"{kind}//ICD//"),
                pl.col("icd_version").cast(pl.String),
                pl.lit("//"),
                pl.col("icd_code").str.strip_chars(),
            )
            return to_events(g.select("subject_id", "hadm_id", time="dischtime", code=code)), rej
        if table == "hosp/drgcodes":
            g, rej = self._with_discharge(table, g)
            code = pl.concat_str(pl.lit("DRG//"), pl.col("drg_type"), pl.lit("//"), pl.col("drg_code"))
            self._drg_desc.append(g.select(code=code, description="description").unique(subset="code"))
            return to_events(g.select("subject_id", "hadm_id", time="dischtime", code=code)), rej
        if table == "hosp/transfers":
            code = pl.concat_str(
                pl.lit("TRANSFER//"),
                pl.col("eventtype").fill_null("UNKNOWN"),
                pl.lit("//"),
                pl.col("careunit").fill_null("UNKNOWN"),
            )
            return to_events(g.select("subject_id", "hadm_id", time="intime", code=code)), None
        if table == "hosp/labevents":
            code = pl.concat_str(
                pl.lit("LAB//"),
                pl.col("itemid").cast(pl.String),
                pl.lit("//"),
                pl.col("valueuom").fill_null("UNK"),
            )
            return to_events(
                g.select(
                    "subject_id",
                    "hadm_id",
                    time=pl.max_horizontal("charttime", "storetime"),
                    code=code,
                    numeric_value="valuenum",
                    text_value=pl.when(pl.col("valuenum").is_null()).then(pl.col("value")),
                )
            ), None
        if table == "hosp/prescriptions":
            drug = pl.coalesce(pl.col("drug").str.strip_chars(), pl.col("ndc"))
            missing = g.filter(drug.is_null())
            rej = make_rejects(missing, table, "missing drug and ndc", "drug")
            g = g.filter(drug.is_not_null())
            return to_events(
                g.select("subject_id", "hadm_id", time="starttime", code=pl.lit("MEDICATION//") + drug)
            ), rej
        if table.startswith("note/"):
            kind = table.split("/")[1].upper()
            t = pl.coalesce("storetime", "charttime")
            missing = g.filter(t.is_null())
            rej = make_rejects(missing, table, "missing storetime and charttime", "storetime")
            g = g.filter(t.is_not_null())
            return to_events(
                g.select("subject_id", "hadm_id", time=t, code=pl.lit(f"NOTE//{kind}"), text_value="text")
            ), rej
        raise AssertionError(f"no converter for {table}")  # pragma: no cover - TABLES and _convert agree

    # ------------------------------------------------------------------ shards and metadata
    def finalize_shard(self, df: pl.DataFrame) -> pl.DataFrame:
        """Return the shard unchanged (MIMIC-IV events carry their hadm_id)."""
        return df

    def input_splits(self) -> None:
        """Return None: the MIMIC-IV layout carries no subject splits (the keyed hash assigns them)."""
        return None

    def describe(self, codes: pl.DataFrame) -> pl.DataFrame:
        """``codes`` (column ``code``) with ``description`` and ``parent_codes`` added."""
        parts = pl.col("code").str.split("//")
        out = codes.with_columns(
            _family=parts.list.get(0, null_on_oob=True),
            _p1=parts.list.get(1, null_on_oob=True),
            _p2=parts.list.get(2, null_on_oob=True),
            _p3=parts.list.get(3, null_on_oob=True),
        )
        desc = [pl.col("code").replace_strict(FIXED_DESCRIPTIONS, default=None, return_dtype=pl.String)]
        if "hosp/d_labitems" in self.paths:
            d = (
                self._dictionary("hosp/d_labitems")
                .select(
                    _p1=pl.col("itemid").cast(pl.String),
                    _lab=pl.concat_str(
                        "label",
                        pl.lit(" ("),
                        pl.col("fluid").fill_null("?"),
                        pl.lit(", "),
                        pl.col("category").fill_null("?"),
                        pl.lit(")"),
                    ),
                )
                .unique(subset="_p1")
            )
            out = out.join(d, on="_p1", how="left")
            desc.append(pl.when(pl.col("_family") == "LAB").then(pl.col("_lab")))
        for table, fam in (("hosp/d_icd_diagnoses", "DIAGNOSIS"), ("hosp/d_icd_procedures", "PROCEDURE")):
            if table in self.paths:
                d = (
                    self._dictionary(table)
                    .select(
                        _p2=pl.col("icd_version").cast(pl.String),
                        _p3=pl.col("icd_code").str.strip_chars(),
                        **{f"_{fam}": "long_title"},
                    )
                    .unique(subset=["_p2", "_p3"])
                )
                out = out.join(d, on=["_p2", "_p3"], how="left")
                desc.append(pl.when(pl.col("_family") == fam).then(pl.col(f"_{fam}")))
        if self._drg_desc:
            d = pl.concat(self._drg_desc).unique(subset="code", keep="first").rename({"description": "_drg"})
            out = out.join(d, on="code", how="left")
            desc.append(pl.col("_drg"))
        parent = (
            pl.when((pl.col("_family") == "DIAGNOSIS") & pl.col("_p3").is_not_null())
            .then(pl.concat_list(pl.concat_str(pl.lit("ICD"), pl.col("_p2"), pl.lit("CM/"), pl.col("_p3"))))
            .when((pl.col("_family") == "PROCEDURE") & (pl.col("_p2") == "10"))
            .then(pl.concat_list(pl.concat_str(pl.lit("ICD10PCS/"), pl.col("_p3"))))
            .when((pl.col("_family") == "PROCEDURE") & (pl.col("_p2") == "9"))
            .then(pl.concat_list(pl.concat_str(pl.lit("ICD9Proc/"), pl.col("_p3"))))
            .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        )
        return out.select("code", description=pl.coalesce(desc), parent_codes=parent).sort("code")

    def _dictionary(self, table: str) -> pl.DataFrame:
        kinds = DICTIONARIES[table]
        frames = []
        for b in self.reader(table).batches():
            g, _ = parse_columns(b, table, kinds, set(), SECRET)
            frames.append(g.drop("_row"))
        return pl.concat(frames)

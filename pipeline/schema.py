"""The data contracts between stages: column names, dtypes and folder layout.

Stages talk only through files; this module is the one place that says what those files hold.
"""

from __future__ import annotations

import pyarrow as pa

# --- MEDS events (written by `ingest`, read by `cohort` and `features`) -------------------------------
# A MEDS 0.4 dataset: <events>/data/*.parquet shards, subject-contiguous and sorted by (subject_id, time);
# <events>/metadata/codes.parquet, metadata/dataset.json, metadata/subject_splits.parquet.
# `time` is when the fact became *available* (ICD/DRG at discharge, labs at storetime, ...). Static rows
# (none here but tolerated on read) have a null time.
EVENTS_SCHEMA = pa.schema(
    [
        ("subject_id", pa.int64()),
        ("time", pa.timestamp("us")),
        ("code", pa.string()),
        ("numeric_value", pa.float32()),
        ("text_value", pa.large_string()),  # MEDS 0.4 types notes as large_string
        ("hadm_id", pa.int64()),  # extension column: admission the event belongs to (null if none)
    ]
)

# metadata/codes.parquet and metadata/subject_splits.parquet, with the exact types of the MEDS 0.4 schemas
CODES_SCHEMA = pa.schema([("code", pa.string()), ("description", pa.string()), ("parent_codes", pa.list_(pa.string()))])
SUBJECT_SPLITS_SCHEMA = pa.schema([("subject_id", pa.int64()), ("split", pa.string())])
#: the MEDS version whose schemas the ingest output follows (tests check it against the `meds` package)
MEDS_VERSION = "0.4.1"

# Code prefixes (the part before the first "//") that the cohort and features stages rely on.
ADMISSION = "HOSPITAL_ADMISSION"  # HOSPITAL_ADMISSION//<admission_type>, time = admittime
DISCHARGE = "HOSPITAL_DISCHARGE"  # HOSPITAL_DISCHARGE//<discharge_location>, time = dischtime
BIRTH = "MEDS_BIRTH"
DEATH = "MEDS_DEATH"
DIAGNOSIS = "DIAGNOSIS"  # DIAGNOSIS//ICD//<version>//<code>, time = dischtime of its admission
PROCEDURE = "PROCEDURE"  # PROCEDURE//ICD//<version>//<code>, time = dischtime of its admission
DRG = "DRG"  # DRG//<type>//<code>, time = dischtime
LAB = "LAB"  # LAB//<itemid>//<unit>, numeric_value, time = storetime (else charttime)
MEDICATION = "MEDICATION"  # MEDICATION//<drug>, time = starttime
NOTE = "NOTE"  # NOTE//<DISCHARGE|RADIOLOGY>, text_value, time = storetime (else charttime)
GENDER = "GENDER"  # GENDER//<F|M>, time = birth time
INSURANCE = "INSURANCE"  # INSURANCE//<value>, time = admittime, hadm_id set
TRANSFER = "TRANSFER"  # TRANSFER//<eventtype>//<careunit>, time = intime

# --- Cohort labels (written by `cohort`) -------------------------------------------------------------
# data/cohorts/<cohort>/labels.parquet, one row per prediction, sorted by (subject_id, prediction_time).
LABEL_COLUMNS = {
    "subject_id": pa.int64(),
    "hadm_id": pa.int64(),
    "prediction_time": pa.timestamp("us"),
    "boolean_value": pa.bool_(),
    "split": pa.string(),  # "train" | "tuning" | "held_out"
    "event_time_days": pa.float64(),  # time-to-event duration from prediction_time, in days
    "event_type": pa.string(),  # "outcome" | "competing" | "censored"
    "age_band": pa.string(),
    "sex": pa.string(),
    "admission_type": pa.string(),
    "insurance": pa.string(),  # null where the source has none
}
SPLITS = ("train", "tuning", "held_out")
# data/cohorts/<cohort>/meds_labels.parquet: the same rows in the MEDS 0.4 label schema (no extra columns)
MEDS_LABEL_SCHEMA = pa.schema(
    [("subject_id", pa.int64()), ("prediction_time", pa.timestamp("us")), ("boolean_value", pa.bool_())]
)

# --- Features (written by `features`) ----------------------------------------------------------------
# data/features/<cohort>/<modality>.parquet: float32 columns only, same row count and order as labels.
# data/features/<cohort>/mask.parquet: one boolean column per modality (True = the row has that modality).
MODALITIES = ("codes", "labs", "medications", "notes")

# --- Embeddings (written by `embed`) -----------------------------------------------------------------
# data/embeddings/<cohort>/<method>.parquet: float32 columns named "<structure>__<k>", same rows as labels.
EMBEDDING_COLUMN_SEPARATOR = "__"

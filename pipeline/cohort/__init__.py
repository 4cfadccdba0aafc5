"""Cohorts as YAML: typed task definitions -> labels, subject-level splits, attrition, ACES export.

Public API: :func:`build_cohort` (the stage), :func:`load_spec`, :func:`format_attrition`,
:func:`compute_labels` (the pure computation), :class:`CohortSpec`, :data:`CLI_HELP`.
"""

from __future__ import annotations

from pipeline.cohort.build import build_cohort, format_attrition
from pipeline.cohort.criteria import compute_labels
from pipeline.cohort.spec import (
    CohortSpec,
    check_cohort_name,
    cohort_name,
    format_duration,
    json_schema,
    load_spec,
    parse_duration,
    parse_spec,
)

__all__ = [
    "CLI_HELP",
    "CohortSpec",
    "check_cohort_name",
    "build_cohort",
    "cohort_name",
    "compute_labels",
    "format_attrition",
    "format_duration",
    "json_schema",
    "load_spec",
    "parse_duration",
    "parse_spec",
]

CLI_HELP = """\
cohort YAML fields (full reference with examples: cohorts/README.md; JSON Schema: cohorts/cohort.schema.json)
durations: a number and a unit: 48h, 30d, 90 minutes, 1.5 days, 1d 12h (s, min, h, d, w; never negative)

description: text                          free text for reports
population:
  min_age: 18 / max_age: null              whole years at admission (calendar age from MEDS_BIRTH)
  admission_types: {include: [], exclude: [ELECTIVE]}   HOSPITAL_ADMISSION//<type>; empty include = all
  min_stay: 24h                            discharge - admission >= this (null = no minimum)
  alive_at_prediction: true                must be true (a death before the prediction would leak)
  in_hospital_at_prediction: true          stay still ongoing at the prediction time
  min_history: 48h                         first recorded event at least this long before the prediction
  exclusions: [{name: palliative, codes: [DIAGNOSIS//ICD//10//Z515], lookback: 365d}]  past events only
  admissions_per_subject: all | first      keep every eligible stay, or each subject's first
prediction:
  index_event: admission | discharge       the trigger
  offset: 48h                              prediction_time = index time + offset (0h = at the index event)
history:
  lookback: all | 365d                     features use events in [prediction_time - lookback, prediction_time]
outcome:                                   one of:
  type: death_before_discharge             label = in-hospital death after the prediction time
  type: readmission                        label = new admission within `window` after discharge
  window: 30d
  not_counted_admission_types: [ELECTIVE]  planned admissions that do not count
  competing_death: competing | exclude     death in the window before readmission: keep as False or drop
censoring:
  end_of_followup: dataset_end | subject_last_event | 2190-01-01
  insufficient_followup: exclude | censor  follow-up ends before the window does: drop, or keep as censored
split: {fractions: [0.7, 0.15, 0.15], seed: 0}   by subject (train, tuning, held_out)
subgroups: {age_bands: [18, 40, 65, 80]}   -> age_band 18-39, 40-64, 65-79, 80+
outputs: labels.parquet, attrition.json, aces.yaml, cohort.yaml in the output folder
"""

"""Small hand-made MEDS fixtures for the features tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from pipeline.schema import EVENTS_SCHEMA

T0 = datetime(2150, 1, 1, 8, 0, 0)


def day(d: float) -> datetime:
    """T0 + d days."""
    return T0 + timedelta(days=d)


def ev(subject_id, time, code, numeric_value=None, text_value=None, hadm_id=None) -> dict:
    return dict(
        subject_id=subject_id,
        time=time,
        code=code,
        numeric_value=numeric_value,
        text_value=text_value,
        hadm_id=hadm_id,
    )


def write_events(events: list[dict], folder: Path, shards: int = 2) -> Path:
    """Write ``events`` as a MEDS folder (``data/<k>.parquet``, subject-contiguous, sorted)."""
    frame = pl.DataFrame(events, schema=pl.Schema(EVENTS_SCHEMA)).sort("subject_id", "time", "code")
    (folder / "data").mkdir(parents=True, exist_ok=True)
    subjects = frame["subject_id"].unique().sort().to_list()
    per = max(1, -(-len(subjects) // shards))
    for k in range(0, len(subjects), per):
        part = frame.filter(pl.col("subject_id").is_in(subjects[k : k + per]))
        part.write_parquet(folder / "data" / f"{k // per}.parquet")
    return folder


def write_labels(rows: list[dict], path: Path) -> Path:
    """rows: dicts with subject_id, hadm_id, prediction_time, split (boolean_value defaults False)."""
    frame = pl.DataFrame(
        [{"boolean_value": False, **r} for r in rows],
        schema={
            "subject_id": pl.Int64,
            "hadm_id": pl.Int64,
            "prediction_time": pl.Datetime("us"),
            "boolean_value": pl.Boolean,
            "split": pl.String,
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


def base_dataset(held_out_variant: int = 0) -> tuple[list[dict], list[dict]]:
    """A mortality-style cohort: 10 train subjects, 2 held_out, each with a prior and a current admission.

    Prior admission k*10+1: days 0-3, codes at its discharge (day 3). Current admission k*10+2 from day 30,
    prediction at day 32 (48 h), codes at discharge day 35. Labs drawn on the current stay at day 30.5 and
    day 31.5 (stored), meds started day 30.2, a radiology note day 31, a discharge note of the prior stay
    at day 3. Subject 5 has no labs at all. ``held_out_variant`` changes held-out subjects' data only.
    """
    events: list[dict] = []
    labels: list[dict] = []
    for s in range(1, 13):
        split = "train" if s <= 10 else "held_out"
        prior, cur = s * 10 + 1, s * 10 + 2
        events += [
            ev(s, day(0), "HOSPITAL_ADMISSION//EW EMER.", hadm_id=prior),
            ev(s, day(3), "HOSPITAL_DISCHARGE//HOME", hadm_id=prior),
            ev(s, day(3), "DIAGNOSIS//ICD//10//I5023", hadm_id=prior),
            ev(s, day(3), "DIAGNOSIS//ICD//9//4280", hadm_id=prior),
            ev(s, day(3), "PROCEDURE//ICD//9//3893", hadm_id=prior),
            ev(s, day(30), "HOSPITAL_ADMISSION//EW EMER.", hadm_id=cur),
            ev(s, day(35), "HOSPITAL_DISCHARGE//HOME", hadm_id=cur),
            ev(s, day(35), "DIAGNOSIS//ICD//10//J189", hadm_id=cur),  # current stay: must never be seen
            ev(s, day(35), "DIAGNOSIS//ICD//10//I5023", hadm_id=cur),
            ev(s, day(30.2), "MEDICATION//Heparin", hadm_id=cur),
            ev(s, day(30.2), "MEDICATION//heparin ", hadm_id=cur),
            ev(s, day(30.3), "MEDICATION//Furosemide", hadm_id=cur),
            ev(
                s,
                day(31),
                "NOTE//RADIOLOGY",
                text_value=f"Chest x-ray shows mild edema, patient {s}.",
                hadm_id=cur,
            ),
            ev(
                s, day(3), "NOTE//DISCHARGE", text_value="Discharged home in stable condition.", hadm_id=prior
            ),
        ]
        if s != 5:
            events += [
                ev(s, day(30.5), "LAB//50912//mg/dL", numeric_value=1.0 + 0.1 * s, hadm_id=cur),
                ev(s, day(31.5), "LAB//50912//mg/dL", numeric_value=2.0 + 0.1 * s, hadm_id=cur),
                ev(s, day(31.6), "LAB//50971//mEq/L", numeric_value=None, hadm_id=cur),
            ]
        if split == "held_out" and held_out_variant:
            events += [
                ev(s, day(30.4), "DIAGNOSIS//ICD//10//Z999", hadm_id=cur),
                ev(s, day(30.4), "LAB//50912//mg/dL", numeric_value=1000.0 * held_out_variant, hadm_id=cur),
                ev(s, day(30.4), "MEDICATION//Novel drug", hadm_id=cur),
            ]
        labels.append({"subject_id": s, "hadm_id": cur, "prediction_time": day(32), "split": split})
    return events, labels


@pytest.fixture
def small_config():
    from pipeline.features import FeaturesConfig

    return FeaturesConfig.model_validate(
        {
            "codes": {"min_count": 1, "icd_rollup": False},
            "labs": {"min_count": 1},
            "medications": {"min_count": 1},
            "notes": {"encoder": "tfidf", "tfidf_dims": 4},
        }
    )

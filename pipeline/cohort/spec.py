"""The cohort definition language: pydantic models for a cohort YAML and the duration grammar.

A cohort YAML says who is in a study (``population``), when a prediction is made (``prediction``), what the
features may look at (``history``), what is predicted (``outcome``), how follow-up ends (``censoring``),
how subjects are split (``split``) and which subgroup columns to derive (``subgroups``). Every model forbids
unknown keys; :func:`load_spec` turns any problem into a one-line :class:`~pipeline.exceptions.ConfigError`
naming the file, the key path and the value (with the nearest valid key suggested for a typo).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pipeline.exceptions import ConfigError
from pipeline.params import read_yaml

# --- durations ---------------------------------------------------------------------------------------

_UNIT_SECONDS = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "wk": 604800.0, "week": 604800.0, "weeks": 604800.0,
}  # fmt: skip
_AMBIGUOUS_UNITS = {"m", "mo", "month", "months", "y", "yr", "yrs", "year", "years"}
_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]+)\s*")
#: The longest duration accepted (guards against overflow); 200 years.
MAX_DURATION = timedelta(days=200 * 365)
DURATION_HELP = (
    "write a number and a unit, e.g. 48h, 30d, 90 minutes, 1.5 days, 1d 12h (units: s, min, h, d, w)"
)


def parse_duration(value: Any) -> timedelta:
    """Parse a duration such as ``48h``, ``30d``, ``90 minutes``, ``1.5 days`` or ``1d 12h``.

    Parameters
    ----------
    value : str or datetime.timedelta
        The text from the YAML file. Bare numbers are refused (the unit is never guessed), as are ``m``
        (minutes or months?), months and years (not a fixed length: write days).

    Returns
    -------
    datetime.timedelta
        Non-negative, at most :data:`MAX_DURATION`.

    Raises
    ------
    ValueError
        The text is not a duration, is negative, or is too long. The message says what to write instead.
    """
    if isinstance(value, timedelta):
        td = value
    elif isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"not a duration (a {type(value).__name__}); {DURATION_HELP}")
    else:
        text = value.strip()
        if text.startswith("-"):
            raise ValueError("negative duration; durations count forward in time and must be >= 0")
        if not text:
            raise ValueError(f"empty duration; {DURATION_HELP}")
        pos, seconds = 0, 0.0
        while pos < len(text):
            match = _PART.match(text, pos)
            if match is None or match.end() == pos:
                raise ValueError(f"unparseable duration; {DURATION_HELP}")
            number, unit = match.group(1), match.group(2).lower()
            if unit in _AMBIGUOUS_UNITS:
                raise ValueError(
                    f"unit {unit!r} is ambiguous or has no fixed length; write days or minutes instead"
                )
            if unit not in _UNIT_SECONDS:
                raise ValueError(f"unknown unit {unit!r}; {DURATION_HELP}")
            seconds += float(number) * _UNIT_SECONDS[unit]
            pos = match.end()
        if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
            raise ValueError(f"duration longer than the maximum of {MAX_DURATION.days} days")
        td = timedelta(microseconds=round(seconds * 1e6))
    if td < timedelta(0):
        raise ValueError("negative duration; durations count forward in time and must be >= 0")
    if td > MAX_DURATION:
        raise ValueError(f"duration longer than the maximum of {MAX_DURATION.days} days")
    return td


def format_duration(td: timedelta) -> str:
    """Canonical text for a duration, in the largest unit that divides it exactly (``36h``, ``30d``)."""
    us = td // timedelta(microseconds=1)
    if us == 0:
        return "0h"
    day = 86_400_000_000
    if us % day == 0 and us >= 3 * day:
        return f"{us // day}d"
    for unit, size in (("h", 3_600_000_000), ("min", 60_000_000), ("s", 1_000_000)):
        if us % size == 0:
            return f"{us // size}{unit}"
    return f"{us}us"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\s*([0-9.]+\s*[A-Za-z]+\s*)+$", "examples": ["48h", "30d"]}
    ),
]


def _lookback(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    return parse_duration(value)


Lookback = Annotated[
    Literal["all"] | timedelta,
    BeforeValidator(_lookback),
    PlainSerializer(lambda v: v if v == "all" else format_duration(v), return_type=str),
    WithJsonSchema({"anyOf": [{"const": "all"}, {"type": "string", "examples": ["365d"]}]}),
]


# --- models ------------------------------------------------------------------------------------------


_StrictFloat = Annotated[float, Field(strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdmissionTypes(_Strict):
    """Which ``HOSPITAL_ADMISSION//<type>`` values may be an index stay (empty ``include`` = all)."""

    include: list[str] = Field(default_factory=list, description="only these types; empty = every type")
    exclude: list[str] = Field(default_factory=list, description="never these types")

    @model_validator(mode="after")
    def _no_overlap(self) -> AdmissionTypes:
        both = sorted(set(self.include) & set(self.exclude))
        if both:
            raise ValueError(f"contradictory: {both} listed in both include and exclude")
        return self


class Exclusion(_Strict):
    """Drop a prediction if the subject has a coded event in the ``lookback`` before it.

    An event counts when its code starts with one of ``codes``; only the past is looked at.
    """

    name: str = Field(min_length=1, description="label of this criterion in the attrition table")
    codes: list[str] = Field(min_length=1, description="code prefixes, e.g. DIAGNOSIS//ICD//10//Z51")
    lookback: Lookback = Field(default="all", description="'all' or a duration before the prediction time")


class Population(_Strict):
    """Who is eligible; every criterion is counted in ``attrition.json``."""

    min_age: _StrictFloat | None = Field(
        default=None, ge=0, le=150, description="age in whole years at admission >="
    )
    max_age: _StrictFloat | None = Field(
        default=None, ge=0, le=150, description="age in whole years at admission <="
    )
    admission_types: AdmissionTypes = Field(default_factory=AdmissionTypes)
    min_stay: Duration | None = Field(default=None, description="discharge - admission >= this")
    alive_at_prediction: StrictBool = Field(
        default=True, description="no death at or before the prediction time"
    )
    in_hospital_at_prediction: StrictBool = Field(default=False, description="the stay is still ongoing")
    min_history: Duration | None = Field(
        default=None, description="first recorded event <= prediction - this"
    )
    exclusions: list[Exclusion] = Field(default_factory=list)
    admissions_per_subject: Literal["all", "first"] = Field(
        default="all", description="'first': keep only each subject's first eligible stay"
    )

    @model_validator(mode="after")
    def _ages(self) -> Population:
        if self.min_age is not None and self.max_age is not None and self.max_age < self.min_age:
            raise ValueError(f"contradictory: max_age {self.max_age} < min_age {self.min_age}")
        return self


class Prediction(_Strict):
    """When the prediction is made: ``index_event`` time + ``offset``."""

    index_event: Literal["admission", "discharge"]
    offset: Duration = Field(default=timedelta(0), description="time after the index event, e.g. 48h")


class History(_Strict):
    """What the features may use: events in ``[prediction_time - lookback, prediction_time]``."""

    lookback: Lookback = Field(default="all")


class DeathBeforeDischarge(_Strict):
    """Label = the patient dies in hospital (before/at discharge of the index stay)."""

    type: Literal["death_before_discharge"]

    @property
    def key(self) -> str:
        """The outcome's identity, independent of the cohort's name (e.g. keys a simulator's truth)."""
        return "death_before_discharge"


class Readmission(_Strict):
    """Label = a new admission within ``window`` after discharge of the index stay."""

    type: Literal["readmission"]
    window: Duration = Field(description="e.g. 30d after discharge")
    not_counted_admission_types: list[str] = Field(
        default_factory=list, description="planned admissions that do not count as readmission, e.g. ELECTIVE"
    )
    competing_death: Literal["exclude", "competing"] = Field(
        default="competing",
        description="death in the window before any readmission: drop the row, or keep it labelled False "
        "with event_type 'competing'",
    )

    @field_validator("window")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("contradictory: an empty outcome window (0) can never contain a readmission")
        return v

    @property
    def key(self) -> str:
        """The outcome's identity, independent of the cohort's name: ``readmission_<window>``, e.g. 30d."""
        return f"readmission_{format_duration(self.window)}"


class Censoring(_Strict):
    """Where follow-up ends, and what to do with rows whose follow-up ends before the outcome window does."""

    end_of_followup: Literal["dataset_end", "subject_last_event"] | datetime = Field(
        default="dataset_end",
        description="'dataset_end' (latest event time in the data), 'subject_last_event', or a date",
    )
    insufficient_followup: Literal["exclude", "censor"] = Field(
        default="exclude",
        description="'exclude' the row, or keep it labelled False with event_type 'censored'",
    )

    @field_validator("end_of_followup")
    @classmethod
    def _naive(cls, v: Any) -> Any:
        if isinstance(v, datetime) and v.tzinfo is not None:
            raise ValueError("give a date or a time without time zone (event times are naive, as in MEDS)")
        return v


class Split(_Strict):
    """Subject-level split (a keyed hash of the subject id, see :mod:`pipeline.splits`)."""

    fractions: tuple[_StrictFloat, _StrictFloat, _StrictFloat] = Field(
        default=(0.7, 0.15, 0.15), description="train, tuning, held_out"
    )
    seed: StrictInt = Field(default=0, ge=0)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not math.isfinite(f) or f < 0 for f in v):
            raise ValueError("fractions must be finite and >= 0")
        if abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1 (they sum to {sum(v):g})")
        if v[0] <= 0:
            raise ValueError("the train fraction must be > 0")
        return v


class Subgroups(_Strict):
    """Subgroup columns: ``age_band`` edges (years), e.g. [18, 40, 65, 80] -> 18-39, 40-64, 65-79, 80+."""

    age_bands: list[StrictInt] = Field(default_factory=lambda: [18, 40, 65, 80], min_length=1)

    @field_validator("age_bands")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(b >= a for a, b in zip(v[1:], v[:-1], strict=False)) or v[0] < 0:
            raise ValueError("age_bands must be non-negative and strictly increasing")
        return v


class CohortSpec(_Strict):
    """A whole cohort definition (one YAML file; the cohort's name is the file's stem)."""

    description: str = Field(default="", description="free text shown in reports")
    population: Population = Field(default_factory=Population)
    prediction: Prediction
    history: History = Field(default_factory=History)
    outcome: Annotated[DeathBeforeDischarge | Readmission, Field(discriminator="type")]
    censoring: Censoring = Field(default_factory=Censoring)
    split: Split = Field(default_factory=Split)
    subgroups: Subgroups = Field(default_factory=Subgroups)

    @model_validator(mode="after")
    def _windows(self) -> CohortSpec:
        pred, pop = self.prediction, self.population
        if not pop.alive_at_prediction:
            raise ValueError(
                "contradictory windows: population.alive_at_prediction is false, so a death (which defines the "
                "label or a competing event) could lie inside the input window; set it to true"
            )
        if pred.index_event == "discharge" and pop.in_hospital_at_prediction:
            raise ValueError(
                "contradictory windows: prediction.index_event is 'discharge' but "
                "population.in_hospital_at_prediction is true (nobody is still admitted after discharge)"
            )
        if self.outcome.type == "death_before_discharge" and pred.index_event == "discharge":
            raise ValueError(
                "contradictory windows: outcome 'death_before_discharge' is already known at a prediction "
                "made at/after discharge; use prediction.index_event: admission"
            )
        if pred.index_event == "admission" and not pop.in_hospital_at_prediction:
            raise ValueError(
                "contradictory windows: a prediction after admission needs population.in_hospital_at_prediction: "
                "true, or the discharge (which defines the label) may fall inside the input window"
            )
        if (
            pop.min_history is not None
            and self.history.lookback != "all"
            and self.history.lookback < pop.min_history
        ):
            raise ValueError(
                f"contradictory windows: history.lookback {format_duration(self.history.lookback)} is shorter "
                f"than population.min_history {format_duration(pop.min_history)}"
            )
        return self


# --- loading -----------------------------------------------------------------------------------------


def check_cohort_name(name: str, source: str = "cohort name") -> str:
    """Return ``name`` if it is a safe single folder name (output paths are derived from it)."""
    from pipeline.workspace import check_name

    if not isinstance(name, str):
        raise ConfigError(f"{source}: cohort name {name!r} must be a string")
    try:
        return check_name(name)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def cohort_name(path: str | os.PathLike) -> str:
    """Return the cohort's name: the YAML file's stem, refused if it could escape an output folder."""
    return check_cohort_name(Path(path).stem, f"{path}")


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """Return the pydantic model that owns the key at ``loc`` (used to suggest the nearest valid key)."""
    model: Any = CohortSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if part in ("death_before_discharge", "readmission"):
            model = DeathBeforeDischarge if part == "death_before_discharge" else Readmission
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _format_error(exc: ValidationError, source: str) -> str:
    errors = exc.errors()
    # a typo explains the "missing" error that usually comes with it: report the unknown key first
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    # drop the discriminator tag pydantic inserts into the path of a tagged union
    shown = [p for p in loc if p not in ("death_before_discharge", "readmission")]
    key = (
        ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in shown).replace(".[", "[") or "<top>"
    )
    value = err.get("input")
    value_txt = (
        repr(value)
        if not isinstance(value, dict | list)
        else ("{...}" if isinstance(value, dict) else "[...]")
    )
    if len(value_txt) > 80:
        value_txt = value_txt[:77] + "..."
    msg = " ".join(err["msg"].removeprefix("Value error, ").split())
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        valid = sorted(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{source}: {key}: unknown key{hint} (valid keys here: {', '.join(valid)})"
    if err["type"] == "union_tag_invalid":
        return f"{source}: {key}.type = {err['ctx'].get('tag')!r}: must be 'death_before_discharge' or 'readmission'"
    if err["type"] == "union_tag_not_found":
        return f"{source}: {key}.type: missing; write type: death_before_discharge or type: readmission"
    if err["type"] == "missing":
        return f"{source}: {key}: required key is missing"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if isinstance(value, dict):  # a whole section failed a cross-field check; the message names the keys
        return f"{source}: {key if shown else 'cohort'}: {msg}{more}"
    return f"{source}: {key} = {value_txt}: {msg}{more}"


def parse_spec(data: Any, source: str = "<cohort>") -> CohortSpec:
    """Validate an already-parsed YAML document; errors are :class:`ConfigError` naming ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys (population, prediction, outcome, ...) at the top level, "
            f"got {type(data).__name__}"
        )
    try:
        return CohortSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None


def load_spec(path: str | os.PathLike) -> CohortSpec:
    """Read and validate a cohort YAML (safe loader only).

    Parameters
    ----------
    path : path-like
        The YAML file; its stem is the cohort's name and must be a safe folder name.

    Returns
    -------
    CohortSpec

    Raises
    ------
    ConfigError
        One line naming the file, the key path and the offending value.
    """
    cohort_name(path)
    return parse_spec(read_yaml(path), str(path))


def spec_to_yaml_dict(spec: CohortSpec) -> dict:
    """Return the normalised spec as plain YAML-ready data (durations as canonical text)."""
    return spec.model_dump(mode="json")


def json_schema() -> dict:
    """JSON Schema of a cohort YAML, for editors (``cohorts/cohort.schema.json``)."""
    schema = CohortSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ehr-hcl cohort definition"
    return schema


def write_json_schema(path: str | os.PathLike = "cohorts/cohort.schema.json") -> Path:
    """Regenerate the editor schema file ``cohorts/cohort.schema.json``.

    Run ``python -c "from pipeline.cohort.spec import write_json_schema; write_json_schema()"``.
    """
    import json

    from pipeline.io import write_text

    write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", path)
    return Path(path)

"""Export a cohort definition to the ACES task language (predicates, trigger, windows, label).

ACES (the cohort language of the MEDS tools) can express the index event, the prediction time, the input
window, the target window, "no death/discharge before the prediction time" and code-based exclusions.
What it cannot express is listed in a comment at the top of the exported file: the age criterion (ACES has
no age predicate over MEDS_BIRTH), end-of-follow-up censoring, the competing-event *type* (ACES labels are
boolean), one stay per subject, the minimum history, and the subject-level split.
"""

from __future__ import annotations

import re
from datetime import timedelta

import yaml

from pipeline import schema
from pipeline.cohort.spec import CohortSpec, format_duration

_NONE = "(None, 0)"


_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _escape(value: str) -> str:
    """Escape regex metacharacters only (Rust's regex, used by ACES, rejects escaped spaces)."""
    return _META.sub(r"\\\1", value)


def _alternation(values: list[str]) -> str:
    return "(" + "|".join(_escape(v) for v in values) + ")" if values else "()"


def _plus(ref: str, td: timedelta) -> str:
    return ref if td == timedelta(0) else f"{ref} + {format_duration(td)}"


def to_aces_dict(spec: CohortSpec, admission_types: list[str]) -> tuple[dict, list[str]]:
    """Build the ACES configuration as a dict, and the list of parts that could not be expressed.

    Parameters
    ----------
    spec : CohortSpec
    admission_types : list of str
        Admission types present in the data (to write include/exclude lists as explicit alternations,
        since ACES regexes have no negative look-ahead).

    Returns
    -------
    config : dict
        description, predicates, trigger, windows.
    not_expressed : list of str
        The cohort's parts that ACES cannot express, one line each.
    """
    pop = spec.population
    types = [
        t for t in admission_types if not pop.admission_types.include or t in pop.admission_types.include
    ]
    types = [t for t in types if t not in pop.admission_types.exclude]
    predicates: dict = {
        "admission": {"code": {"regex": f"^{schema.ADMISSION}//.*"}},
        "index_admission": _admission_predicate(types, admission_types),
        "discharge": {"code": {"regex": f"^{schema.DISCHARGE}//.*"}},
        "death": {"code": schema.DEATH},
        "discharge_or_death": {"expr": "or(discharge, death)"},
    }
    trigger, windows, not_expressed = _trigger_and_input(spec, all_types=types == admission_types)
    for i, exc in enumerate(pop.exclusions):
        name = f"exclusion_{i}"
        predicates[name] = {"code": {"regex": "^" + _alternation(exc.codes)}}
        windows[name] = {
            "start": None if exc.lookback == "all" else f"end - {format_duration(exc.lookback)}",
            "end": windows["input"]["end"],
            "start_inclusive": True,
            "end_inclusive": True,
            "has": {name: _NONE},
        }
    target_predicates, windows["target"], target_notes = _target(spec, admission_types)
    predicates.update(target_predicates)
    not_expressed += target_notes + _unexpressed_criteria(spec)
    config = {
        "description": spec.description or "",
        "predicates": predicates,
        "trigger": trigger,
        "windows": windows,
    }
    return config, not_expressed


def _admission_predicate(types: list[str], admission_types: list[str]) -> dict:
    """Return the predicate of an admission of one of ``types`` (any admission when that is all of them)."""
    if types == admission_types:
        return {"code": {"regex": f"^{schema.ADMISSION}//.*"}}
    return {"code": {"regex": f"^{schema.ADMISSION}//{_alternation(types)}$"}}


def _trigger_and_input(spec: CohortSpec, all_types: bool) -> tuple[str, dict, list[str]]:
    """Return the trigger predicate, the input (and gap) windows, and what they cannot express."""
    pred = spec.prediction
    lookback = spec.history.lookback
    not_expressed: list[str] = []
    windows: dict = {
        "input": {
            "start": None if lookback == "all" else f"end - {format_duration(lookback)}",
            "end": _plus("trigger", pred.offset),
            "start_inclusive": True,
            "end_inclusive": True,
            "index_timestamp": "end",
        }
    }
    if pred.index_event == "admission":
        trigger = "index_admission"
        # still admitted and alive at the prediction time
        windows["gap"] = {
            "start": "trigger",
            "end": f"start + {format_duration(pred.offset)}",
            "start_inclusive": False,
            "end_inclusive": True,
            "has": {"discharge_or_death": _NONE},
        }
    else:
        trigger = "discharge"
        windows["input"]["has"] = {"death": _NONE}  # discharged alive, no death before the prediction
        if not all_types:
            not_expressed.append(
                "population.admission_types (the trigger is the discharge, not the admission)"
            )
    return trigger, windows, not_expressed


def _target(spec: CohortSpec, admission_types: list[str]) -> tuple[dict, dict, list[str]]:
    """Return the outcome's own predicates, the target window, and what they cannot express."""
    out = spec.outcome
    if out.type == "death_before_discharge":
        window = {
            "start": "input.end",
            "end": "start -> discharge_or_death",
            "start_inclusive": False,
            "end_inclusive": True,
            "label": "death",
        }
        return {}, window, []
    not_expressed: list[str] = []
    counted = [t for t in admission_types if t not in out.not_counted_admission_types]
    predicates = {"readmission": _admission_predicate(counted, admission_types)}
    if spec.prediction.index_event == "admission":
        not_expressed.append(
            "a readmission window anchored on a discharge after an admission-time prediction"
        )
    window: dict = {
        "start": "input.end",
        "end": f"start + {format_duration(out.window)}",
        "start_inclusive": False,
        "end_inclusive": True,
        "label": "readmission",
    }
    if out.competing_death == "exclude":
        window["has"] = {"death": _NONE}
        not_expressed.append(
            "competing_death: exclude drops every death in the window here, also one after a readmission"
        )
    else:
        not_expressed.append("competing_death: competing (deaths are label False; ACES has no event type)")
    return predicates, window, not_expressed


def _unexpressed_criteria(spec: CohortSpec) -> list[str]:
    """Return the population, censoring and split criteria that ACES cannot express, one line each."""
    pop = spec.population
    not_expressed: list[str] = []
    if pop.min_age is not None or pop.max_age is not None:
        rng = " and ".join(
            f"{op} {v:g}" for op, v in ((">=", pop.min_age), ("<=", pop.max_age)) if v is not None
        )
        not_expressed.append(f"population age at admission {rng} (ACES has no age predicate)")
    if pop.min_stay is not None:
        not_expressed.append(f"population.min_stay {format_duration(pop.min_stay)}")
    if pop.min_history is not None:
        not_expressed.append(f"population.min_history {format_duration(pop.min_history)}")
    if pop.admissions_per_subject == "first":
        not_expressed.append("population.admissions_per_subject: first")
    not_expressed.append(
        f"censoring (end_of_followup {spec.censoring.end_of_followup}, "
        f"insufficient_followup {spec.censoring.insufficient_followup})"
    )
    not_expressed.append(f"split fractions {list(spec.split.fractions)} seed {spec.split.seed}")
    return not_expressed


def to_aces_yaml(spec: CohortSpec, name: str, admission_types: list[str]) -> str:
    """Render the ACES task configuration as YAML text, with a header comment listing what ACES cannot express."""
    config, missing = to_aces_dict(spec, admission_types)
    header = [
        f"# ACES task configuration for cohort {name!r}, exported by `ehr-hcl cohort`.",
        "# Not expressible in ACES (applied by ehr-hcl only, so ACES may return more rows):",
        *[f"#   - {m}" for m in missing],
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)

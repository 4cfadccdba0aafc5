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
    """The ACES configuration as a dict, and the list of parts that could not be expressed.

    Parameters
    ----------
    spec : CohortSpec
    admission_types : list of str
        Admission types present in the data (to write include/exclude lists as explicit alternations,
        since ACES regexes have no negative look-ahead).
    """
    pop, pred, out = spec.population, spec.prediction, spec.outcome
    not_expressed: list[str] = []
    types = [
        t for t in admission_types if not pop.admission_types.include or t in pop.admission_types.include
    ]
    types = [t for t in types if t not in pop.admission_types.exclude]
    index_adm = (
        {"code": {"regex": f"^{schema.ADMISSION}//.*"}}
        if types == admission_types
        else {"code": {"regex": f"^{schema.ADMISSION}//{_alternation(types)}$"}}
    )
    predicates: dict = {
        "admission": {"code": {"regex": f"^{schema.ADMISSION}//.*"}},
        "index_admission": index_adm,
        "discharge": {"code": {"regex": f"^{schema.DISCHARGE}//.*"}},
        "death": {"code": schema.DEATH},
        "discharge_or_death": {"expr": "or(discharge, death)"},
    }
    windows: dict = {}
    lookback = spec.history.lookback
    input_end = _plus("trigger", pred.offset)
    windows["input"] = {
        "start": None if lookback == "all" else f"end - {format_duration(lookback)}",
        "end": input_end,
        "start_inclusive": True,
        "end_inclusive": True,
        "index_timestamp": "end",
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
        if types != admission_types:
            not_expressed.append(
                "population.admission_types (the trigger is the discharge, not the admission)"
            )
    for i, exc in enumerate(pop.exclusions):
        name = f"exclusion_{i}"
        predicates[name] = {"code": {"regex": "^" + _alternation(exc.codes)}}
        windows[name] = {
            "start": None if exc.lookback == "all" else f"end - {format_duration(exc.lookback)}",
            "end": input_end,
            "start_inclusive": True,
            "end_inclusive": True,
            "has": {name: _NONE},
        }
    if out.type == "death_before_discharge":
        windows["target"] = {
            "start": "input.end",
            "end": "start -> discharge_or_death",
            "start_inclusive": False,
            "end_inclusive": True,
            "label": "death",
        }
    else:
        counted = [t for t in admission_types if t not in out.not_counted_admission_types]
        predicates["readmission"] = (
            {"code": {"regex": f"^{schema.ADMISSION}//.*"}}
            if counted == admission_types
            else {"code": {"regex": f"^{schema.ADMISSION}//{_alternation(counted)}$"}}
        )
        if pred.index_event == "admission":
            not_expressed.append(
                "a readmission window anchored on a discharge after an admission-time prediction"
            )
        windows["target"] = {
            "start": "input.end",
            "end": f"start + {format_duration(out.window)}",
            "start_inclusive": False,
            "end_inclusive": True,
            "label": "readmission",
        }
        if out.competing_death == "exclude":
            windows["target"]["has"] = {"death": _NONE}
            not_expressed.append(
                "competing_death: exclude drops every death in the window here, also one after a readmission"
            )
        else:
            not_expressed.append(
                "competing_death: competing (deaths are label False; ACES has no event type)"
            )
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
    config = {
        "description": spec.description or "",
        "predicates": predicates,
        "trigger": trigger,
        "windows": windows,
    }
    return config, not_expressed


def to_aces_yaml(spec: CohortSpec, name: str, admission_types: list[str]) -> str:
    """The ACES task configuration as YAML text, with a header comment listing what ACES cannot express."""
    config, missing = to_aces_dict(spec, admission_types)
    header = [
        f"# ACES task configuration for cohort {name!r}, exported by `ehr-hcl cohort`.",
        "# Not expressible in ACES (applied by ehr-hcl only, so ACES may return more rows):",
        *[f"#   - {m}" for m in missing],
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)

"""Cohort YAML parsing: the duration grammar, each bad input of issue 4 point 5, and fuzzing."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cohort import format_duration, load_spec, parse_duration, parse_spec
from pipeline.cohort.spec import MAX_DURATION, CohortSpec
from pipeline.exceptions import ConfigError
from pipeline.params import read_yaml

from .conftest import COHORTS, MORTALITY_YAML, READMISSION_YAML, write_yaml

# --- durations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("48h", timedelta(hours=48)),
        ("30d", timedelta(days=30)),
        ("90 minutes", timedelta(minutes=90)),
        ("1.5 days", timedelta(hours=36)),
        ("1d 12h", timedelta(hours=36)),
        ("2w", timedelta(days=14)),
        ("0h", timedelta(0)),
        (" 45 s ", timedelta(seconds=45)),
        ("1 HOUR", timedelta(hours=1)),
        (".5h", timedelta(minutes=30)),
    ],
)
def test_duration_grammar(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("-1h", "negative"),
        ("- 2 days", "negative"),
        ("48", "unparseable"),
        ("h", "unparseable"),
        ("", "empty"),
        ("3 fortnights", "unknown unit"),
        ("5m", "ambiguous"),
        ("1 year", "ambiguous"),
        ("1e3d", "unknown unit"),
        ("99999999999d", "maximum"),
        ("48h;rm", "unparseable"),
    ],
)
def test_duration_rejects(text, needle):
    with pytest.raises(ValueError, match=needle):
        parse_duration(text)


@pytest.mark.parametrize("value", [48, 1.5, True, None, ["48h"]])
def test_duration_rejects_non_text(value):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(value)


def test_format_duration_canonical():
    assert format_duration(timedelta(hours=48)) == "48h"
    assert format_duration(timedelta(days=30)) == "30d"
    assert format_duration(timedelta(minutes=90)) == "90min"
    assert format_duration(timedelta(seconds=1)) == "1s"
    assert format_duration(timedelta(0)) == "0h"


_UNITS = {
    "s": 1,
    "seconds": 1,
    "min": 60,
    "minutes": 60,
    "h": 3600,
    "hours": 3600,
    "d": 86400,
    "days": 86400,
    "w": 604800,
}


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3_000),
            st.sampled_from(sorted(_UNITS)),
            st.sampled_from(["", " "]),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_duration_fuzz_known_value(parts):
    """Integer amounts in any unit parse to exactly their sum, and format/parse round-trips."""
    text = " ".join(f"{n}{sp}{u}" for n, u, sp in parts)
    seconds = sum(n * _UNITS[u] for n, u, _ in parts)
    td = parse_duration(text)
    assert td == timedelta(seconds=seconds)
    assert parse_duration(format_duration(td)) == td


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_duration_fuzz_any_text(text):
    """Any text either parses to a non-negative bounded duration or raises ValueError (never anything else)."""
    try:
        td = parse_duration(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert timedelta(0) <= td <= MAX_DURATION


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), st.sampled_from(["h", "d", "min"]))
def test_duration_fuzz_floats(x, unit):
    number = f"{x:f}"
    text = f"{number}{unit}"
    if number.startswith("-"):
        with pytest.raises(ValueError, match="negative"):
            parse_duration(text)
        return
    seconds = float(number) * {"h": 3600, "d": 86400, "min": 60}[unit]
    if seconds > MAX_DURATION.total_seconds():
        with pytest.raises(ValueError, match="maximum"):
            parse_duration(text)
    else:
        assert math.isclose(parse_duration(text).total_seconds(), seconds, rel_tol=1e-9, abs_tol=1e-5)


# --- the shipped definitions ---------------------------------------------------------------------------


def test_shipped_cohorts_load():
    mort = load_spec(COHORTS / "in_hospital_mortality.yaml")
    assert mort.prediction.index_event == "admission"
    assert mort.prediction.offset == timedelta(hours=48)
    assert mort.outcome.type == "death_before_discharge"
    assert mort.population.min_age == 18 and mort.population.in_hospital_at_prediction
    readm = load_spec(COHORTS / "readmission_30d.yaml")
    assert readm.prediction.index_event == "discharge" and readm.prediction.offset == timedelta(0)
    assert readm.outcome.type == "readmission" and readm.outcome.window == timedelta(days=30)
    assert readm.outcome.competing_death in ("exclude", "competing")
    assert "ELECTIVE" in readm.outcome.not_counted_admission_types


def test_normalised_round_trip():
    spec = load_spec(COHORTS / "readmission_30d.yaml")
    assert parse_spec(spec.model_dump(mode="json")) == spec


# --- bad inputs (issue 4 point 5, issue 8 point 1): one line naming file, key path, value -----------------


def _error(tmp_path, text, name="task.yaml") -> str:
    path = write_yaml(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_unknown_key_suggests_nearest(tmp_path):
    msg = _error(tmp_path, MORTALITY_YAML.replace("min_age", "min_agee"))
    assert "population.min_agee" in msg and "did you mean 'min_age'" in msg


def test_unknown_key_nested_in_outcome(tmp_path):
    msg = _error(tmp_path, READMISSION_YAML.replace("window: 30d", "windw: 30d"))
    assert "outcome.windw" in msg and "did you mean 'window'" in msg


def test_unknown_top_level_key(tmp_path):
    msg = _error(tmp_path, MORTALITY_YAML + "splits: {seed: 1}\n")
    assert "splits" in msg and "did you mean 'split'" in msg


def test_wrong_type(tmp_path):
    msg = _error(tmp_path, MORTALITY_YAML.replace("min_age: 18", "min_age: adult"))
    assert "population.min_age" in msg and "'adult'" in msg


def test_wrong_type_seed(tmp_path):
    msg = _error(tmp_path, MORTALITY_YAML + "split: {seed: [1, 2]}\n")
    assert "split.seed" in msg


@pytest.mark.parametrize(
    ("bad", "needle"), [("-48h", "negative"), ("48 parsecs", "unknown unit"), ("48", "unparseable")]
)
def test_bad_duration(tmp_path, bad, needle):
    msg = _error(tmp_path, MORTALITY_YAML.replace("offset: 48h", f"offset: '{bad}'"))
    assert "prediction.offset" in msg and repr(bad) in msg and needle in msg


def test_bare_number_duration(tmp_path):
    msg = _error(tmp_path, MORTALITY_YAML.replace("offset: 48h", "offset: 48"))
    assert "prediction.offset = 48" in msg and "not a duration" in msg


def test_contradictory_windows_discharge_index_for_mortality(tmp_path):
    msg = _error(
        tmp_path,
        "population: {in_hospital_at_prediction: false}\nprediction: {index_event: discharge}\n"
        "outcome: {type: death_before_discharge}\n",
    )
    assert "contradictory windows" in msg and "death_before_discharge" in msg


def test_contradictory_windows_lookback_shorter_than_history(tmp_path):
    msg = _error(
        tmp_path,
        MORTALITY_YAML.replace(
            "in_hospital_at_prediction: true", "in_hospital_at_prediction: true, min_history: 30d"
        )
        + "history: {lookback: 7d}\n",
    )
    assert "contradictory windows" in msg and "7d" in msg and "30d" in msg


def test_contradictory_still_admitted_after_discharge(tmp_path):
    msg = _error(
        tmp_path, READMISSION_YAML.replace("min_age: 18", "min_age: 18, in_hospital_at_prediction: true")
    )
    assert "in_hospital_at_prediction" in msg


def test_contradictory_ages(tmp_path):
    msg = _error(tmp_path, MORTALITY_YAML.replace("min_age: 18", "min_age: 65, max_age: 18"))
    assert "population" in msg and "max_age 18" in msg


def test_empty_readmission_window(tmp_path):
    msg = _error(tmp_path, READMISSION_YAML.replace("window: 30d", "window: 0d"))
    assert "outcome.window" in msg and "empty outcome window" in msg


def test_bad_outcome_type(tmp_path):
    msg = _error(tmp_path, MORTALITY_YAML.replace("death_before_discharge", "death"))
    assert "outcome.type = 'death'" in msg


def test_bad_split_fractions(tmp_path):
    msg = _error(tmp_path, MORTALITY_YAML + "split: {fractions: [0.5, 0.5, 0.5]}\n")
    assert "split.fractions" in msg and "sum to 1" in msg


def test_missing_required_key(tmp_path):
    msg = _error(tmp_path, "outcome: {type: death_before_discharge}\n")
    assert "prediction" in msg and "missing" in msg


def test_yaml_python_object_is_refused(tmp_path):
    msg = _error(tmp_path, "population: !!python/object/apply:os.system ['echo pwned']\n")
    assert "invalid YAML" in msg


def test_top_level_not_a_mapping(tmp_path):
    msg = _error(tmp_path, "- a\n- b\n")
    assert "mapping" in msg


@pytest.mark.parametrize("name", ["..x.yaml", "a..b.yaml", " x.yaml", "-x.yaml"])
def test_unsafe_cohort_name(tmp_path, name):
    msg = _error(tmp_path, MORTALITY_YAML, name=name)
    assert "cohort name" in msg


@pytest.mark.parametrize("name", ["../../x", "..", "a/b", "/etc", "x\\y", "", "a b"])
def test_path_escape_name_rejected(name):
    from pipeline.cohort import check_cohort_name, cohort_name

    with pytest.raises(ConfigError, match="cohort name"):
        check_cohort_name(name)
    assert cohort_name("cohorts/../cohorts/ok_name.yaml") == "ok_name"
    with pytest.raises(ConfigError, match="cohort name"):
        cohort_name("cohorts/...yaml")  # stem '..'


# --- fuzzing the parser ---------------------------------------------------------------------------------

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(
        ["48h", "30d", "-1d", "all", "admission", "discharge", "readmission", "death_before_discharge"]
    ),
)
_doc = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "population",
                    "prediction",
                    "outcome",
                    "type",
                    "window",
                    "offset",
                    "index_event",
                    "min_age",
                    "lookback",
                    "history",
                    "split",
                    "fractions",
                    "seed",
                    "xx",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_doc)
def test_parser_fuzz_random_documents(doc):
    try:
        spec = parse_spec(doc, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)
    else:
        assert isinstance(spec, CohortSpec)


_SHIPPED = read_yaml(COHORTS / "readmission_30d.yaml")


def _paths(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))
        else:
            yield prefix + (k,)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(_paths(_SHIPPED))), _leaf)
def test_parser_fuzz_mutated_shipped(path, value):
    """Replacing one field of a valid definition either still validates or names that key in the error."""
    import copy

    doc = copy.deepcopy(_SHIPPED)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    try:
        parse_spec(doc, "mutated.yaml")
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith("mutated.yaml") and "\n" not in msg
        # the error names the mutated key (or, for cross-field contradictions, a key of its section)
        assert path[-1] in msg or path[0] in msg or "contradictory" in msg

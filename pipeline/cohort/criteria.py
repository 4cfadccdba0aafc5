"""The cohort computation as named steps: one function per attrition criterion, applied in a fixed order.

:func:`compute_labels` reads like the attrition table it produces. Each criterion takes the candidate stays
and the running :class:`Attrition`, keeps the rows that pass, and records how many it excluded.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa

from pipeline import schema
from pipeline.cohort.spec import (
    CohortSpec,
    DeathBeforeDischarge,
    Exclusion,
    Population,
    Prediction,
    Readmission,
    format_duration,
)
from pipeline.exceptions import CohortError
from pipeline.splits import splits_with_given

__all__ = ["Attrition", "compute_labels"]

_STATIC_PREFIXES = (schema.BIRTH, schema.GENDER)
_KEY_PREFIXES = (
    schema.ADMISSION,
    schema.DISCHARGE,
    schema.BIRTH,
    schema.DEATH,
    schema.GENDER,
    schema.INSURANCE,
)
_DAY_US = 86_400_000_000


class Attrition:
    """The ordered attrition table: each criterion's row counts before and after it."""

    def __init__(self, start_label: str, n: int) -> None:
        self.rows: list[dict[str, Any]] = [{"criterion": start_label, "before": n, "after": n, "excluded": 0}]
        self.emptied_by: str | None = None

    def apply(self, df: pl.DataFrame, keep: pl.Expr | pl.Series, criterion: str, key: str) -> pl.DataFrame:
        """Keep the rows where ``keep`` holds; ``key`` is the YAML key (and value) behind the criterion."""
        before = df.height
        out = df.filter(keep)
        if before and not out.height and self.emptied_by is None:
            self.emptied_by = f"{key} ({criterion}: {before} -> 0)"
        self.rows.append(
            {"criterion": criterion, "before": before, "after": out.height, "excluded": before - out.height}
        )
        return out

    def inline(self) -> str:
        """Return the table on one line, for error messages."""
        return "; ".join(f"{r['criterion']}: {r['before']} -> {r['after']}" for r in self.rows)


def compute_labels(
    spec: CohortSpec,
    events: pl.LazyFrame,
    source: str = "<cohort>",
    subject_splits: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Apply a cohort definition to MEDS events.

    Parameters
    ----------
    spec : CohortSpec
        The validated definition.
    events : polars.LazyFrame
        MEDS events (subject_id, time, code, hadm_id, ...).
    source : str
        Name of the YAML file, used in error messages.
    subject_splits : polars.DataFrame, optional
        ``subject_id, split`` given by the input dataset; used instead of the keyed hash of ``spec.split``
        (subjects it lacks still get the keyed hash).

    Returns
    -------
    labels : polars.DataFrame
        Columns and dtypes of :data:`pipeline.schema.LABEL_COLUMNS`, sorted by (subject_id, prediction_time).
    attrition : list of dict
        ``{criterion, before, after, excluded}`` in the order the criteria were applied.

    Raises
    ------
    CohortError
        No row is left after the criteria (the message carries the attrition table), or the label has one class.
    """
    key = key_events(events)
    stays, att = candidate_stays(key)
    df = stay_table(key, stays)
    df = discharge_after_admission(df, att)
    df = _with_age_and_death(df)
    df = population_criteria(df, att, spec.population)
    df = df.with_columns(_prediction_time(spec.prediction).alias("prediction_time"))
    df = alive_at_prediction(df, att, spec.prediction, spec.population)
    df = within_followup(df, att, events, spec.censoring.end_of_followup)
    df = min_history(df, att, events, spec.population)
    for i, exclusion in enumerate(spec.population.exclusions):
        df = exclude_codes(df, att, events, exclusion, i)
    df = first_stay_per_subject(df, att, spec.population)
    df = _outcome_times(df, stays, spec.outcome)
    df = no_prior_outcome(df, att)
    df = follow_up_rules(_with_event_type(df), att, spec)
    df = _label_columns(df, spec)
    _check_trainable(df, att, source)
    return _with_splits(df, spec, subject_splits), att.rows


# --- the candidate stays ------------------------------------------------------------------------------


def _suffix(prefix: str) -> pl.Expr:
    return pl.col("code").str.strip_prefix(prefix + "//")


def key_events(events: pl.LazyFrame) -> pl.DataFrame:
    """Collect the admission, discharge, birth, death, gender and insurance events (all a cohort needs)."""
    return (
        events.select("subject_id", "time", "code", "hadm_id")
        .filter(pl.any_horizontal([pl.col("code").str.starts_with(p + "//") | (pl.col("code") == p) for p in _KEY_PREFIXES]))
        .collect()
    )  # fmt: skip


def candidate_stays(key: pl.DataFrame) -> tuple[pl.DataFrame, Attrition]:
    """Every admission event with a ``hadm_id`` is a candidate stay (first criterion of the attrition)."""
    adm_events = key.filter(pl.col("code").str.starts_with(schema.ADMISSION + "//"))
    n_no_hadm = adm_events.filter(pl.col("hadm_id").is_null()).height
    stays = (
        adm_events.filter(pl.col("hadm_id").is_not_null())
        .sort("subject_id", "hadm_id", "time")
        .group_by("subject_id", "hadm_id", maintain_order=True)
        .agg(
            pl.col("time").first().alias("admit_time"),
            _suffix(schema.ADMISSION).first().alias("admission_type"),
        )
    )
    att = Attrition("admissions in the events (HOSPITAL_ADMISSION)", stays.height + n_no_hadm)
    if n_no_hadm:
        att.rows.append(
            {
                "criterion": "admission event carries a hadm_id",
                "before": stays.height + n_no_hadm,
                "after": stays.height,
                "excluded": n_no_hadm,
            }
        )
    return stays, att


def stay_table(key: pl.DataFrame, stays: pl.DataFrame) -> pl.DataFrame:
    """One row per stay with its discharge, the subject's birth, death and sex, and the stay's insurance."""
    linked = pl.col("hadm_id").is_not_null()
    disch = (
        key.filter(pl.col("code").str.starts_with(schema.DISCHARGE + "//") & linked)
        .sort("time")
        .group_by("subject_id", "hadm_id")
        .agg(
            pl.col("time").last().alias("disch_time"),
            _suffix(schema.DISCHARGE).last().alias("disch_location"),
        )
    )
    per_subject = key.group_by("subject_id").agg(
        pl.col("time").filter(pl.col("code") == schema.BIRTH).min().alias("birth_time"),
        pl.col("time").filter(pl.col("code") == schema.DEATH).min().alias("death_time"),
        _suffix(schema.GENDER)
        .filter(pl.col("code").str.starts_with(schema.GENDER + "//"))
        .first()
        .alias("sex"),
    )
    linked_death = (
        key.filter((pl.col("code") == schema.DEATH) & linked)
        .group_by("subject_id", "hadm_id")
        .agg(pl.col("time").min().alias("linked_death_time"))
    )
    insurance = (
        key.filter(pl.col("code").str.starts_with(schema.INSURANCE + "//") & linked)
        .sort("time")
        .group_by("subject_id", "hadm_id")
        .agg(_suffix(schema.INSURANCE).first().alias("insurance"))
    )
    return (
        stays.join(disch, on=["subject_id", "hadm_id"], how="left")
        .join(per_subject, on="subject_id", how="left")
        .join(linked_death, on=["subject_id", "hadm_id"], how="left")
        .join(insurance, on=["subject_id", "hadm_id"], how="left")
        .with_row_index("_row")
    )


def discharge_after_admission(df: pl.DataFrame, att: Attrition) -> pl.DataFrame:
    """Keep admissions whose discharge is recorded, after the admission (data quality)."""
    return att.apply(
        df,
        pl.col("disch_time").is_not_null() & (pl.col("disch_time") > pl.col("admit_time")),
        "discharge recorded after admission",
        key="events (HOSPITAL_DISCHARGE)",
    )


def _with_age_and_death(df: pl.DataFrame) -> pl.DataFrame:
    """Add the calendar age in whole years at admission, and whether and when the stay ended in death."""
    admit, birth = pl.col("admit_time"), pl.col("birth_time")
    before_birthday = (admit.dt.month() < birth.dt.month()) | (
        (admit.dt.month() == birth.dt.month()) & (admit.dt.day() < birth.dt.day())
    )
    df = df.with_columns(
        (admit.dt.year() - birth.dt.year() - before_birthday.cast(pl.Int32)).alias("age"),
        # died in hospital: a death linked to this stay, or discharged to DIED
        (pl.col("linked_death_time").is_not_null() | (pl.col("disch_location").str.to_uppercase() == "DIED"))
        .fill_null(False)
        .alias("ih_death"),
    )
    death_in_stay = pl.when(pl.col("death_time") >= admit).then(pl.col("death_time"))
    return df.with_columns(
        pl.when(pl.col("ih_death"))
        .then(
            pl.min_horizontal(
                pl.coalesce(pl.col("linked_death_time"), death_in_stay, pl.col("disch_time")),
                pl.col("disch_time"),
            )
        )
        .alias("ih_death_time")
    )


# --- population criteria ------------------------------------------------------------------------------


def population_criteria(df: pl.DataFrame, att: Attrition, pop: Population) -> pl.DataFrame:
    """Age, admission type and length-of-stay criteria of ``population``, each counted when set."""
    if pop.min_age is not None or pop.max_age is not None:
        df = att.apply(
            df,
            pl.col("age").is_not_null(),
            "birth date known (age at admission computable)",
            key="events (MEDS_BIRTH)",
        )
    if pop.min_age is not None:
        key = f"population.min_age = {pop.min_age:g}"
        df = att.apply(df, pl.col("age") >= pop.min_age, f"age at admission >= {pop.min_age:g}", key=key)
    if pop.max_age is not None:
        key = f"population.max_age = {pop.max_age:g}"
        df = att.apply(df, pl.col("age") <= pop.max_age, f"age at admission <= {pop.max_age:g}", key=key)
    include, exclude = pop.admission_types.include, pop.admission_types.exclude
    if include:
        key = f"population.admission_types.include = {include}"
        df = att.apply(df, pl.col("admission_type").is_in(include), f"admission type in {include}", key=key)
    if exclude:
        key = f"population.admission_types.exclude = {exclude}"
        df = att.apply(
            df, ~pl.col("admission_type").is_in(exclude), f"admission type not in {exclude}", key=key
        )
    if pop.min_stay is not None:
        stay = format_duration(pop.min_stay)
        df = att.apply(
            df,
            (pl.col("disch_time") - pl.col("admit_time")) >= pop.min_stay,
            f"length of stay >= {stay}",
            key=f"population.min_stay = {stay}",
        )
    return df


def _prediction_time(pred_spec: Prediction) -> pl.Expr:
    index_col = "admit_time" if pred_spec.index_event == "admission" else "disch_time"
    return pl.col(index_col) + pred_spec.offset


def alive_at_prediction(
    df: pl.DataFrame, att: Attrition, pred_spec: Prediction, pop: Population
) -> pl.DataFrame:
    """No death at or before the prediction time; optionally, still admitted then."""
    pred = pl.col("prediction_time")
    key = f"prediction.offset = {format_duration(pred_spec.offset)}"
    df = att.apply(
        df,
        (pl.col("death_time").is_null() | (pl.col("death_time") > pred))
        & ~(pl.col("ih_death") & (pl.col("disch_time") <= pred)),
        "alive at prediction time",
        key=key,
    )
    if pop.in_hospital_at_prediction:
        df = att.apply(df, pl.col("disch_time") > pred, "still admitted at prediction time", key=key)
    return df


def within_followup(df: pl.DataFrame, att: Attrition, events: pl.LazyFrame, end: Any) -> pl.DataFrame:
    """Add ``followup_end`` (dataset end, subject's last event, or a date) and keep predictions before it."""
    if end == "dataset_end":
        data_end = events.select(pl.col("time").max()).collect().item()
        df = df.with_columns(pl.lit(data_end, dtype=pl.Datetime("us")).alias("followup_end"))
    elif end == "subject_last_event":
        last = events.group_by("subject_id").agg(pl.col("time").max().alias("followup_end")).collect()
        df = df.join(last, on="subject_id", how="left")
    else:
        df = df.with_columns(pl.lit(end, dtype=pl.Datetime("us")).alias("followup_end"))
    return att.apply(
        df,
        pl.col("prediction_time") <= pl.col("followup_end"),
        "prediction time within follow-up",
        key=f"censoring.end_of_followup = {end}",
    )


def min_history(df: pl.DataFrame, att: Attrition, events: pl.LazyFrame, pop: Population) -> pl.DataFrame:
    """Keep predictions whose subject's first (non-static) event lies ``min_history`` or more before them."""
    if pop.min_history is None:
        return df
    first = (
        events.filter(
            pl.col("time").is_not_null()
            & ~pl.any_horizontal([pl.col("code").str.starts_with(p) for p in _STATIC_PREFIXES])
        )
        .group_by("subject_id")
        .agg(pl.col("time").min().alias("first_event_time"))
        .collect()
    )
    history = format_duration(pop.min_history)
    return att.apply(
        df.join(first, on="subject_id", how="left"),
        pl.col("first_event_time") <= pl.col("prediction_time") - pop.min_history,
        f"history >= {history} before prediction time",
        key=f"population.min_history = {history}",
    )


def exclude_codes(
    df: pl.DataFrame, att: Attrition, events: pl.LazyFrame, exc: Exclusion, index: int
) -> pl.DataFrame:
    """Drop stays with one of the exclusion's codes in its lookback before the prediction time."""
    hits = (
        events.filter(pl.any_horizontal([pl.col("code").str.starts_with(c) for c in exc.codes]))
        .select("subject_id", pl.col("time").alias("_t"))
        .collect()
    )
    cond = pl.col("_t") <= pl.col("prediction_time")
    if exc.lookback != "all":
        cond = cond & (pl.col("_t") >= pl.col("prediction_time") - exc.lookback)
    flagged = (
        df.select("_row", "subject_id", "prediction_time")
        .join(hits, on="subject_id", how="inner")
        .filter(cond)
        .get_column("_row")
        .unique()
    )
    window = "any time" if exc.lookback == "all" else f"{format_duration(exc.lookback)}"
    return att.apply(
        df,
        ~pl.col("_row").is_in(flagged.implode()),
        f"exclusion '{exc.name}' ({window} before)",
        key=f"population.exclusions[{index}].codes = {exc.codes}",
    )


def first_stay_per_subject(df: pl.DataFrame, att: Attrition, pop: Population) -> pl.DataFrame:
    """With ``admissions_per_subject: first``, keep each subject's first eligible stay."""
    if pop.admissions_per_subject != "first":
        return df
    return att.apply(
        df.sort("subject_id", "prediction_time", "hadm_id"),
        pl.col("_row") == pl.col("_row").first().over("subject_id"),
        "first eligible stay per subject",
        key="population.admissions_per_subject = first",
    )


# --- outcome rules ------------------------------------------------------------------------------------


def _outcome_times(
    df: pl.DataFrame, stays: pl.DataFrame, outcome: DeathBeforeDischarge | Readmission
) -> pl.DataFrame:
    """Add the outcome time ``t_out``, the competing-event time ``t_comp`` and the outcome ``horizon``."""
    if outcome.type == "death_before_discharge":
        return df.with_columns(
            pl.col("ih_death_time").alias("t_out"),
            pl.when(~pl.col("ih_death")).then(pl.col("disch_time")).alias("t_comp"),
            pl.col("disch_time").alias("horizon"),
        )
    qualifying = stays.filter(~pl.col("admission_type").is_in(outcome.not_counted_admission_types))
    qualifying = qualifying.select("subject_id", pl.col("admit_time").alias("t_out")).sort(
        "subject_id", "t_out"
    )
    return (
        df.sort("subject_id", "disch_time")
        .join_asof(
            qualifying,
            left_on="disch_time",
            right_on="t_out",
            by="subject_id",
            strategy="forward",
            allow_exact_matches=True,
            check_sortedness=False,
        )
        .with_columns(
            pl.col("death_time").alias("t_comp"), (pl.col("disch_time") + outcome.window).alias("horizon")
        )
    )


def no_prior_outcome(df: pl.DataFrame, att: Attrition) -> pl.DataFrame:
    """No label-defining event (outcome or competing) at or before the prediction time."""
    pred = pl.col("prediction_time")
    return att.apply(
        df,
        ~((pl.col("t_out") <= pred).fill_null(False) | (pl.col("t_comp") <= pred).fill_null(False)),
        "no label-defining event at or before prediction time",
        key="outcome",
    )


def _with_event_type(df: pl.DataFrame) -> pl.DataFrame:
    """``event_type``: outcome, competing, censored, or short_followup (follow-up ends before the horizon)."""
    obs_end = pl.min_horizontal("horizon", "followup_end")
    out_obs = (pl.col("t_out") <= obs_end).fill_null(False)
    comp_obs = (pl.col("t_comp") <= obs_end).fill_null(False)
    return df.with_columns(
        pl.when(out_obs & (~comp_obs | (pl.col("t_out") <= pl.col("t_comp"))))
        .then(pl.lit("outcome"))
        .when(comp_obs)
        .then(pl.lit("competing"))
        .when(pl.col("followup_end") >= pl.col("horizon"))
        .then(pl.lit("censored"))
        .otherwise(pl.lit("short_followup"))
        .alias("event_type")
    )


def follow_up_rules(df: pl.DataFrame, att: Attrition, spec: CohortSpec) -> pl.DataFrame:
    """Competing deaths and short follow-up: excluded or kept, as the YAML says."""
    outcome = spec.outcome
    if outcome.type == "readmission" and outcome.competing_death == "exclude":
        df = att.apply(
            df,
            pl.col("event_type") != "competing",
            f"no death before readmission within {format_duration(outcome.window)} (competing_death: exclude)",
            key="outcome.competing_death = exclude",
        )
    if spec.censoring.insufficient_followup == "exclude":
        df = att.apply(
            df,
            pl.col("event_type") != "short_followup",
            "follow-up covers the outcome window",
            key="censoring.insufficient_followup = exclude",
        )
    return df


# --- labels -------------------------------------------------------------------------------------------


def _age_band(edges: list[int]) -> pl.Expr:
    age = pl.col("age")
    expr = pl.when(age < edges[0]).then(pl.lit(f"<{edges[0]}"))
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        expr = expr.when((age >= lo) & (age < hi)).then(pl.lit(f"{lo}-{hi - 1}"))
    return expr.when(age >= edges[-1]).then(pl.lit(f"{edges[-1]}+")).otherwise(None)


def _days(t: pl.Expr, pred: pl.Expr) -> pl.Expr:
    return (t - pred).dt.total_microseconds().cast(pl.Float64) / _DAY_US


def _label_columns(df: pl.DataFrame, spec: CohortSpec) -> pl.DataFrame:
    """Add the label, the time to event in days, the survival event type and the age band."""
    et = pl.col("event_type")
    event_time = (
        pl.when(et == "outcome")
        .then(pl.col("t_out"))
        .when(et == "competing")
        .then(pl.col("t_comp"))
        .when(et == "censored")
        .then(pl.col("horizon"))
        .otherwise(pl.col("followup_end"))
    )
    return df.with_columns(
        (et == "outcome").alias("boolean_value"),
        _days(event_time, pl.col("prediction_time")).alias("event_time_days"),
        pl.when(et == "short_followup").then(pl.lit("censored")).otherwise(et).alias("event_type"),
        _age_band(spec.subgroups.age_bands).alias("age_band"),
    )


def _check_trainable(df: pl.DataFrame, att: Attrition, source: str) -> None:
    """Raise when no row is left, or the label has a single class."""
    if df.height == 0:
        raise CohortError(
            f"{source}: {att.emptied_by or 'events (no HOSPITAL_ADMISSION)'}: the cohort is empty after the "
            f"criteria; relax this criterion. Attrition: {att.inline()}"
        )
    n_pos = int(df.get_column("boolean_value").sum())
    if n_pos in (0, df.height):
        raise CohortError(
            f"{source}: outcome: the label has a single class ({n_pos} positive of {df.height} rows); "
            "a model cannot be trained: check outcome and population, or use more data"
        )


def _with_splits(df: pl.DataFrame, spec: CohortSpec, given: pl.DataFrame | None) -> pl.DataFrame:
    """Assign each subject's split (the input's own where given, else the keyed hash); type the columns."""
    subjects = df.get_column("subject_id").unique().sort()
    splits, _ = splits_with_given(subjects.to_numpy(), given, tuple(spec.split.fractions), spec.split.seed)
    df = df.join(pl.DataFrame({"subject_id": subjects, "split": splits}), on="subject_id", how="left")
    return df.sort("subject_id", "prediction_time", "hadm_id").select(
        [pl.col(c).cast(_polars_type(t)) for c, t in schema.LABEL_COLUMNS.items()]
    )


def _polars_type(t: pa.DataType) -> pl.DataType:
    return pl.from_arrow(pa.array([], type=t)).dtype

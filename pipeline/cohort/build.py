"""Build a cohort: MEDS events + a cohort YAML -> labels, subject-level splits, attrition, ACES export.

The steps, in the order they are counted in ``attrition.json``:

1. every ``HOSPITAL_ADMISSION`` event is a candidate index stay; it needs a ``hadm_id``;
2. data quality: a discharge recorded after the admission; a known birth date when an age criterion is set;
3. the population criteria of the YAML (age, admission type, minimum stay, alive and (optionally) still
   admitted at the prediction time, prediction time within follow-up, minimum history, exclusions,
   first stay per subject);
4. outcome rules: no label-defining event at or before the prediction time; competing deaths and short
   follow-up excluded or kept according to the YAML.

Every exclusion is counted; nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline import schema
from pipeline.cohort.aces import to_aces_yaml
from pipeline.cohort.spec import CohortSpec, cohort_name, format_duration, load_spec, spec_to_yaml_dict
from pipeline.events import read_events
from pipeline.exceptions import CohortError, ConfigError, InputSchemaError, MissingInputError
from pipeline.io import atomic_dir, atomic_path, write_json, write_text
from pipeline.splits import assign_splits

log = logging.getLogger(__name__)

_REQUIRED_EVENT_COLUMNS = {
    "subject_id": pl.Int64,
    "time": pl.Datetime,
    "code": pl.String,
    "hadm_id": pl.Int64,
}
_STATIC_PREFIXES = (schema.BIRTH, schema.GENDER)
_DAY_US = 86_400_000_000


# --- reading events -----------------------------------------------------------------------------------


def _suffix(prefix: str) -> pl.Expr:
    return pl.col("code").str.strip_prefix(prefix + "//")


# --- attrition ----------------------------------------------------------------------------------------


class _Attrition:
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


def format_attrition(attrition: list[dict[str, Any]]) -> str:
    """The attrition table as fixed-width text (criterion, before, after, excluded)."""
    width = max([len("criterion")] + [len(str(r["criterion"])) for r in attrition])
    lines = [f"{'criterion':<{width}}  {'before':>8}  {'after':>8}  {'excluded':>8}"]
    lines.append("-" * len(lines[0]))
    for r in attrition:
        lines.append(f"{r['criterion']:<{width}}  {r['before']:>8}  {r['after']:>8}  {r['excluded']:>8}")
    return "\n".join(lines)


# --- the cohort computation ---------------------------------------------------------------------------


def _age_band(edges: list[int]) -> pl.Expr:
    age = pl.col("age")
    expr = pl.when(age < edges[0]).then(pl.lit(f"<{edges[0]}"))
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        expr = expr.when((age >= lo) & (age < hi)).then(pl.lit(f"{lo}-{hi - 1}"))
    return expr.when(age >= edges[-1]).then(pl.lit(f"{edges[-1]}+")).otherwise(None)


def _days(t: pl.Expr, pred: pl.Expr) -> pl.Expr:
    return (t - pred).dt.total_microseconds().cast(pl.Float64) / _DAY_US


def compute_labels(
    spec: CohortSpec, events: pl.LazyFrame, source: str = "<cohort>"
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
    pop, pred_spec, outcome = spec.population, spec.prediction, spec.outcome
    prefixes = (
        schema.ADMISSION,
        schema.DISCHARGE,
        schema.BIRTH,
        schema.DEATH,
        schema.GENDER,
        schema.INSURANCE,
    )
    key = events.select("subject_id", "time", "code", "hadm_id").filter(
        pl.any_horizontal(
            [pl.col("code").str.starts_with(p + "//") | (pl.col("code") == p) for p in prefixes]
        )
    )
    key = key.collect()

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
    att = _Attrition("admissions in the events (HOSPITAL_ADMISSION)", stays.height + n_no_hadm)
    if n_no_hadm:
        att.rows.append(
            {
                "criterion": "admission event carries a hadm_id",
                "before": stays.height + n_no_hadm,
                "after": stays.height,
                "excluded": n_no_hadm,
            }
        )

    disch = (
        key.filter(pl.col("code").str.starts_with(schema.DISCHARGE + "//") & pl.col("hadm_id").is_not_null())
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
        key.filter((pl.col("code") == schema.DEATH) & pl.col("hadm_id").is_not_null())
        .group_by("subject_id", "hadm_id")
        .agg(pl.col("time").min().alias("linked_death_time"))
    )
    insurance = (
        key.filter(pl.col("code").str.starts_with(schema.INSURANCE + "//") & pl.col("hadm_id").is_not_null())
        .sort("time")
        .group_by("subject_id", "hadm_id")
        .agg(_suffix(schema.INSURANCE).first().alias("insurance"))
    )
    df = (
        stays.join(disch, on=["subject_id", "hadm_id"], how="left")
        .join(per_subject, on="subject_id", how="left")
        .join(linked_death, on=["subject_id", "hadm_id"], how="left")
        .join(insurance, on=["subject_id", "hadm_id"], how="left")
        .with_row_index("_row")
    )

    # -- data quality
    df = att.apply(
        df,
        pl.col("disch_time").is_not_null() & (pl.col("disch_time") > pl.col("admit_time")),
        "discharge recorded after admission",
        key="events (HOSPITAL_DISCHARGE)",
    )
    # calendar age in whole years at admission
    df = df.with_columns(
        (
            pl.col("admit_time").dt.year()
            - pl.col("birth_time").dt.year()
            - (
                (pl.col("admit_time").dt.month() < pl.col("birth_time").dt.month())
                | (
                    (pl.col("admit_time").dt.month() == pl.col("birth_time").dt.month())
                    & (pl.col("admit_time").dt.day() < pl.col("birth_time").dt.day())
                )
            ).cast(pl.Int32)
        ).alias("age"),
        # died in hospital: a death linked to this stay, or discharged to DIED
        (pl.col("linked_death_time").is_not_null() | (pl.col("disch_location").str.to_uppercase() == "DIED"))
        .fill_null(False)
        .alias("ih_death"),
    )
    df = df.with_columns(
        pl.when(pl.col("ih_death"))
        .then(
            pl.min_horizontal(
                pl.coalesce(
                    pl.col("linked_death_time"),
                    pl.when(pl.col("death_time") >= pl.col("admit_time")).then(pl.col("death_time")),
                    pl.col("disch_time"),
                ),
                pl.col("disch_time"),
            )
        )
        .alias("ih_death_time")
    )
    if pop.min_age is not None or pop.max_age is not None:
        df = att.apply(
            df,
            pl.col("age").is_not_null(),
            "birth date known (age at admission computable)",
            key="events (MEDS_BIRTH)",
        )
    if pop.min_age is not None:
        df = att.apply(
            df,
            pl.col("age") >= pop.min_age,
            f"age at admission >= {pop.min_age:g}",
            key=f"population.min_age = {pop.min_age:g}",
        )
    if pop.max_age is not None:
        df = att.apply(
            df,
            pl.col("age") <= pop.max_age,
            f"age at admission <= {pop.max_age:g}",
            key=f"population.max_age = {pop.max_age:g}",
        )
    if pop.admission_types.include:
        df = att.apply(
            df,
            pl.col("admission_type").is_in(pop.admission_types.include),
            f"admission type in {pop.admission_types.include}",
            key=f"population.admission_types.include = {pop.admission_types.include}",
        )
    if pop.admission_types.exclude:
        df = att.apply(
            df,
            ~pl.col("admission_type").is_in(pop.admission_types.exclude),
            f"admission type not in {pop.admission_types.exclude}",
            key=f"population.admission_types.exclude = {pop.admission_types.exclude}",
        )
    if pop.min_stay is not None:
        df = att.apply(
            df,
            (pl.col("disch_time") - pl.col("admit_time")) >= pop.min_stay,
            f"length of stay >= {format_duration(pop.min_stay)}",
            key=f"population.min_stay = {format_duration(pop.min_stay)}",
        )

    index_col = "admit_time" if pred_spec.index_event == "admission" else "disch_time"
    df = df.with_columns((pl.col(index_col) + pred_spec.offset).alias("prediction_time"))
    pred = pl.col("prediction_time")

    # alive at the prediction time: no death at or before it, and not a stay that ended in death already
    df = att.apply(
        df,
        (pl.col("death_time").is_null() | (pl.col("death_time") > pred))
        & ~(pl.col("ih_death") & (pl.col("disch_time") <= pred)),
        "alive at prediction time",
        key=f"prediction.offset = {format_duration(pred_spec.offset)}",
    )
    if pop.in_hospital_at_prediction:
        df = att.apply(
            df,
            pl.col("disch_time") > pred,
            "still admitted at prediction time",
            key=f"prediction.offset = {format_duration(pred_spec.offset)}",
        )

    # follow-up end
    end = spec.censoring.end_of_followup
    if end == "dataset_end":
        data_end = events.select(pl.col("time").max()).collect().item()
        df = df.with_columns(pl.lit(data_end, dtype=pl.Datetime("us")).alias("followup_end"))
    elif end == "subject_last_event":
        last = events.group_by("subject_id").agg(pl.col("time").max().alias("followup_end")).collect()
        df = df.join(last, on="subject_id", how="left")
    else:
        df = df.with_columns(pl.lit(end, dtype=pl.Datetime("us")).alias("followup_end"))
    df = att.apply(
        df,
        pred <= pl.col("followup_end"),
        "prediction time within follow-up",
        key=f"censoring.end_of_followup = {end}",
    )

    if pop.min_history is not None:
        first = (
            events.filter(
                pl.col("time").is_not_null()
                & ~pl.any_horizontal([pl.col("code").str.starts_with(p) for p in _STATIC_PREFIXES])
            )
            .group_by("subject_id")
            .agg(pl.col("time").min().alias("first_event_time"))
            .collect()
        )
        df = df.join(first, on="subject_id", how="left")
        df = att.apply(
            df,
            pl.col("first_event_time") <= pred - pop.min_history,
            f"history >= {format_duration(pop.min_history)} before prediction time",
            key=f"population.min_history = {format_duration(pop.min_history)}",
        )
    for i, exc in enumerate(pop.exclusions):
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
        df = att.apply(
            df,
            ~pl.col("_row").is_in(flagged.implode()),
            f"exclusion '{exc.name}' ({window} before)",
            key=f"population.exclusions[{i}].codes = {exc.codes}",
        )
    if pop.admissions_per_subject == "first":
        df = df.sort("subject_id", "prediction_time", "hadm_id")
        df = att.apply(
            df,
            pl.col("_row") == pl.col("_row").first().over("subject_id"),
            "first eligible stay per subject",
            key="population.admissions_per_subject = first",
        )

    # -- outcome
    if outcome.type == "death_before_discharge":
        df = df.with_columns(
            pl.col("ih_death_time").alias("t_out"),
            pl.when(~pl.col("ih_death")).then(pl.col("disch_time")).alias("t_comp"),
            pl.col("disch_time").alias("horizon"),
        )
    else:
        qualifying = stays.filter(~pl.col("admission_type").is_in(outcome.not_counted_admission_types))
        qualifying = qualifying.select("subject_id", pl.col("admit_time").alias("t_out")).sort(
            "subject_id", "t_out"
        )
        df = df.sort("subject_id", "disch_time")
        df = df.join_asof(
            qualifying,
            left_on="disch_time",
            right_on="t_out",
            by="subject_id",
            strategy="forward",
            allow_exact_matches=True,
            check_sortedness=False,
        ).with_columns(
            pl.col("death_time").alias("t_comp"),
            (pl.col("disch_time") + outcome.window).alias("horizon"),
        )
    df = att.apply(
        df,
        ~((pl.col("t_out") <= pred).fill_null(False) | (pl.col("t_comp") <= pred).fill_null(False)),
        "no label-defining event at or before prediction time",
        key="outcome",
    )
    obs_end = pl.min_horizontal("horizon", "followup_end")
    out_obs = (pl.col("t_out") <= obs_end).fill_null(False)
    comp_obs = (pl.col("t_comp") <= obs_end).fill_null(False)
    df = df.with_columns(
        pl.when(out_obs & (~comp_obs | (pl.col("t_out") <= pl.col("t_comp"))))
        .then(pl.lit("outcome"))
        .when(comp_obs)
        .then(pl.lit("competing"))
        .when(pl.col("followup_end") >= pl.col("horizon"))
        .then(pl.lit("censored"))
        .otherwise(pl.lit("short_followup"))
        .alias("event_type")
    )
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
    et = pl.col("event_type")
    df = df.with_columns(
        (et == "outcome").alias("boolean_value"),
        _days(
            pl.when(et == "outcome")
            .then(pl.col("t_out"))
            .when(et == "competing")
            .then(pl.col("t_comp"))
            .when(et == "censored")
            .then(pl.col("horizon"))
            .otherwise(pl.col("followup_end")),
            pred,
        ).alias("event_time_days"),
        pl.when(et == "short_followup").then(pl.lit("censored")).otherwise(et).alias("event_type"),
        _age_band(spec.subgroups.age_bands).alias("age_band"),
    )

    if df.height == 0:
        raise CohortError(
            f"{source}: {att.emptied_by or 'events (no HOSPITAL_ADMISSION)'}: the cohort is empty after the "
            f"criteria; relax this criterion. Attrition: {_inline(att.rows)}"
        )
    n_pos = int(df.get_column("boolean_value").sum())
    if n_pos in (0, df.height):
        raise CohortError(
            f"{source}: outcome: the label has a single class ({n_pos} positive of {df.height} rows); "
            "a model cannot be trained: check outcome and population, or use more data"
        )

    subjects = df.get_column("subject_id").unique().sort()
    splits = assign_splits(subjects.to_numpy(), tuple(spec.split.fractions), spec.split.seed)
    df = df.join(
        pl.DataFrame({"subject_id": subjects, "split": splits.astype(str)}), on="subject_id", how="left"
    )
    labels = df.sort("subject_id", "prediction_time", "hadm_id").select(
        [pl.col(c).cast(_polars_type(t)) for c, t in schema.LABEL_COLUMNS.items()]
    )
    return labels, att.rows


def _polars_type(t: pa.DataType) -> pl.DataType:
    return pl.from_arrow(pa.array([], type=t)).dtype


def _inline(rows: list[dict[str, Any]]) -> str:
    return "; ".join(f"{r['criterion']}: {r['before']} -> {r['after']}" for r in rows)


# --- the stage ----------------------------------------------------------------------------------------

#: the files ``build_cohort`` writes into its output folder
OUTPUT_FILES = {
    "labels": "labels.parquet",
    "attrition": "attrition.json",
    "aces": "aces.yaml",
    "cohort": "cohort.yaml",
}


def _owned_folder(folder: Path) -> bool:
    """True if ``folder`` is absent or holds only this stage's outputs (so it may be swapped whole)."""
    if not folder.exists():
        return True
    if not folder.is_dir():
        raise ConfigError(
            f"{folder}: --output is a file, not a folder; give a folder such as data/cohorts/<name>"
        )
    return all(p.name in OUTPUT_FILES.values() or p.name.startswith(".") for p in folder.iterdir())


def build_cohort(config_path: Path, events_dir: Path, output_dir: Path) -> dict:
    """Build one cohort from its YAML definition and a MEDS events folder.

    Writes, each atomically, into ``output_dir``: ``labels.parquet`` (columns of
    :data:`pipeline.schema.LABEL_COLUMNS`, sorted by subject_id, prediction_time), ``attrition.json`` (ordered
    list of ``{criterion, before, after, excluded}``), ``aces.yaml`` (the task in the ACES language, as far as
    ACES can express it) and ``cohort.yaml`` (the normalised definition, read back by ``ehr-hcl audit``).

    Parameters
    ----------
    config_path : Path
        Cohort YAML; its stem is the cohort's name.
    events_dir : Path
        A MEDS dataset written by ``ehr-hcl ingest`` (``<events_dir>/data/*.parquet``).
    output_dir : Path
        Output folder, usually ``data/cohorts/<name>``.

    Returns
    -------
    dict
        ``name, rows, subjects, positives, prevalence, splits {split: rows}, event_types, attrition, outputs``.

    Raises
    ------
    ConfigError
        The YAML is invalid (one line: file, key path, value).
    CohortError
        Empty cohort or single-class label.
    MissingInputError, InputSchemaError
        The events folder is absent or malformed.
    """
    config_path, events_dir, output_dir = Path(config_path), Path(events_dir), Path(output_dir)
    name = cohort_name(config_path)
    spec = load_spec(config_path)
    events = read_events(events_dir, require=("hadm_id",))
    labels, attrition = compute_labels(spec, events, source=str(config_path))
    log.info("cohort %s: attrition\n%s", name, format_attrition(attrition))

    adm_types = (
        events.filter(pl.col("code").str.starts_with(schema.ADMISSION + "//"))
        .select(_suffix(schema.ADMISSION).unique().alias("t"))
        .collect()
        .get_column("t")
        .sort()
        .to_list()
    )
    outputs = {key: output_dir / fname for key, fname in OUTPUT_FILES.items()}
    header = f"# cohort {name!r}: normalised copy of {config_path.name} written by `ehr-hcl cohort`\n"
    texts = {
        "cohort": header + yaml.safe_dump(spec_to_yaml_dict(spec), sort_keys=False),
        "aces": to_aces_yaml(spec, name, adm_types),
    }
    # exact arrow types of the contract (polars alone would write large_string)
    table = labels.to_arrow().cast(pa.schema(list(schema.LABEL_COLUMNS.items())))

    def write_all(folder: Path) -> None:
        write_text(texts["cohort"], folder / OUTPUT_FILES["cohort"])
        write_text(texts["aces"], folder / OUTPUT_FILES["aces"])
        write_json(attrition, folder / OUTPUT_FILES["attrition"])
        with atomic_path(folder / OUTPUT_FILES["labels"]) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    if _owned_folder(output_dir):
        # the whole folder is swapped in at once: a crash never mixes old labels with a new cohort.yaml
        with atomic_dir(output_dir) as tmp_dir:
            write_all(tmp_dir)
    else:  # a folder holding other files (e.g. --output .): never replace it, write file by file
        log.warning("cohort: %s holds other files; writing the outputs one by one", output_dir)
        write_all(output_dir)

    counts = labels.group_by("split").len()
    n_pos = int(labels.get_column("boolean_value").sum())
    summary = {
        "name": name,
        "rows": labels.height,
        "subjects": labels.get_column("subject_id").n_unique(),
        "positives": n_pos,
        "prevalence": n_pos / labels.height,
        "splits": {s: int(dict(counts.iter_rows()).get(s, 0)) for s in schema.SPLITS},
        "event_types": dict(sorted(labels.group_by("event_type").len().iter_rows())),
        "attrition": attrition,
        "outputs": {k: str(v) for k, v in outputs.items()},
    }
    log.info(
        "cohort %s: %d rows, %d subjects, %d positive (%.1f%%), splits %s",
        name,
        summary["rows"],
        summary["subjects"],
        n_pos,
        100 * summary["prevalence"],
        summary["splits"],
    )
    return summary

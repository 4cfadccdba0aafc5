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

import json
import logging
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline import schema
from pipeline.cohort.aces import to_aces_yaml
from pipeline.cohort.criteria import compute_labels
from pipeline.cohort.spec import cohort_name, load_spec, spec_to_yaml_dict
from pipeline.events import read_events
from pipeline.exceptions import ConfigError
from pipeline.io import atomic_dir, atomic_path, write_json, write_text

log = logging.getLogger(__name__)


def format_attrition(attrition: list[dict[str, Any]]) -> str:
    """Format the attrition table as fixed-width text (criterion, before, after, excluded)."""
    width = max([len("criterion")] + [len(str(r["criterion"])) for r in attrition])
    lines = [f"{'criterion':<{width}}  {'before':>8}  {'after':>8}  {'excluded':>8}"]
    lines.append("-" * len(lines[0]))
    for r in attrition:
        lines.append(f"{r['criterion']:<{width}}  {r['before']:>8}  {r['after']:>8}  {r['excluded']:>8}")
    return "\n".join(lines)


# --- the stage ----------------------------------------------------------------------------------------

#: the files ``build_cohort`` writes into its output folder
OUTPUT_FILES = {
    "labels": "labels.parquet",
    "attrition": "attrition.json",
    "aces": "aces.yaml",
    "cohort": "cohort.yaml",
    "meds_labels": "meds_labels.parquet",  # the same rows in the MEDS label schema, for other MEDS tools
    "splits": "splits.json",  # where the splits came from: the input's own, or the keyed hash
}


def input_splits(events_dir: Path) -> pl.DataFrame | None:
    """Return the input dataset's own subject splits, when ``ehr-hcl ingest`` kept them; else None."""
    meta = Path(events_dir) / "metadata"
    info = meta / "dataset.json"
    if not info.is_file() or json.loads(info.read_text()).get("split_source") != "input":
        return None
    return pl.read_parquet(meta / "subject_splits.parquet").select(
        pl.col("subject_id").cast(pl.Int64), pl.col("split").cast(pl.String)
    )


def _owned_folder(folder: Path) -> bool:
    """Return True if ``folder`` is absent or holds only this stage's outputs (so it may be swapped whole)."""
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
    given_splits = input_splits(events_dir)
    labels, attrition = compute_labels(spec, events, source=str(config_path), subject_splits=given_splits)
    split_info = _split_info(spec, events_dir, given_splits)
    log.info("cohort %s: attrition\n%s", name, format_attrition(attrition))

    header = f"# cohort {name!r}: normalised copy of {config_path.name} written by `ehr-hcl cohort`\n"
    texts = {
        "cohort": header + yaml.safe_dump(spec_to_yaml_dict(spec), sort_keys=False),
        "aces": to_aces_yaml(spec, name, _admission_types(events)),
    }
    _write_outputs(output_dir, texts, attrition, split_info, labels)
    outputs = {key: output_dir / fname for key, fname in OUTPUT_FILES.items()}
    return _summary(name, labels, attrition, split_info, outputs)


def _split_info(spec: Any, events_dir: Path, given_splits: pl.DataFrame | None) -> dict[str, Any]:
    """Say where the splits came from: the input's subject_splits.parquet, or the keyed hash and its knobs."""
    return {
        "source": "keyed_hash" if given_splits is None else "input",
        "file": None if given_splits is None else str(events_dir / "metadata" / "subject_splits.parquet"),
        "fractions": None if given_splits is not None else list(spec.split.fractions),
        "seed": None if given_splits is not None else spec.split.seed,
    }


def _admission_types(events: pl.LazyFrame) -> list[str]:
    """Return the sorted admission types present in the events (the part of ADMISSION//<type> codes)."""
    return (
        events.filter(pl.col("code").str.starts_with(schema.ADMISSION + "//"))
        .select(pl.col("code").str.strip_prefix(schema.ADMISSION + "//").unique().alias("t"))
        .collect()
        .get_column("t")
        .sort()
        .to_list()
    )


def _write_outputs(
    output_dir: Path,
    texts: dict[str, str],
    attrition: list[dict[str, Any]],
    split_info: dict[str, Any],
    labels: pl.DataFrame,
) -> None:
    """Write every output file: the folder swapped in at once when the cohort owns it, else file by file."""
    # exact arrow types of the contract (polars alone would write large_string)
    table = labels.to_arrow().cast(pa.schema(list(schema.LABEL_COLUMNS.items())))
    meds_table = table.select(schema.MEDS_LABEL_SCHEMA.names).cast(schema.MEDS_LABEL_SCHEMA)

    def write_all(folder: Path) -> None:
        write_text(texts["cohort"], folder / OUTPUT_FILES["cohort"])
        write_text(texts["aces"], folder / OUTPUT_FILES["aces"])
        write_json(attrition, folder / OUTPUT_FILES["attrition"])
        write_json(split_info, folder / OUTPUT_FILES["splits"])
        with atomic_path(folder / OUTPUT_FILES["meds_labels"]) as tmp:
            pq.write_table(meds_table, tmp, compression="zstd")
        with atomic_path(folder / OUTPUT_FILES["labels"]) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    if _owned_folder(output_dir):
        # the whole folder is swapped in at once: a crash never mixes old labels with a new cohort.yaml
        with atomic_dir(output_dir) as tmp_dir:
            write_all(tmp_dir)
    else:  # a folder holding other files (e.g. --output .): never replace it, write file by file
        log.warning("cohort: %s holds other files; writing the outputs one by one", output_dir)
        write_all(output_dir)


def _summary(
    name: str,
    labels: pl.DataFrame,
    attrition: list[dict[str, Any]],
    split_info: dict[str, Any],
    outputs: dict[str, Path],
) -> dict[str, Any]:
    """Return (and log) the stage summary: rows, subjects, positives, splits, event types, attrition."""
    counts = labels.group_by("split").len()
    n_pos = int(labels.get_column("boolean_value").sum())
    summary = {
        "name": name,
        "rows": labels.height,
        "subjects": labels.get_column("subject_id").n_unique(),
        "positives": n_pos,
        "prevalence": n_pos / labels.height,
        "splits": {s: int(dict(counts.iter_rows()).get(s, 0)) for s in schema.SPLITS},
        "split_source": split_info["source"],
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

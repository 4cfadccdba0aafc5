"""The one reader of a cohort's outputs: ``labels.parquet`` and the ``cohort.yaml`` written beside it.

Every later stage (features, embed, predict, report, audit) reads labels through :func:`read_labels` and the
cohort's typed definition through :func:`read_cohort_spec`, so the labels contract has one owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipeline.cohort.spec import CohortSpec, load_spec
from pipeline.exceptions import InputSchemaError, MissingInputError
from pipeline.schema import SPLITS

__all__ = ["KEY_COLUMNS", "read_labels", "read_cohort_spec", "cohort_spec_path"]

#: columns every reader needs; they must be present and never null
KEY_COLUMNS = ("subject_id", "prediction_time", "split")


def read_labels(path: str | Path, columns: Sequence[str] = ()) -> pl.DataFrame:
    """Read and check ``labels.parquet``.

    Parameters
    ----------
    path : str or Path
        ``data/cohorts/<cohort>/labels.parquet``, written by ``ehr-hcl cohort``.
    columns : sequence of str
        Further columns the caller needs (e.g. ``hadm_id``, ``boolean_value``); they must exist, and
        ``boolean_value`` must not be null.

    Returns
    -------
    polars.DataFrame
        Every column, in file order, with ``subject_id`` as Int64 and ``prediction_time`` as Datetime(us).

    Raises
    ------
    MissingInputError
        The file does not exist.
    InputSchemaError
        Unreadable parquet, a missing column, a null key, an unknown split or a null label.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: labels file not found; run `ehr-hcl cohort` first")
    try:
        labels = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is an unreadable input
        raise InputSchemaError(
            f"{path}: not a readable parquet file ({type(exc).__name__}); rerun `ehr-hcl cohort`"
        ) from None
    wanted = list(dict.fromkeys([*KEY_COLUMNS, *columns]))
    missing = [c for c in wanted if c not in labels.columns]
    if missing:
        raise InputSchemaError(
            f"{path}: column {missing[0]!r} missing"
            + (f" (and {missing[1:]})" if len(missing) > 1 else "")
            + f" (found {labels.columns}); rerun `ehr-hcl cohort`"
        )
    if not isinstance(labels.schema["prediction_time"], pl.Datetime):
        raise InputSchemaError(
            f"{path}: column 'prediction_time' has type {labels.schema['prediction_time']}, expected timestamp[us]"
        )
    not_null = [*KEY_COLUMNS, *(["boolean_value"] if "boolean_value" in columns else [])]
    for col in not_null:
        n_null = labels[col].null_count()
        if n_null:
            first = int(labels.with_row_index().filter(pl.col(col).is_null())["index"][0])
            what = "labels must be true/false" if col == "boolean_value" else "rebuild the cohort"
            raise InputSchemaError(
                f"{path}: column {col!r} has {n_null} null value(s), first at row {first}; {what}"
            )
    bad = labels.filter(~pl.col("split").is_in(list(SPLITS)))
    if bad.height:
        raise InputSchemaError(
            f"{path}: column 'split' has value {bad['split'][0]!r}; expected one of {list(SPLITS)}"
        )
    return labels.with_columns(
        pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us"))
    )


def cohort_spec_path(labels_path: str | Path) -> Path:
    """Return the path of the normalised ``cohort.yaml`` that ``ehr-hcl cohort`` writes beside ``labels.parquet``."""
    return Path(labels_path).parent / "cohort.yaml"


def read_cohort_spec(labels_path: str | Path) -> CohortSpec:
    """Read the typed cohort definition of the labels at ``labels_path``.

    Parameters
    ----------
    labels_path : str or Path
        ``data/cohorts/<cohort>/labels.parquet``; its folder holds ``cohort.yaml``.

    Returns
    -------
    CohortSpec
        Its outcome, history window, subgroups and split settings.

    Raises
    ------
    MissingInputError
        ``cohort.yaml`` is not beside the labels.
    ConfigError
        ``cohort.yaml`` is not a valid cohort definition.
    """
    path = cohort_spec_path(labels_path)
    if not path.is_file():
        raise MissingInputError(
            f"{path}: cohort definition not found beside the labels; rebuild the cohort with `ehr-hcl cohort`"
        )
    return load_spec(path)

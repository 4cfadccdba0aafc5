"""The synthetic generator's truth about one cohort's outcome: true probabilities and outcome structures.

Which outcome a cohort predicts is named by its YAML (``CohortSpec.outcome.key``, e.g.
``death_before_discharge`` or ``readmission_30d``), never guessed from the cohort's name. The generator's
``truth/structure.json`` maps that key to the column of true probabilities in ``truth/admissions.parquet``
and to the structures whose factors enter the outcome:
``{"outcomes": {key: {"probability_column": ..., "structures": [...]}}}``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.exceptions import InputSchemaError, MissingInputError
from pipeline.predict import metrics as M

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutcomeTruth:
    """The truth of one outcome: where its true probabilities are, and which structures drive it.

    Attributes
    ----------
    outcome : str
        The cohort's ``outcome.key``.
    truth_path : Path
        ``truth/admissions.parquet`` (hadm_id + one true-probability column per outcome).
    probability_column : str or None
        The column of true probabilities of this outcome; None when the generator has none.
    structures : list of str or None
        The structures whose factors enter the outcome; None when unknown.
    """

    outcome: str
    truth_path: Path
    probability_column: str | None
    structures: list[str] | None

    def oracle(
        self, labels_ho: pd.DataFrame, y: np.ndarray, weights: np.ndarray, alpha: float
    ) -> dict | None:
        """Held_out AUROC (with CI) of the true probabilities; None when this outcome has none.

        Parameters
        ----------
        labels_ho : DataFrame
            The held_out labels (``hadm_id`` used to join the truth).
        y : array of shape (n,)
            Their labels.
        weights : array of shape (B, n)
            The shared bootstrap weights.
        alpha : float
            1 − confidence level.

        Returns
        -------
        dict or None
            ``auroc``, ``auroc_lo``, ``auroc_hi``, ``column``, ``n_missing``.
        """
        import pandas as pd

        col = self.probability_column
        if col is None:
            return None
        truth = pd.read_parquet(self.truth_path)
        for c in ("hadm_id", col):
            if c not in truth.columns:
                raise InputSchemaError(
                    f"{self.truth_path}: column {c!r} missing; expected hadm_id and {col} (outcome {self.outcome})"
                )
        p = labels_ho[["hadm_id"]].merge(
            truth[["hadm_id", col]].drop_duplicates("hadm_id"), on="hadm_id", how="left"
        )[col]
        missing = int(p.isna().sum())
        if missing:
            logger.warning(
                "oracle: %d held_out admission(s) have no true probability; oracle AUROC on the rest", missing
            )
        ok = p.notna().to_numpy()
        est = M.bootstrap_metric(M.auroc, y[ok], p.to_numpy()[ok], weights[:, ok], alpha)
        return {**est.as_dict("auroc"), "column": col, "n_missing": missing}


def outcome_truth(truth_path: str | Path, labels_path: str | Path) -> OutcomeTruth:
    """Read the truth of the outcome that the cohort at ``labels_path`` names.

    Parameters
    ----------
    truth_path : str or Path
        ``truth/admissions.parquet``; ``structure.json`` is read from the same folder.
    labels_path : str or Path
        The cohort's ``labels.parquet``; ``cohort.yaml`` beside it names the outcome.

    Returns
    -------
    OutcomeTruth
        With ``probability_column`` / ``structures`` None (and a warning) when ``structure.json`` does
        not describe this outcome.

    Raises
    ------
    MissingInputError
        ``truth_path`` or the cohort's ``cohort.yaml`` does not exist.
    """
    from pipeline.cohort.labels import read_cohort_spec

    truth_path = Path(truth_path)
    if not truth_path.exists():
        raise MissingInputError(
            f"{truth_path}: oracle truth file not found; rerun `ehr-hcl synth` or drop --truth"
        )
    key = read_cohort_spec(labels_path).outcome.key
    structure_path = truth_path.parent / "structure.json"
    described: dict = {}
    if structure_path.exists():
        try:
            described = (json.loads(structure_path.read_text()).get("outcomes") or {}).get(key) or {}
        except (json.JSONDecodeError, AttributeError):
            logger.warning(
                "%s: not the expected JSON; oracle and structure selection not checked", structure_path
            )
    if not described:
        logger.warning(
            "%s: no truth for outcome %r (structure.json 'outcomes'); oracle AUROC and structure selection skipped",
            structure_path,
            key,
        )
    structures = described.get("structures")
    return OutcomeTruth(
        outcome=key,
        truth_path=truth_path,
        probability_column=described.get("probability_column"),
        structures=list(structures) if structures is not None else None,
    )

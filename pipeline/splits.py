"""Subject-level train/tuning/held_out assignment.

A subject's split depends only on its id, the seed and the fractions (a keyed hash), so every cohort
built with the same seed and fractions puts a subject in the same split, whatever else is in the data,
and no subject can ever land in two splits.
"""

from __future__ import annotations

import hashlib

import numpy as np

from pipeline.schema import SPLITS


def _unit_interval(subject_ids: np.ndarray, seed: int) -> np.ndarray:
    out = np.empty(len(subject_ids), dtype=np.float64)
    key = str(seed).encode()
    for i, sid in enumerate(subject_ids.tolist()):
        digest = hashlib.blake2b(str(int(sid)).encode(), key=key, digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2**64
    return out


def assign_splits(subject_ids, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """Split name for each subject id (array of str, same order as ``subject_ids``)."""
    ids = np.asarray(subject_ids, dtype=np.int64)
    total = float(sum(fractions))
    cut_train = fractions[0] / total
    cut_tuning = (fractions[0] + fractions[1]) / total
    u = _unit_interval(ids, seed)
    return np.where(u < cut_train, SPLITS[0], np.where(u < cut_tuning, SPLITS[1], SPLITS[2]))


def splits_with_given(
    subject_ids, given, fractions: tuple[float, float, float], seed: int
) -> tuple[np.ndarray, int]:
    """Return each subject's split: the given one where there is one, else the keyed hash.

    Parameters
    ----------
    subject_ids : array-like of int
        Subjects to place.
    given : polars.DataFrame or None
        ``subject_id, split`` from the input dataset (a MEDS ``subject_splits.parquet``), or None.
    fractions, seed
        The keyed hash (:func:`assign_splits`) for subjects ``given`` does not place.

    Returns
    -------
    splits : ndarray of str
        One split per subject, in the order of ``subject_ids``.
    n_hashed : int
        How many subjects ``given`` did not place (all of them when ``given`` is None).
    """
    import polars as pl

    ids = np.asarray(subject_ids, dtype=np.int64)
    hashed = assign_splits(ids, fractions, seed)
    if given is None:
        return hashed.astype(str), len(ids)
    kept = pl.DataFrame({"subject_id": ids}).join(given, on="subject_id", how="left")["split"]
    missing = kept.is_null().to_numpy()
    return np.where(missing, hashed, kept.fill_null("").to_numpy()).astype(str), int(missing.sum())

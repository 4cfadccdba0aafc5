"""The k-shot draws of the EHRSHOT protocol: k positives and k negatives, nested across k.

Per replicate, each class of a split is put in one seeded random order, once; the draw for ``k`` is the
first ``k`` rows of each class, so a smaller k's draw is always part of a larger k's. A class with fewer rows
than ``k`` gives all its rows (the draw is *capped* and says so). ``k = "all"`` is every row of the split.
Pure numpy: no files, no models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the label of the draw that takes every row
ALL = "all"


def replicate_seed(seed: int, replicate: int) -> int:
    """Return the random state of replicate ``replicate``: the replicate index combined with the config seed.

    Parameters
    ----------
    seed : int
        The stage's ``fewshot.seed``.
    replicate : int
        The replicate index (0, 1, ...).

    Returns
    -------
    int
        A 32-bit seed, the same on every machine for the same ``(seed, replicate)``.
    """
    return int(np.random.SeedSequence([int(seed), int(replicate)]).generate_state(1)[0])


def k_label(k: int | str) -> str:
    """Return the text form of ``k`` used as a key in the metrics JSON (``"8"``, ``"all"``)."""
    return str(k)


@dataclass(frozen=True)
class Draw:
    """The rows of one k-shot draw of one split.

    Attributes
    ----------
    k : int or "all"
        The requested shots per class.
    rows : ndarray of int
        Row indices into the labels: the drawn positives, then the drawn negatives.
    n_positive, n_negative : int
        Rows drawn per class (``k`` unless the class has fewer rows, or every row for ``"all"``).
    capped : bool
        A class had fewer rows than ``k``.
    """

    k: int | str
    rows: np.ndarray
    n_positive: int
    n_negative: int
    capped: bool


def class_orders(y: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Put the positive and the negative rows of a split each in one random order.

    Parameters
    ----------
    y : array of shape (n,)
        0/1 labels of every row.
    rows : array of int
        The split's row indices.
    rng : numpy.random.Generator

    Returns
    -------
    positives, negatives : arrays of int
        The split's rows of each class, shuffled.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    pos, neg = rows[y[rows] == 1], rows[y[rows] == 0]
    return rng.permutation(pos), rng.permutation(neg)


def nested_draws(
    y: np.ndarray, rows: np.ndarray, ks: list[int | str], rng: np.random.Generator
) -> dict[str, Draw]:
    """Draw every k of ``ks`` from one split, nested: the first k rows of one random order per class.

    Parameters
    ----------
    y : array of shape (n,)
        0/1 labels of every row.
    rows : array of int
        The split's row indices (train or tuning).
    ks : list of int or "all"
    rng : numpy.random.Generator
        Used once, for the two class orders.

    Returns
    -------
    dict of str to Draw
        Keyed by :func:`k_label`.
    """
    pos, neg = class_orders(y, rows, rng)
    out = {}
    for k in ks:
        if k == ALL:
            take_pos, take_neg, capped = len(pos), len(neg), False
        else:
            take_pos, take_neg = min(int(k), len(pos)), min(int(k), len(neg))
            capped = take_pos < int(k) or take_neg < int(k)
        out[k_label(k)] = Draw(
            k=k,
            rows=np.concatenate([pos[:take_pos], neg[:take_neg]]),
            n_positive=take_pos,
            n_negative=take_neg,
            capped=capped,
        )
    return out


def replicate_draws(
    y: np.ndarray, train: np.ndarray, tuning: np.ndarray, ks: list[int | str], seed: int
) -> tuple[dict[str, Draw], dict[str, Draw]]:
    """Draw the train and the tuning draws of one replicate (one generator, train first, then tuning).

    Parameters
    ----------
    y : array of shape (n,)
        0/1 labels of every row.
    train, tuning : arrays of int
        The rows of each split.
    ks : list of int or "all"
    seed : int
        The replicate's seed (see :func:`replicate_seed`).

    Returns
    -------
    train_draws, tuning_draws : dict of str to Draw
    """
    rng = np.random.default_rng(seed)
    return nested_draws(y, train, ks, rng), nested_draws(y, tuning, ks, rng)

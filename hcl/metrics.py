"""Recovery metrics for hierarchical factor models.

Loadings are passed as dicts ``(modality, structure) -> array (d_m, r_S)`` (what :class:`hcl.LinearHCL`
stores in ``loadings_`` and :func:`hcl.simulate.hierarchical` in ``loadings``) or, for structure-agnostic
estimates such as PCA, as one matrix ``W_hat`` of shape (sum d_m, k) with rows in modality order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hcl.exceptions import ValidationError
from hcl.structures import parse_structure

__all__ = [
    "GramErrors",
    "loading_matrix",
    "procrustes_align",
    "gram_errors",
    "sin_theta",
    "structure_recovery",
    "variance_explained",
]


def _dims_from(loadings: Mapping, modalities: Sequence[str]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for (m, _s), a in loadings.items():
        dims.setdefault(m, np.shape(a)[0])
    missing = [m for m in modalities if m not in dims]
    if missing:
        raise ValidationError(f"no loading block for modalities {missing}; pass dims explicitly")
    return dims


def _structure_from(loadings: Mapping, modalities: Sequence[str]) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for (_m, s), a in loadings.items():
        parse_structure(s, modalities)
        ranks[s] = max(ranks.get(s, 0), np.shape(a)[1])
    return {s: r for s, r in ranks.items() if r > 0}


def loading_matrix(
    loadings: Mapping,
    modalities: Sequence[str],
    dims: Mapping[str, int] | None = None,
    structure: Mapping[str, int] | None = None,
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Stack loading blocks into W.

    Returns
    -------
    W : ndarray of shape (sum d_m, sum r_S)
        Rows in modality order, columns grouped by structure; blocks (m, S) with m not in S are zero.
    columns : list of (structure, index)
    """
    dims = dict(dims) if dims is not None else _dims_from(loadings, modalities)
    structure = dict(structure) if structure is not None else _structure_from(loadings, modalities)
    offs = np.cumsum([0] + [int(dims[m]) for m in modalities])
    cols = [(s, j) for s, r in structure.items() for j in range(r)]
    W = np.zeros((int(offs[-1]), len(cols)))
    c = 0
    for s, r in structure.items():
        for i, m in enumerate(modalities):
            blk = loadings.get((m, s))
            if blk is not None and r > 0:
                blk = np.asarray(blk, dtype=float)
                if blk.shape != (dims[m], r):
                    raise ValidationError(
                        f"loading block ({m!r}, {s!r}) has shape {blk.shape}, expected ({dims[m]}, {r})"
                    )
                W[offs[i] : offs[i + 1], c : c + r] = blk
        c += r
    return W, cols


def procrustes_align(W_hat: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Rotate ``W_hat`` onto ``W`` with one orthogonal Procrustes rotation.

    Parameters
    ----------
    W_hat : ndarray of shape (p, k_hat)
    W : ndarray of shape (p, k)

    Returns
    -------
    ndarray of shape (p, k)
        ``W_hat_pad @ R`` where ``W_hat_pad`` is ``W_hat`` padded with zero columns to ``max(k, k_hat)``
        columns and ``R`` the orthogonal matrix minimising ``||W_hat_pad R - W_pad||_F``; the first ``k``
        columns (matched to ``W``'s columns) are returned.
    """
    W_hat = np.asarray(W_hat, dtype=float)
    W = np.asarray(W, dtype=float)
    if W_hat.shape[0] != W.shape[0]:
        raise ValidationError(f"W_hat has {W_hat.shape[0]} rows but W has {W.shape[0]}")
    k = max(W.shape[1], W_hat.shape[1])
    A = np.zeros((W.shape[0], k))
    A[:, : W_hat.shape[1]] = W_hat
    B = np.zeros((W.shape[0], k))
    B[:, : W.shape[1]] = W
    u, _, vt = np.linalg.svd(A.T @ B)
    return (A @ (u @ vt))[:, : W.shape[1]]


@dataclass(frozen=True)
class GramErrors:
    """Procrustes-aligned Gram errors.

    Attributes
    ----------
    blocks : pandas.DataFrame
        One row per true block (modality, structure) with m in S: columns ``modality``, ``structure``,
        ``error`` (``||A A^T - Â Â^T||_F``) and ``norm`` (``||A A^T||_F``, the all-zero estimate's error).
    mean_block : float
        Mean of ``blocks.error``.
    overall : float
        ``||W W^T - Ŵ Ŵ^T||_F`` over the whole loading matrix.
    """

    blocks: pd.DataFrame
    mean_block: float
    overall: float


def gram_errors(
    true_loadings: Mapping,
    estimate,
    modalities: Sequence[str],
    dims: Mapping[str, int] | None = None,
    true_structure: Mapping[str, int] | None = None,
    align: bool = True,
) -> GramErrors:
    """Per-block and overall Gram errors after one Procrustes rotation of the whole estimate.

    Parameters
    ----------
    true_loadings : dict (modality, structure) -> ndarray (d_m, r_S)
    estimate : dict (modality, structure) -> ndarray, or ndarray (sum d_m, k)
        Estimated loadings; a dict may use a different set of structures or ranks than the truth.
    modalities : sequence of str
    dims : dict modality -> d_m, optional
    true_structure : dict structure -> rank, optional (inferred from ``true_loadings``)
    align : bool, default True
        Rotate the whole estimate onto the truth before cutting it into blocks. Without alignment a
        dict estimate is compared block by block (a within-structure rotation does not change a block's
        Gram matrix, but mixing between structures does).
    """
    dims = dict(dims) if dims is not None else _dims_from(true_loadings, modalities)
    true_structure = (
        dict(true_structure) if true_structure is not None else _structure_from(true_loadings, modalities)
    )
    W, cols = loading_matrix(true_loadings, modalities, dims, true_structure)
    if isinstance(estimate, Mapping):
        est_struct = _structure_from(estimate, modalities) if len(estimate) else {}
        W_hat, hat_cols = loading_matrix(estimate, modalities, dims, est_struct)
    else:
        W_hat = np.asarray(estimate, dtype=float)
        hat_cols = None
        if W_hat.ndim != 2 or W_hat.shape[0] != W.shape[0]:
            raise ValidationError(f"estimate has shape {W_hat.shape}, expected ({W.shape[0]}, k)")
    overall = float(np.linalg.norm(W @ W.T - W_hat @ W_hat.T))
    if align or hat_cols is None:
        Wa = procrustes_align(W_hat, W)
        a_cols = cols
    else:
        Wa, a_cols = W_hat, hat_cols
    offs = np.cumsum([0] + [int(dims[m]) for m in modalities])
    rows = []
    for s in true_structure:
        members = parse_structure(s, modalities)
        tc = [j for j, (cs, _) in enumerate(cols) if cs == s]
        ec = [j for j, (cs, _) in enumerate(a_cols) if cs == s]
        for i, m in enumerate(modalities):
            if m not in members:
                continue
            sl = slice(offs[i], offs[i + 1])
            A = W[sl][:, tc]
            Ah = Wa[sl][:, ec] if ec else np.zeros((A.shape[0], 0))
            G = A @ A.T
            rows.append(
                {
                    "modality": m,
                    "structure": s,
                    "error": float(np.linalg.norm(G - Ah @ Ah.T)),
                    "norm": float(np.linalg.norm(G)),
                }
            )
    blocks = pd.DataFrame(rows, columns=["modality", "structure", "error", "norm"])
    mean_block = float(blocks["error"].mean()) if len(blocks) else 0.0
    return GramErrors(blocks=blocks, mean_block=mean_block, overall=overall)


def _stack(loadings: Mapping, s: str, modalities: Sequence[str], dims: Mapping[str, int]) -> np.ndarray:
    members = parse_structure(s, modalities)
    parts = []
    r = None
    for m in modalities:
        blk = loadings.get((m, s))
        if blk is not None:
            r = np.shape(blk)[1]
    for m in modalities:
        blk = loadings.get((m, s))
        if blk is None:
            parts.append(np.zeros((int(dims[m]), r or 0)))
        else:
            parts.append(np.asarray(blk, dtype=float))
    out = np.vstack(parts) if r else np.zeros((sum(int(dims[m]) for m in modalities), 0))
    del members
    return out


def sin_theta(
    true_loadings: Mapping,
    est_loadings: Mapping,
    modalities: Sequence[str],
    dims: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Sin-theta distance per true structure between true and estimated column spaces.

    For structure S the subspaces are the column spans of the stacked loadings (all modalities' rows).
    Returns ``||P - P_hat||_F / sqrt(2)`` (the Frobenius norm of the sines of the principal angles when
    ranks agree); 0 is perfect recovery, ``sqrt(r_S / 2)``-ish means orthogonal or missing. A structure
    absent from the estimate counts as an empty subspace.
    """
    dims = dict(dims) if dims is not None else _dims_from(true_loadings, modalities)
    out: dict[str, float] = {}
    for s in _structure_from(true_loadings, modalities):
        A = _stack(true_loadings, s, modalities, dims)
        B = _stack(est_loadings, s, modalities, dims)
        P = _proj(A)
        Ph = _proj(B)
        out[s] = float(np.linalg.norm(P - Ph) / np.sqrt(2))
    return out


def _proj(A: np.ndarray) -> np.ndarray:
    if A.shape[1] == 0:
        return np.zeros((A.shape[0], A.shape[0]))
    u, sv, _ = np.linalg.svd(A, full_matrices=False)
    u = u[:, sv > 1e-10 * max(sv.max(), 1e-300)]
    return u @ u.T


def structure_recovery(true_structure: Mapping[str, int], est_structure: Mapping[str, int]) -> dict:
    """Precision, recall and F1 of the set of present structures, and exact recovery of set and ranks.

    Returns
    -------
    dict with keys ``precision``, ``recall``, ``f1``, ``exact_set`` (bool), ``exact`` (set and ranks equal),
    ``missed`` (list), ``spurious`` (list), ``rank_errors`` (dict structure -> (true, estimated)).
    """
    t = {s for s, r in true_structure.items() if r > 0}
    e = {s for s, r in est_structure.items() if r > 0}
    tp = len(t & e)
    precision = tp / len(e) if e else (1.0 if not t else 0.0)
    recall = tp / len(t) if t else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    rank_errors = {
        s: (true_structure[s], est_structure[s]) for s in t & e if true_structure[s] != est_structure[s]
    }
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "exact_set": t == e,
        "exact": t == e and not rank_errors,
        "missed": sorted(t - e),
        "spurious": sorted(e - t),
        "rank_errors": rank_errors,
    }


def variance_explained(
    loadings: Mapping,
    modalities: Sequence[str],
    noise_variance=None,
    dims: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Fraction of each modality's total variance explained by each structure.

    Parameters
    ----------
    loadings : dict (modality, structure) -> ndarray (d_m, r_S)
    modalities : sequence of str
    noise_variance : float or dict modality -> float, optional
        Per-feature noise variance. With it, the denominator is the modality's model variance
        ``sum_S ||A_{m,S}||_F^2 + d_m * noise``; without it, only the signal variance (rows sum to 1).

    Returns
    -------
    pandas.DataFrame
        Index: modalities; columns: structures (present in ``loadings``); values in [0, 1].
    """
    dims = dict(dims) if dims is not None else _dims_from(loadings, modalities)
    structs = list(_structure_from(loadings, modalities))
    table = pd.DataFrame(0.0, index=list(modalities), columns=structs)
    for (m, s), a in loadings.items():
        if s in structs:
            table.loc[m, s] = float(np.sum(np.asarray(a, dtype=float) ** 2))
    if noise_variance is None:
        noise = dict.fromkeys(modalities, 0.0)
    elif isinstance(noise_variance, Mapping):
        noise = {m: float(noise_variance[m]) for m in modalities}
    else:
        noise = dict.fromkeys(modalities, float(noise_variance))
    total = table.sum(axis=1) + pd.Series({m: noise[m] * dims[m] for m in modalities})
    table = table.div(total.where(total > 0, 1.0), axis=0)
    table.index.name = "modality"
    table.columns.name = "structure"
    return table


def heldout_r2(block: np.ndarray, z: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Held-out R² of a least-squares regression (with intercept) of ``z`` (n, r) on ``block`` (n, k).

    Fitted on rows ``train``, scored on rows ``test``: how much of a true factor a learned block carries.
    """
    design = np.c_[block, np.ones(len(block))]
    coef, *_ = np.linalg.lstsq(design[train], z[train], rcond=None)
    resid = z[test] - design[test] @ coef
    return float(1 - (resid**2).sum() / ((z[test] - z[test].mean(0)) ** 2).sum())


def r2_table(blocks: Mapping[str, np.ndarray], z: Mapping[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """Held-out R² of every true factor ``z[t]`` from every block ``blocks[s]``, keyed ``(s, t)``.

    The first half of the rows fits each regression, the second half scores it.
    """
    n = len(next(iter(z.values())))
    train, test = np.arange(n // 2), np.arange(n // 2, n)
    return {(s, t): heldout_r2(B, z[t], train, test) for s, B in blocks.items() for t in z}

"""Which trained structures :class:`hcl.deep.HCL` keeps, and its per-structure summary records.

Private structures are always kept. A shared structure (two or more modalities) is tested on the held-out
rows, pair by pair: every pair of its modalities must share its factors, so its weakest pair decides.

``rule="permutation"`` (the default of :class:`hcl.deep.HCL`)
    Largest structures first. For a pair ``(a, b)`` of ``S``, each modality's block for ``S`` is first
    residualised (least squares, with an intercept) on that modality's blocks of the *kept* structures
    that contain ``S``: what ``S``'s block repeats of a larger kept structure is not evidence for ``S``.
    The pair's alignment (mean positive minus mean negative cosine similarity) is compared with its
    permutation null, the same statistic with ``b``'s rows shuffled (``N_PERMUTATIONS`` shuffles, seeded
    by the fit's seed): ``z = (alignment - mean_null) / sd_null``. ``S`` is kept when the smallest ``z``
    over its pairs reaches ``z_threshold`` (significance) and, when ``S`` has kept supersets, every pair's
    residual alignment is at least ``MIN_RELATIVE_ALIGNMENT`` times the alignment of the same two
    modalities in such a superset (effect size). The null is calibrated per pair and per fit, and the
    effect size is relative to what the same two modalities reach in the same fit, so neither depends on
    a block's width, how many of its dimensions carry signal, the noise or the number of held-out rows,
    which move the raw alignment of a present structure anywhere from 0.1 to 0.9. Significance alone is
    not enough on large samples: two modalities whose features depend on each other in ways no structure
    describes (counts of codes and of prescriptions, nonlinear functions of the global factors) align a
    spare block significantly (z 5 to 8 on the demo) but at a small fraction of their alignment in the
    global structure. Measured relative alignments: false structures of the pipeline demo 0.12 to 0.33,
    its true ones 0.77 to 1.36; absent structures of the simulator at most 0.01, present ones from 0.48;
    ``MIN_RELATIVE_ALIGNMENT = 0.4`` lies between (issue 14).
``rule="threshold"``
    The raw weakest-pair alignment (no residualising) must reach a fixed ``threshold`` (the rule of
    earlier versions).

Importing this module imports torch.
"""

from __future__ import annotations

import numpy as np
import torch

from hcl.losses import SpectralLoss
from hcl.structures import kind, parse_structure

__all__ = ["MIN_RELATIVE_ALIGNMENT", "N_PERMUTATIONS", "head_norms", "prune"]

# Row shuffles per pair for the permutation null.
N_PERMUTATIONS = 20
# Smallest ratio of a pair's residual alignment in S to the same pair's alignment in a kept superset of S.
MIN_RELATIVE_ALIGNMENT = 0.4


def head_norms(net, modalities, layout) -> dict[tuple[str, str], float]:
    """Frobenius norm of every head's weight rows.

    Parameters
    ----------
    net : HeadNetwork
    modalities : list of str
    layout : dict of str to list of (str, int, int)

    Returns
    -------
    dict of (modality, structure) to float
    """
    out = {}
    with torch.no_grad():
        for i, m in enumerate(modalities):
            w = net.heads[i].weight
            for s, a, b in layout[m]:
                out[(m, s)] = float(w[a:b].norm())
    return out


def _alignments(members, mods, emb, aug, mask, spectral, s) -> tuple[float, float]:
    """Alignment of structure ``s`` over all its modalities and over its weakest pair."""
    with torch.no_grad():
        if len(members) >= 2:
            idx = [mods.index(m) for m in members]
            z = torch.stack([emb[m][s] for m in members])
            gap = -float(spectral(z, mask[idx]))
            k = len(members)
            weakest = min(
                -float(spectral(z[[a, b]], mask[[idx[a], idx[b]]]))
                for a in range(k)
                for b in range(a + 1, k)
            )
        else:
            i = mods.index(members[0])
            z = torch.stack([aug[0][members[0]][s], aug[1][members[0]][s]])
            gap = weakest = -float(spectral(z, mask[[i, i]]))
    return gap, weakest


def _residual(z: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """``z`` minus its least-squares fit on an intercept and ``others`` (``z`` itself when none)."""
    if not others:
        return z
    design = np.hstack([np.ones((z.shape[0], 1))] + others)
    coef, *_ = np.linalg.lstsq(design, z, rcond=None)
    return z - design @ coef


def _pair_z(za: np.ndarray, zb: np.ndarray, spectral, rng) -> tuple[float, float]:
    """Alignment of two row-aligned blocks and its z-score against ``N_PERMUTATIONS`` row shuffles."""

    def align(u, v):
        return -float(spectral(torch.as_tensor(np.stack([u, v]), dtype=torch.float32)))

    obs = align(za, zb)
    null = np.array([align(za, zb[rng.permutation(zb.shape[0])]) for _ in range(N_PERMUTATIONS)])
    return obs, float((obs - null.mean()) / max(float(null.std(ddof=1)), 1e-6))


def _null_test(s, members, mods, emb, mask, kept, spectral, rng) -> tuple[float, float, float]:
    """Return the smallest pair z-score, residual alignment and relative alignment of structure ``s``.

    Each pair's blocks are residualised on the kept structures that contain ``s``; the relative alignment
    is a pair's residual alignment over the same two modalities' alignment in such a superset.
    """
    supers = [t for t in kept if t != s and set(members) <= set(parse_structure(t, mods))]
    worst_z, worst_align, worst_ratio = np.inf, np.inf, np.inf
    for i, a in enumerate(members):
        for b in members[i + 1 :]:
            rows = (mask[mods.index(a)] & mask[mods.index(b)]).cpu().numpy()
            if rows.sum() < 4:
                return -np.inf, np.nan, np.nan
            za, zb = (
                _residual(
                    emb[m][s].cpu().numpy()[rows].astype(np.float64),
                    [emb[m][t].cpu().numpy()[rows].astype(np.float64) for t in supers],
                )
                for m in (a, b)
            )
            obs, z = _pair_z(za, zb, spectral, rng)
            worst_z, worst_align = min(worst_z, z), min(worst_align, obs)
            for t in supers:  # the same two modalities' alignment in a kept larger structure
                pair = torch.stack([emb[a][t][torch.as_tensor(rows)], emb[b][t][torch.as_tensor(rows)]])
                ref = -float(spectral(pair.float()))
                worst_ratio = min(worst_ratio, obs / ref if ref > 0 else np.inf)
    return worst_z, worst_align, worst_ratio


def prune(
    net, objective, xs, mask, seed: int, threshold: float, rule: str = "threshold", z_threshold: float = 4.0
) -> tuple[dict[str, int], list[dict]]:
    """Alignment per structure on held-out rows, head norms, pruning and summary records.

    Parameters
    ----------
    net : HeadNetwork
        The trained network.
    objective : HCLObjective
        Gives the modalities, candidates, layout, embeddings and augmented views.
    xs : list of torch.Tensor (n, d_m)
        The validation rows (the training rows without validation).
    mask : torch.Tensor (M, n) bool
    seed : int
        The fit's seed (augmentation uses ``seed + 3``, the permutation null ``seed + 5``).
    threshold : float
        The fixed weakest-pair alignment of ``rule="threshold"``.
    rule : {"threshold", "permutation"}, default "threshold"
        See the module docstring.
    z_threshold : float, default 4.0
        The weakest pair's z-score against its permutation null that ``rule="permutation"`` requires.

    Returns
    -------
    kept : dict of str to int
        Kept structures and their dimensions.
    records : list of dict
        One summary row per candidate, in candidate order.
    """
    with torch.no_grad():
        emb = objective.embeddings(net(xs))
        gen = torch.Generator().manual_seed(seed + 3)
        aug = objective.augmented_views(net, xs, gen)
    spectral = SpectralLoss(normalize=True)
    mods, candidates = objective.modalities, objective.candidates
    norms = head_norms(net, mods, objective.layout)
    struct_norm = {s: float(np.mean([norms[(m, s)] for m in parse_structure(s, mods)])) for s in candidates}
    top = max(struct_norm.values()) if struct_norm else 0.0
    rng = np.random.default_rng(seed + 5)
    records, kept = {}, {}
    # largest structures first: a structure's test residualises on its kept supersets
    order = sorted(candidates, key=lambda s: -len(parse_structure(s, mods)))
    for s in order:
        members = parse_structure(s, mods)
        gap, weakest = _alignments(members, mods, emb, aug, mask, spectral, s)
        z, resid_align, ratio = np.nan, np.nan, np.nan
        if len(members) < 2:
            keep = True
        elif rule == "permutation":
            z, resid_align, ratio = _null_test(s, members, mods, emb, mask, kept, spectral, rng)
            keep = bool(z >= float(z_threshold)) and not ratio < MIN_RELATIVE_ALIGNMENT
        else:
            keep = weakest >= float(threshold)
        if keep:
            kept[s] = candidates[s]
        rec = {"structure": s, "kind": kind(s, mods), "dim": candidates[s]}
        for m in mods:
            rec[f"head_norm_{m}"] = norms.get((m, s), float("nan"))
        rec.update(
            {
                "relative_norm": struct_norm[s] / top if top > 0 else 0.0,
                "alignment": gap,
                "weakest_pair_alignment": weakest,
            }
        )
        if rule == "permutation":
            rec.update(
                {
                    "weakest_pair_z": float(z),
                    "residual_alignment": float(resid_align),
                    "relative_alignment": float(ratio) if np.isfinite(ratio) else float("nan"),
                }
            )
        rec["kept"] = keep
        records[s] = rec
    records = [records[s] for s in candidates]
    kept = {s: candidates[s] for s in candidates if s in kept}
    if not kept:  # nothing supported: keep the best-aligned structure rather than nothing
        best = max(records, key=lambda r: r["alignment"])["structure"]
        kept[best] = candidates[best]
        for r in records:
            r["kept"] = r["structure"] == best
    return kept, records

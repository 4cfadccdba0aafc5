"""Which trained structures :class:`hcl.deep.HCL` keeps, and its per-structure summary records.

A shared structure is kept when the held-out alignment of its weakest pair of modalities reaches the
prune threshold; private structures are always kept. Importing this module imports torch.
"""

from __future__ import annotations

import numpy as np
import torch

from hcl.losses import SpectralLoss
from hcl.structures import kind, parse_structure

__all__ = ["head_norms", "prune"]


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


def prune(net, objective, xs, mask, seed: int, prune_threshold: float) -> tuple[dict[str, int], list[dict]]:
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
        The fit's seed (augmentation uses ``seed + 3``).
    prune_threshold : float

    Returns
    -------
    kept : dict of str to int
        Kept structures and their dimensions.
    records : list of dict
        One summary row per candidate.
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
    records = []
    kept = {}
    for s, dim in candidates.items():
        members = parse_structure(s, mods)
        gap, weakest = _alignments(members, mods, emb, aug, mask, spectral, s)
        rel = struct_norm[s] / top if top > 0 else 0.0
        # every pair of a structure's modalities shares its factors, so its weakest pair decides
        keep = len(members) < 2 or weakest >= float(prune_threshold)
        if keep:
            kept[s] = dim
        rec = {"structure": s, "kind": kind(s, mods), "dim": dim}
        for m in mods:
            rec[f"head_norm_{m}"] = norms.get((m, s), float("nan"))
        rec.update({"relative_norm": rel, "alignment": gap, "weakest_pair_alignment": weakest, "kept": keep})
        records.append(rec)
    if not kept:  # nothing supported: keep the best-aligned structure rather than nothing
        best = max(records, key=lambda r: r["alignment"])["structure"]
        kept[best] = candidates[best]
        for r in records:
            r["kept"] = r["structure"] == best
    return kept, records

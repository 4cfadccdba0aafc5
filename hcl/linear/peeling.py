"""The peeling estimate of LinearHCL: structures from smallest to largest, by Schur complements.

Also the helpers that turn per-structure loadings into one masked loading matrix and back into whitened,
de-biased components.
"""

from __future__ import annotations

import numpy as np

from hcl.linear.stats import edge, spike_shrinkage
from hcl.structures import all_structures, parse_structure

__all__ = ["assemble", "components", "pad_components", "peel", "top_eig"]


def top_eig(A, k=None, value=None, max_k=None, extra=0):
    """Top eigenpairs of symmetric A, largest first: the top ``k``, or those above ``value`` (+``extra``).

    Uses Lanczos (ARPACK, deterministic start) for a few pairs of a large matrix, LAPACK otherwise.
    """
    d = A.shape[0]
    cap = d if max_k is None else min(d, max_k + extra)
    if value is not None:
        kk = min(cap, 12)
        while True:
            lam, U = eig_k(A, kk)
            n_above = int(np.sum(lam > value))
            if (n_above < kk and n_above + extra <= kk) or kk >= cap:
                kk = min(n_above + extra, cap, len(lam))
                return lam[:kk], U[:, :kk]
            kk = min(cap, 2 * kk)
    k = min(int(k), d)
    if k <= 0:
        return np.zeros(0), np.zeros((d, 0))
    return eig_k(A, k)


def eig_k(A, k):
    d = A.shape[0]
    lam = None
    if d > 200 and k < d // 4:
        from scipy.sparse.linalg import ArpackNoConvergence, eigsh

        v0 = np.full(d, 1.0 / np.sqrt(d))
        try:
            lam, U = eigsh(A, k=k, which="LA", v0=v0, tol=1e-10)
        except ArpackNoConvergence:  # clustered eigenvalues (real data): fall back to the dense solver
            lam = None
    if lam is None:
        from scipy.linalg import eigh

        lam, U = eigh(A, subset_by_index=[d - k, d - 1], driver="evr")
    order = np.argsort(lam)[::-1]
    return lam[order], U[:, order]


def assemble(blocks, structure, mods, sl, p):
    """Build the loading matrix (p, k) from per-structure stacked blocks (p, r_S) and its structural mask."""
    k = sum(structure.values())
    W = np.zeros((p, k))
    mask = np.zeros((p, k), dtype=bool)
    c = 0
    for s, r in structure.items():
        for m in s.split("+"):
            mask[sl[m], c : c + r] = True
        if s in blocks:
            W[:, c : c + r] = blocks[s][:, :r]
        c += r
    return W * mask, mask


def components(W, psi, structure, mods, sl, n_obs):
    """Per structure: whitened SVD of its stacked loadings and the spiked-model de-biasing/shrinkage."""
    p = W.shape[0]
    out = {}
    c = 0
    for s, r in structure.items():
        members = s.split("+")
        rows = np.concatenate([np.arange(p)[sl[m]] for m in mods if m in members])
        sq = np.sqrt(psi[rows])[:, None]
        gamma = len(rows) / min(n_obs[m] for m in members)
        u, sv, vt = np.linalg.svd(W[rows, c : c + r] / sq, full_matrices=False)
        ell, shrunk = spike_shrinkage(sv**2, gamma)
        out[s] = {
            "rows": rows,
            "sq": sq,
            "u": u,
            "sv": sv,
            "vt": vt,
            "gamma": gamma,
            "ell": ell,
            "shrunk": shrunk,
        }
        c += r
    return out


def pad_components(cp, cp_first, r):
    """Components of a structure after stage 2, padded with zero components up to its nominal rank."""
    out = dict(cp_first)
    d = len(cp_first["rows"])
    a = 0 if cp is None else len(cp["sv"])
    u = np.zeros((d, r))
    sv, ell, shrunk = np.zeros(r), np.zeros(r), np.zeros(r)
    vt = np.eye(r)
    if a:
        u[:, :a] = cp["u"]
        sv[:a], ell[:a], shrunk[:a] = cp["sv"], cp["ell"], cp["shrunk"]
        vt[:a, :a] = cp["vt"]
        out["sq"] = cp["sq"]
    out.update(u=u, sv=sv, vt=vt, ell=ell, shrunk=shrunk)
    return out


def peel(S, psi_m, mods, sl, dims, n_obs, ranks, margin, max_rank):
    """Peeling estimate: structures from smallest to largest, Schur complements against the rest.

    Returns a dict structure -> stacked loadings (p, r) (zero outside the structure's rows) and a
    discovery log (structure -> eigenvalues over the threshold, threshold).
    """
    p = S.shape[0]
    psi = np.concatenate([np.full(dims[m], psi_m[m]) for m in mods])
    R = S - np.diag(psi)
    idx = {m: np.arange(p)[sl[m]] for m in mods}
    structs = all_structures(mods)[::-1]  # smallest first
    structs = sorted(structs, key=lambda s: len(parse_structure(s, mods)))
    done: set[str] = set()
    out: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {}
    for s in structs:
        members = parse_structure(s, mods)
        outside = [m for m in mods if m not in members]
        rows = np.concatenate([idx[m] for m in members])
        n_s = min(n_obs[m] for m in members)
        sig_s = float(np.mean(psi[rows]))
        C = R[np.ix_(rows, rows)]
        if outside:
            orows = np.concatenate([idx[m] for m in outside])
            Roo = R[np.ix_(orows, orows)]
            n_o = min(n_obs[m] for m in outside)
            if ranks is None:
                thr_o = margin * float(np.mean(psi[orows])) * edge(len(orows) / n_o)
                lo_k, Uo_k = top_eig(Roo, value=thr_o, max_k=len(orows))
                k_o = len(lo_k)
            else:
                k_o = sum(
                    r
                    for t, r in ranks.items()
                    if t not in done and set(parse_structure(t, mods)) & set(outside)
                )
                k_o = min(k_o, len(orows))
                if k_o > 0:
                    lo_k, Uo_k = top_eig(Roo, k=k_o)
            if k_o > 0:
                # de-biased denominators: the sample eigenvalue overstates the spike and its eigenvector is
                # tilted (cos^2 < 1); dividing by the Frobenius-optimal shrunk spike cancels both biases
                sig_o = float(np.mean(psi[orows]))
                g_o = len(orows) / n_o
                ell_o, shr_o = spike_shrinkage(lo_k / sig_o, g_o)
                good = ell_o > 1.5 * np.sqrt(g_o)
                B = R[np.ix_(rows, orows)] @ Uo_k[:, good]
                C = C - (B / (sig_o * shr_o[good])) @ B.T
        C = (C + C.T) / 2
        thr = margin * sig_s * edge(len(rows) / n_s)
        if ranks is None:
            lam, U = top_eig(C, value=thr, max_k=min(max_rank, len(rows)), extra=2)
            r = int(min(np.sum(lam > thr), max_rank, len(rows)))
        else:
            r = int(ranks.get(s, 0))
            lam, U = top_eig(C, k=min(r + 2, len(rows)))
        info[s] = {"eigenvalues": lam[: max(r + 2, 3)].tolist(), "threshold": thr, "rank": r}
        if r > 0:
            Ws = U[:, :r] * np.sqrt(np.maximum(lam[:r], 0))
            full = np.zeros((p, r))
            full[rows] = Ws
            out[s] = full
            R[np.ix_(rows, rows)] -= Ws @ Ws.T
        done.add(s)
    return out, info

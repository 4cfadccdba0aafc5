"""Refinement of LinearHCL: maximum likelihood under the structural zero pattern by closed-form EM.

The model is factor analysis with a fixed zero pattern, ``Sigma = W W^T + Psi``, ``W[i, j] = 0`` unless
feature ``i``'s modality belongs to component ``j``'s structure, and ``Psi`` constant within a modality.
Everything works on the sample covariance ``S`` (p x p); nothing depends on the number of rows.

One EM step costs one product ``S (Psi^{-1} W)`` (p x p times p x k) and small k x k solves (Woodbury):

- E-step: ``M = I + W^T Psi^{-1} W``, ``beta = M^{-1} W^T Psi^{-1}``, ``E[x z^T] = S beta^T`` and
  ``E[z z^T] = M^{-1} + beta S beta^T``;
- M-step, per modality ``m`` with the columns ``J_m`` of its structures:
  ``W_m[:, J_m] = E[x_m z_J^T] E[z_J z_J^T]^{-1}`` and
  ``psi_m = mean_i (S_ii - E[x_i z_J^T] W_m[i, J_m])``.

The steps are accelerated with SQUAREM (Varadhan and Roland 2008, scheme S3), with a fall back to the
plain EM step whenever the extrapolated point is worse, so the likelihood never decreases. The solver
stops when the relative change of the objective between accepted points is below ``tol`` twice in a row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hcl.linear.peeling import assemble, components, pad_components

__all__ = ["RefineResult", "ls_masked", "ml_em", "ml_lbfgs", "refine", "refine_and_prune"]

#: with ranks="auto", refined components weaker than this multiple of the detection limit are dropped
PRUNE_SNR = 2.0
#: relative tolerance of the first ML stage (before components below the edge are dropped)
STAGE1_TOL = 1e-6
#: projected-gradient tolerance of the least-squares refinement (``refine="ls"``)
LS_GTOL = 1e-4
#: accelerated EM cycles between two checks for components that have fallen below the pruning threshold
MONITOR_EVERY = 10
#: EM steps before a refinement that has not converged hands over to L-BFGS
EM_STEPS = 150
#: L-BFGS gradient tolerances after EM (first stage, final stage): those of the former L-BFGS refinement
LBFGS_GTOL_LOOSE = 1e-2
LBFGS_GTOL = 1e-4
#: SQUAREM: factor by which the bound on the extrapolation length grows after a success at the bound
STEP_FACTOR = 4.0


@dataclass
class RefineResult:
    """Outcome of one refinement: loadings, per-feature noise, work done and final objective."""

    W: np.ndarray
    psi: np.ndarray
    n_iter: int
    objective: float
    converged: bool
    monitor_stop: bool = False


class _Pattern:
    """The zero pattern of W by modality block, with the objective and the EM map on a covariance."""

    def __init__(self, S: np.ndarray, mask: np.ndarray, blocks: list[slice]):
        self.S = S
        self.dS = np.diag(S).copy()
        self.mask = mask
        self.blocks = blocks
        self.cols = [np.flatnonzero(mask[b.start]) for b in blocks]
        self.k = mask.shape[1]
        self.floor = 1e-12 * max(float(self.dS.mean()), 1e-300)

    def pack(self, W: np.ndarray, psi_b: np.ndarray) -> np.ndarray:
        return np.concatenate([W[self.mask], np.log(psi_b)])

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nb = len(self.blocks)
        W = np.zeros(self.mask.shape)
        W[self.mask] = theta[:-nb]
        return W, np.exp(theta[-nb:])

    def step(self, W: np.ndarray, psi_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """One EM step from (W, psi_b): the new point and the objective at the old one."""
        p, k = W.shape
        Wt = np.zeros_like(W)
        SWt = np.zeros_like(W)
        for b, J, v in zip(self.blocks, self.cols, psi_b, strict=True):
            Wt[b, J] = W[b][:, J] / v
        for b, J in zip(self.blocks, self.cols, strict=True):
            SWt[:, J] += self.S[:, b] @ Wt[b][:, J]  # the one O(p^2 k) product, on nonzero columns only
        M = np.eye(k) + W.T @ Wt
        chol = np.linalg.cholesky(M)
        chol_inv = np.linalg.inv(chol)
        Minv = chol_inv.T @ chol_inv
        A = Wt.T @ SWt
        d = np.array([b.stop - b.start for b in self.blocks])
        f = 0.5 * (
            float(d @ np.log(psi_b))
            + 2.0 * float(np.sum(np.log(np.diag(chol))))
            + sum(float(self.dS[b].sum()) / v for b, v in zip(self.blocks, psi_b, strict=True))
            - float(np.sum(Minv * A))
        )
        Sxz = SWt @ Minv
        Ezz = Minv + Minv @ A @ Minv
        W_new = np.zeros_like(W)
        psi_new = np.empty(len(self.blocks))
        for i, (b, J) in enumerate(zip(self.blocks, self.cols, strict=True)):
            sxz = Sxz[b][:, J]
            if len(J):
                E = Ezz[np.ix_(J, J)]
                w = np.linalg.solve(E, sxz.T).T
                W_new[b, J] = w
                resid = self.dS[b] - np.sum(sxz * w, axis=1)
            else:
                resid = self.dS[b]
            psi_new[i] = max(float(resid.mean()), self.floor)
        return W_new, psi_new, f


def ml_em(S, W, mask, psi, blocks, max_iter, tol, monitor=None):
    """Maximum likelihood under the zero pattern by SQUAREM-accelerated EM.

    Minimises ``f = 1/2 (log det Sigma + tr(Sigma^{-1} S))`` with ``Sigma = W W^T + Psi`` (the mean negative
    log-likelihood per row without its constant).

    Parameters
    ----------
    S : ndarray (p, p)
        Sample covariance.
    W : ndarray (p, k)
        Starting loadings, zero outside ``mask``.
    mask : ndarray of bool (p, k)
        The structural pattern; rows of one modality block share it.
    psi : ndarray (p,)
        Starting noise variance per feature (its block means are used).
    blocks : list of slice
        The rows of each modality.
    max_iter : int
        Most EM steps (each costs one p x p by p x k product).
    tol : float
        Stop when the relative change of ``f`` between accepted points is at most ``tol`` twice in a row.
    monitor : callable, optional
        Called as ``monitor(W, psi)`` every ``MONITOR_EVERY`` accelerated cycles; a true result stops the
        solver (``converged=False``), e.g. when a component has fallen below the pruning threshold.

    Returns
    -------
    RefineResult
    """
    pat = _Pattern(S, mask, blocks)
    psi_b = np.array([float(np.mean(psi[b])) for b in blocks])
    theta = pat.pack(W * mask, psi_b)
    n_iter, f_prev, converged, cycle, calm, stopped = 0, np.inf, False, 0, False, False
    step_max = 1.0  # SQUAREM's adaptive bound on the extrapolation length (grows x4 while steps succeed)
    while n_iter < max_iter:
        cycle += 1
        if (
            monitor is not None
            and cycle % MONITOR_EVERY == 0
            and monitor(*_full(pat, theta, blocks, S.shape[0]))
        ):
            stopped = True
            break
        W1, p1, f0 = pat.step(*pat.unpack(theta))
        n_iter += 1
        theta1 = pat.pack(W1, p1)
        if max_iter - n_iter < 2:  # no room for an accelerated cycle: a plain step
            f_cur, theta = f0, theta1
        else:
            W2, p2, f1 = pat.step(W1, p1)
            theta2 = pat.pack(W2, p2)
            r = theta1 - theta
            v = theta2 - theta1 - r
            alpha = float(np.clip(np.sqrt(float(r @ r) / max(float(v @ v), 1e-300)), 1.0, step_max))
            theta_x = theta + 2.0 * alpha * r + alpha * alpha * v
            W3, p3, fx = pat.step(*pat.unpack(theta_x))
            n_iter += 2
            if np.isfinite(fx) and fx <= f1:
                f_cur, theta = fx, pat.pack(W3, p3)
                if alpha == step_max:
                    step_max *= STEP_FACTOR
            else:  # the extrapolation lost likelihood: keep the plain EM point, shorten the bound
                f_cur, theta = f1, theta2
                if alpha == step_max:
                    step_max = max(1.0, step_max / STEP_FACTOR)
        small = abs(f_prev - f_cur) <= tol * abs(f_cur)
        if small and calm:  # two small changes in a row: one stalled cycle is not convergence
            converged = True
            break
        calm, f_prev = small, f_cur
    W_out, psi_out = _full(pat, theta, blocks, S.shape[0])
    return RefineResult(W_out, psi_out, n_iter, float(f_cur) if n_iter else float("nan"), converged, stopped)


def ml_lbfgs(S, W, mask, psi, blocks, max_iter, tol) -> RefineResult:
    """Maximum likelihood under the zero pattern: L-BFGS on the masked loadings and log noise levels.

    Minimises ``f = 1/2 (log det Sigma + tr(Sigma^{-1} S))`` with ``Sigma = W W^T + Psi`` (the mean negative
    log-likelihood per row without its constant); each evaluation costs one (p x p)(p x k) product.
    Stops when every entry of the gradient is below ``tol``. It takes over from EM where EM crawls: along
    nearly unidentified directions (many overlapping structures of real data) its curvature model
    moves much further per evaluation than EM's fixed-point steps.
    """
    from scipy.optimize import minimize

    p, k = W.shape
    sel = mask.ravel()
    n_w = int(sel.sum())
    dS = np.diag(S).copy()
    eye_k = np.eye(k)

    def unpack(theta):
        V = np.zeros(p * k)
        V[sel] = theta[:n_w]
        ps = np.empty(p)
        for b, lp in zip(blocks, theta[n_w:], strict=True):
            ps[b] = np.exp(lp)
        return V.reshape(p, k), ps

    def fun(theta):
        V, ps = unpack(theta)
        Wt = V / ps[:, None]
        Mk = eye_k + V.T @ Wt
        L = np.linalg.cholesky(Mk)
        Minv = np.linalg.inv(L.T) @ np.linalg.inv(L)
        P = Wt @ Minv  # Sigma^{-1} W
        SP = S @ P
        tr_QS = float(np.sum(Wt * SP))
        f = 0.5 * (np.sum(np.log(ps)) + 2 * np.sum(np.log(np.diag(L))) + np.sum(dS / ps) - tr_QS)
        Sinv_SP = SP / ps[:, None] - Wt @ (Minv @ (Wt.T @ SP))
        gW = P - Sinv_SP
        K = P.T @ SP
        diag_inv = 1.0 / ps - np.sum(P * Wt, axis=1)
        diag_sss = dS / ps**2 - 2 * np.sum(SP * Wt, axis=1) / ps + np.sum((Wt @ K) * Wt, axis=1)
        gpsi = 0.5 * (diag_inv - diag_sss) * ps
        g = np.concatenate([gW.ravel()[sel], [gpsi[b].sum() for b in blocks]])
        return f, g

    theta0 = np.concatenate([W.ravel()[sel], [np.log(psi[b].mean()) for b in blocks]])
    res = minimize(
        fun,
        theta0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxfun": 2 * max_iter, "ftol": 1e-15, "gtol": tol, "maxcor": 20},
    )
    V, ps = unpack(res.x)
    converged = bool(res.success) or res.nit < max_iter
    return RefineResult(V, ps, int(res.nit), float(res.fun), converged)


def ls_masked(R, W, mask, max_iter, tol):
    """Minimise 1/2 ||V V^T - R||_F^2 over V with V[~mask] = 0 by L-BFGS.

    Stops when the relative decrease of the objective is at most ``tol`` or the projected gradient is
    below ``LS_GTOL``; returns V, iterations, final objective and whether L-BFGS reported success.
    """
    from scipy.optimize import minimize

    p, k = W.shape
    sel = mask.ravel()

    def fun(v):
        V = np.zeros(p * k)
        V[sel] = v
        V = V.reshape(p, k)
        VtV = V.T @ V
        RV = R @ V
        f = 0.5 * (np.sum(VtV * VtV) - 2 * np.sum(V * RV) + np.sum(R * R))
        g = 2 * (V @ VtV - RV)
        return f, g.ravel()[sel]

    res = minimize(
        fun,
        W.ravel()[sel],
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "ftol": max(tol, 1e-15), "gtol": LS_GTOL},
    )
    V = np.zeros(p * k)
    V[sel] = res.x
    return V.reshape(p, k), int(res.nit), float(res.fun), bool(res.success)


def _full(pat, theta, blocks, p):
    """Unpack ``theta`` into loadings and per-feature (not per-block) noise variances."""
    W, psi_b = pat.unpack(theta)
    psi = np.empty(p)
    for b, v in zip(blocks, psi_b, strict=True):
        psi[b] = v
    return W, psi


def refine(mode, S, W, mask, psi, blocks, max_iter, tol, monitor=None) -> RefineResult:
    """Run the refinement ``mode`` (``"ml"``, ``"ls"`` or ``False``) from ``(W, psi)``."""
    if W.shape[1] == 0 or mode is False:
        return RefineResult(W, psi, 0, float("nan"), True)
    if mode == "ml":
        res = ml_em(S, W, mask, psi, blocks, min(max_iter, EM_STEPS), tol, monitor)
        if res.converged or res.monitor_stop or max_iter <= res.n_iter:
            return res
        # EM is crawling along weakly identified directions: L-BFGS polishes from where it stands
        gtol = LBFGS_GTOL_LOOSE if tol >= STAGE1_TOL else LBFGS_GTOL
        out = ml_lbfgs(S, res.W, mask, res.psi, blocks, max_iter - res.n_iter, gtol)
        out.n_iter += res.n_iter
        return out
    V, it, obj, conv = ls_masked(S - np.diag(psi), W, mask, max_iter, tol)
    return RefineResult(V, psi, it, obj, conv)


def _active_blocks(comps, thr, p):
    """Structures whose components beat ``thr`` times the detection limit, and their stacked loadings."""
    active, blocks = {}, {}
    for s, cp in comps.items():
        keep = cp["ell"] / np.sqrt(cp["gamma"]) > thr
        if keep.any():
            active[s] = int(keep.sum())
            full = np.zeros((p, active[s]))
            full[cp["rows"]] = cp["sq"] * (cp["u"][:, keep] * cp["sv"][keep])
            blocks[s] = full
    return active, blocks


def refine_and_prune(mode, S, W, mask, psi, ctx, structure, discover, staged, max_iter, tol):
    """Refine; then drop components below the threshold and refit until the set of components is stable.

    With ML and shrinkage (``staged``), or with discovery, the first refinement runs to a loose tolerance;
    components below the detection edge (which shrinkage would zero anyway and whose flat likelihood
    directions slow the solver) are dropped, and the rest is refined to ``tol``.

    Parameters
    ----------
    mode : {"ml", "ls"} or False
    S : ndarray (p, p)
    W, mask : ndarray (p, k)
        Starting loadings and their structural pattern.
    psi : ndarray (p,)
    ctx : dict
        ``mods``, ``sl`` (modality -> slice), ``n_obs`` (modality -> rows).
    structure : dict of str to int
        Structures of ``W``'s columns, in order.
    discover : bool
        ``ranks="auto"``: components below ``PRUNE_SNR`` times the detection limit are dropped and
        structures left without one disappear.
    staged : bool
    max_iter : int
    tol : float

    Returns
    -------
    structure : dict of str to int
        The structures kept (with ``discover``) or the nominal structure.
    comps : dict
        Per structure, the output of :func:`hcl.linear.peeling.components` (padded with zero components
        up to the nominal rank when not discovering).
    result : RefineResult
        The last refinement, with ``n_iter`` summed over all stages.
    """
    mods, sl, n_obs = ctx["mods"], ctx["sl"], ctx["n_obs"]
    blocks = [sl[m] for m in mods]
    tol1 = max(tol, STAGE1_TOL) if staged else tol
    res = refine(mode, S, W, mask, psi, blocks, max_iter, tol1)
    comps = components(res.W, res.psi, structure, mods, sl, n_obs)
    if not (discover or staged):
        return structure, comps, res
    thr = PRUNE_SNR if discover else 0.0
    p = S.shape[0]
    cur, cur_comps, cur_tol, n_iter = dict(structure), comps, tol1, res.n_iter

    def weak(W_now, psi_now):
        now = components(W_now, psi_now, cur, mods, sl, n_obs)
        return any((cp["ell"] / np.sqrt(cp["gamma"]) <= thr).any() for cp in now.values())

    for _ in range(10):
        active, init = _active_blocks(cur_comps, thr, p)
        if active == cur:
            if cur_tol == tol:
                break
            cur_tol = tol  # the set is stable at the loose tolerance: polish it
        W, mask = assemble(init, active, mods, sl, p)
        cur = active
        res = refine(mode, S, W, mask, res.psi, blocks, max_iter, cur_tol, weak)
        n_iter += res.n_iter
        cur_comps = components(res.W, res.psi, cur, mods, sl, n_obs)
    res.n_iter = n_iter
    if discover:
        return cur, cur_comps, res
    return structure, {s: pad_components(cur_comps.get(s), comps[s], r) for s, r in structure.items()}, res

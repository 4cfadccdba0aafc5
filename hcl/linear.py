"""LinearHCL: the covariance-based hierarchical factor estimator, with structure discovery.

Model (per modality ``m``, structures ``S`` = non-empty sets of modalities)::

    x_m = mu_m + sum_{S containing m} A_{m,S} z_S + eps_m,   z_S ~ N(0, I),   eps_m ~ N(0, sigma_m^2 I)

so the covariance is ``Sigma = W W^T + Psi`` with ``W`` zero in block (m, S) whenever m is not in S.

Fitting works from the sample covariance only (its cost does not grow with ``n`` beyond forming it):

1. **Noise level** of each modality from the median eigenvalue of its covariance block, matched to the
   Marchenko-Pastur median (robust to the few signal eigenvalues).
2. **Peeling**: on the signal covariance ``S - Psi``, structures are estimated from the smallest to the
   largest. For structure S with outside modalities O, the part of the S-block not explained by O is the
   Schur complement ``R_SS - R_SO R_OO^+ R_OS`` (``R_OO^+`` a rank-truncated pseudo-inverse whose
   eigenvalues are replaced by their spiked-model shrunk values, which cancels the finite-sample leak of
   shared signal into the complement); its top
   eigenpairs give ``A_{.,S}``, which is then subtracted. With ``ranks="auto"`` the rank of each step is the
   number of eigenvalues above the random-matrix (Marchenko-Pastur / BBP) edge of noise in ``d_S`` dims.
3. **Refinement**: maximum likelihood under the structural zero pattern, started from the peeling
   estimate and run to a gradient tolerance (L-BFGS on the exact Gaussian likelihood of the masked loadings
   and per-modality noise levels; it reaches the same optimum as EM for factor analysis with the mask, in
   far fewer steps), or (``refine="ls"``) the masked least-squares fit ``1/2 ||V V^T - (S - Psi)||_F^2``.
4. **Shrinkage**: each structure's components are de-biased and shrunk with the spiked-covariance formulas
   (population spike from the sample spike, times the squared cosine of the sample eigenvector). Components
   below the detection limit (squared loading norm below about ``sigma^2 sqrt(d_S / n)``) become zero and
   are flagged in :attr:`LinearHCL.summary`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from hcl._validation import check_X
from hcl.exceptions import ConvergenceWarning, NotFittedError, ValidationError
from hcl.metrics import variance_explained
from hcl.simulate import normalize_ranks
from hcl.structures import all_structures, kind, parse_structure

logger = logging.getLogger(__name__)

__all__ = ["LinearHCL", "mp_median", "spike_shrinkage"]

_MP_CACHE: dict[float, float] = {}
#: with ranks="auto", refined components weaker than this multiple of the detection limit are dropped
_PRUNE_SNR = 2.0
#: summary flags structures with a component weaker than this multiple of the detection limit
_NEAR_SNR = 3.0
#: gradient tolerance of the first refinement stage (before components below the edge are dropped)
_STAGE1_TOL = 1e-2


def mp_median(gamma: float) -> float:
    """Median of the Marchenko-Pastur law with ratio ``gamma = d / n <= 1`` and unit variance."""
    gamma = float(min(max(gamma, 1e-12), 1.0))
    key = round(gamma, 6)
    if key in _MP_CACHE:
        return _MP_CACHE[key]
    lo, hi = (1 - np.sqrt(gamma)) ** 2, (1 + np.sqrt(gamma)) ** 2
    t = np.linspace(0, np.pi, 20001)
    x = (lo + hi) / 2 - (hi - lo) / 2 * np.cos(t)  # Chebyshev-like grid, dense at the edges
    dens = np.sqrt(np.maximum((hi - x) * (x - lo), 0)) / (2 * np.pi * gamma * np.maximum(x, 1e-300))
    dx = np.gradient(x)
    cdf = np.cumsum(dens * dx)
    cdf /= cdf[-1]
    med = float(np.interp(0.5, cdf, x))
    _MP_CACHE[key] = med
    return med


def _noise_from_eigs(eigs: np.ndarray, n: int) -> float:
    """Noise variance from covariance eigenvalues of a d-dim block (Gavish-Donoho median rule)."""
    eigs = np.sort(eigs)
    # A modality whose features span fewer dimensions than it has columns (e.g. embeddings of a few
    # templated sentences) has a null space of exactly zero variance; its median eigenvalue is then 0
    # and every structure with it looks infinitely strong. Read the noise from the spanned part only.
    rank = int(np.sum(eigs > 1e-8 * max(float(eigs[-1]), 1e-300)))
    eigs = eigs[len(eigs) - max(rank, 1) :]
    d = len(eigs)
    if d <= n:
        return float(max(np.median(eigs), 1e-12) / mp_median(d / n))
    # d > n: only n nonzero eigenvalues, which follow MP with ratio n/d scaled by d/n
    nz = eigs[-n:]
    return float(max(np.median(nz), 1e-12) / ((d / n) * mp_median(n / d)))


def spike_shrinkage(ell_hat: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """De-bias and shrink spiked-covariance components.

    Parameters
    ----------
    ell_hat : ndarray (r,)
        Sample spike strengths in noise units (sample eigenvalue / noise - 1).
    gamma : float
        Dimension-to-sample ratio d / n of the space the components live in.

    Returns
    -------
    ell : ndarray (r,)
        Population spike estimates (0 below the detection edge ``(1 + sqrt(gamma))^2``).
    shrunk : ndarray (r,)
        ``ell * cos^2``: the Frobenius-optimal squared norm of the estimated component.
    """
    lam = 1.0 + np.asarray(ell_hat, dtype=float)
    edge = (1 + np.sqrt(gamma)) ** 2
    ell = np.zeros_like(lam)
    shrunk = np.zeros_like(lam)
    ok = lam > edge
    b = lam[ok] - 1 - gamma
    ell[ok] = (b + np.sqrt(np.maximum(b * b - 4 * gamma, 0))) / 2
    e = ell[ok]
    c2 = np.clip((1 - gamma / e**2) / (1 + gamma / e), 0, 1)
    shrunk[ok] = e * c2
    return ell, shrunk


class LinearHCL(TransformerMixin, BaseEstimator):
    """Linear hierarchical contrastive learning: a factor model with one block per modality subset.

    Parameters
    ----------
    ranks : int, dict of str to int, or "auto", default "auto"
        Rank of every structure (int), per structure name (dict; 0 or absent = structure absent), or
        ``"auto"`` to discover the present structures and their ranks from data.
    refine : bool or {"ml", "ls"}, default True
        ``True``/``"ml"``: maximum likelihood under the structural zero pattern (L-BFGS). ``"ls"``: minimise
        ``1/2 ||V V^T - (S - Psi)||_F^2`` over pattern-constrained V. ``False``: peeling estimate only.
    shrink : bool, default True
        Shrink each structure's components with the spiked-covariance formulas (undetectable ones to 0).
    max_iter : int, default 5000
        Most refinement iterations.
    tol : float, default 1e-4
        Stop the refinement when every entry of the objective's gradient (per row, so independent of
        ``n``) is below ``tol`` in absolute value.
    detection_margin : float, default 1.2
        With ``ranks="auto"``, a peeling eigenvalue counts as a component when it exceeds
        ``detection_margin`` times the Marchenko-Pastur noise edge ``sigma^2 (2 sqrt(gamma) + gamma)`` of the
        step (``gamma = d_S / n``). After refinement, components whose de-biased squared loading norm is
        below twice the detection limit ``sigma^2 sqrt(d_S / n)`` are dropped and the model is refitted
        (over-fitted spare components of the refinement measure about 1-1.7 times the limit).
    max_rank : int, default 50
        With ``ranks="auto"``, most components per structure.
    random_state : None, int or Generator
        Unused by the deterministic solver; kept for API symmetry with ``HCL``.

    Attributes
    ----------
    modalities_ : tuple of str
    n_features_ : dict of str to int
    n_samples_ : dict of str to int
        Observed rows per modality at fit time.
    mean_ : dict of str to ndarray (d_m,)
    structure_ : dict of str to int
        Present structures and their ranks.
    loadings_ : dict of (str, str) to ndarray (d_m, r_S)
    noise_variance_ : dict of str to float
        Per-feature noise variance of each modality.
    n_iter_ : int
        Refinement iterations run.
    objective_ : float
        Final refinement objective (``"ml"``: average negative log-likelihood per row, up to a constant;
        ``"ls"``: the least-squares objective).
    ls_objective_ : float
        ``1/2 ||W W^T - (S - Psi)||_F^2`` of the final (shrunk) loadings.
    converged_ : bool
    component_snr_ : dict of str to ndarray
        Estimated squared loading norm of each component divided by ``sigma^2 sqrt(d_S / n)`` (1 = the
        detection limit), before shrinkage removed any.
    summary : pandas.DataFrame
    variance_explained_ : pandas.DataFrame
        Modality x structure fraction of each modality's variance.
    """

    def __init__(
        self,
        ranks="auto",
        refine=True,
        shrink=True,
        max_iter=5000,
        tol=1e-4,
        detection_margin=1.2,
        max_rank=50,
        random_state=None,
    ):
        self.ranks = ranks
        self.refine = refine
        self.shrink = shrink
        self.max_iter = max_iter
        self.tol = tol
        self.detection_margin = detection_margin
        self.max_rank = max_rank
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.refine not in (True, False, "ml", "ls"):
            raise ValidationError(f"refine must be True, False, 'ml' or 'ls', got {self.refine!r}")
        for name in ("max_iter", "max_rank"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValidationError(f"{name} must be a positive int, got {v!r}")
        if not (isinstance(self.tol, (float, int)) and self.tol >= 0):
            raise ValidationError(f"tol must be a float >= 0, got {self.tol!r}")
        if not (isinstance(self.detection_margin, (float, int)) and self.detection_margin > 0):
            raise ValidationError(f"detection_margin must be > 0, got {self.detection_margin!r}")
        if isinstance(self.ranks, str) and self.ranks != "auto":
            raise ValidationError(f"ranks must be an int, a dict or 'auto', got {self.ranks!r}")

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit the model.

        Parameters
        ----------
        X : mapping of str to array-like (n, d_m)
            At least two modalities. A row that is all NaN in a modality means the modality is missing
            for that row (covariances then use pairwise-complete rows).
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        X = check_X(X, allow_nan_rows=True, min_rows=3)
        mods = tuple(X)
        if len(mods) < 2:
            raise ValidationError(f"LinearHCL needs at least 2 modalities, got {list(mods)}")
        dims = {m: X[m].shape[1] for m in mods}
        S, mean, n_obs = _covariance(X)
        offs = np.cumsum([0] + [dims[m] for m in mods])
        sl = {m: slice(offs[i], offs[i + 1]) for i, m in enumerate(mods)}
        n_rows = next(iter(X.values())).shape[0]

        # 1. noise
        psi_m = {}
        for m in mods:
            eig = np.linalg.eigvalsh(S[sl[m], sl[m]])
            psi_m[m] = _noise_from_eigs(eig, n_obs[m])
        structs = all_structures(mods)
        if self.ranks == "auto":
            ranks = None
        else:
            ranks = normalize_ranks(self.ranks, mods)
            for s, r in ranks.items():
                for m in parse_structure(s, mods):
                    if r > dims[m]:
                        raise ValidationError(
                            f"rank {r} of structure {s!r} exceeds the {dims[m]} features of modality {m!r} "
                            f"(shape {n_rows}x{dims[m]}); lower ranks (or max_rank)"
                        )
            total = sum(ranks.values())
            if total >= n_rows:
                raise ValidationError(
                    f"X has {n_rows} rows but the total rank is {total}; pass more rows or lower ranks"
                )

        # 2. peeling (with ranks="auto": candidate ranks at the plain noise edge, pruned after refinement)
        init, disc_info = _peel(S, psi_m, mods, sl, dims, n_obs, ranks, self.detection_margin, self.max_rank)
        if ranks is None:
            structure = {s: init[s].shape[1] for s in structs if s in init and init[s].shape[1] > 0}
        else:
            structure = {s: r for s, r in ranks.items() if r > 0}
        p = int(offs[-1])
        W, mask = _assemble(init, structure, mods, sl, p)
        psi = np.concatenate([np.full(dims[m], psi_m[m]) for m in mods])

        # 3. refinement. With shrinkage (or discovery), ML runs in two stages: to a loose tolerance, then,
        # after dropping components below the detection edge (which shrinkage would zero anyway and whose
        # flat likelihood directions slow the solver), to ``tol``.
        mode = "ml" if self.refine is True else self.refine
        staged = mode == "ml" and (ranks is None or self.shrink)
        tol1 = max(self.tol, _STAGE1_TOL) if staged else self.tol
        W, psi, n_iter, objective, converged = _refine(mode, S, W, mask, psi, mods, sl, self.max_iter, tol1)
        comps = _components(W, psi, structure, mods, sl, n_obs)
        if ranks is None:
            disc_info["candidate_structure"] = dict(structure)
        if ranks is None or staged:
            # drop components below the threshold and refit until the set is stable
            thr = _PRUNE_SNR if ranks is None else 0.0
            cur, cur_comps, cur_tol = dict(structure), comps, tol1
            for _ in range(10):
                active, blocks = {}, {}
                for s, cp in cur_comps.items():
                    keep = cp["ell"] / np.sqrt(cp["gamma"]) > thr
                    if keep.any():
                        active[s] = int(keep.sum())
                        full = np.zeros((p, active[s]))
                        full[cp["rows"]] = cp["sq"] * (cp["u"][:, keep] * cp["sv"][keep])
                        blocks[s] = full
                if active == cur and cur_tol == self.tol:
                    break
                W, mask = _assemble(blocks, active, mods, sl, p)
                W, psi, it2, objective, converged = _refine(
                    mode, S, W, mask, psi, mods, sl, self.max_iter, self.tol
                )
                n_iter += it2
                cur, cur_tol = active, self.tol
                cur_comps = _components(W, psi, cur, mods, sl, n_obs)
            if ranks is None:
                structure, comps = cur, cur_comps
            else:
                comps = {s: _pad_components(cur_comps.get(s), comps[s], r) for s, r in structure.items()}
        if not converged:
            warnings.warn(
                f"LinearHCL refinement stopped at max_iter={self.max_iter} before reaching tol={self.tol}; "
                "raise max_iter",
                ConvergenceWarning,
                stacklevel=2,
            )
        psi_m = {m: float(psi[sl[m]].mean()) for m in mods}

        # 4. shrinkage per structure
        snr: dict[str, np.ndarray] = {}
        kept: dict[str, int] = {}
        loadings: dict[tuple[str, str], np.ndarray] = {}
        new_structure: dict[str, int] = {}
        for s, cp in comps.items():
            snr[s] = cp["ell"] / np.sqrt(cp["gamma"])
            sv_new = np.sqrt(cp["shrunk"]) if self.shrink else cp["sv"]
            kept[s] = int(np.sum(cp["shrunk"] > 0))
            if ranks is None:  # auto: drop components shrunk to zero
                keep = sv_new > 0
                Wn = cp["sq"] * (cp["u"][:, keep] * sv_new[keep])
            else:
                Wn = cp["sq"] * (cp["u"] * sv_new) @ cp["vt"]
            if Wn.shape[1] == 0:
                continue
            new_structure[s] = Wn.shape[1]
            off = 0
            for m in parse_structure(s, mods):
                loadings[(m, s)] = np.ascontiguousarray(Wn[off : off + dims[m]])
                off += dims[m]
        self.modalities_ = mods
        self.n_features_ = dims
        self.n_samples_ = dict(n_obs)
        self.mean_ = mean
        self.structure_ = new_structure
        self.loadings_ = loadings
        self.noise_variance_ = psi_m
        self.n_iter_ = int(n_iter)
        self.objective_ = float(objective)
        self.converged_ = bool(converged)
        self.component_snr_ = snr
        self.discovery_ = disc_info
        Wf = self._W()
        R = S - np.diag(np.concatenate([np.full(dims[m], psi_m[m]) for m in mods]))
        self.ls_objective_ = (
            float(0.5 * np.linalg.norm(Wf @ Wf.T - R) ** 2)
            if Wf.size
            else float(0.5 * np.linalg.norm(R) ** 2)
        )
        self.variance_explained_ = (
            variance_explained(loadings, mods, psi_m, dims)
            if loadings
            else pd.DataFrame(index=pd.Index(list(mods), name="modality"))
        )
        self._build_summary(structure, kept, snr)
        return self

    def _W(self) -> np.ndarray:
        dims = self.n_features_
        mods = self.modalities_
        offs = np.cumsum([0] + [dims[m] for m in mods])
        k = sum(self.structure_.values())
        W = np.zeros((int(offs[-1]), k))
        c = 0
        for s, r in self.structure_.items():
            for i, m in enumerate(mods):
                if (m, s) in self.loadings_:
                    W[offs[i] : offs[i + 1], c : c + r] = self.loadings_[(m, s)]
            c += r
        return W

    def _build_summary(self, fitted_structure, kept, snr):
        rows = []
        ve = self.variance_explained_
        for s, r in fitted_structure.items():
            row = {
                "structure": s,
                "kind": kind(s, self.modalities_),
                "rank": int(self.structure_.get(s, 0)) if self.ranks == "auto" else int(r),
                "rank_detectable": int(kept.get(s, 0)),
            }
            for m in self.modalities_:
                row[f"var_{m}"] = float(ve.loc[m, s]) if s in ve.columns else 0.0
            e = snr.get(s, np.zeros(0))
            row["min_snr"] = float(e.min()) if len(e) else 0.0
            row["near_detection_limit"] = bool(len(e) and (e.min() < _NEAR_SNR or kept.get(s, 0) < r))
            rows.append(row)
        cols = ["structure", "kind", "rank", "rank_detectable"] + [f"var_{m}" for m in self.modalities_]
        cols += ["min_snr", "near_detection_limit"]
        self.summary = pd.DataFrame(rows, columns=cols).set_index("structure")

    # ------------------------------------------------------------------ use
    def _check_fitted(self):
        if not hasattr(self, "loadings_"):
            raise NotFittedError("this LinearHCL is not fitted yet; call fit(X) first")

    def transform(self, X) -> dict[str, np.ndarray]:
        """Posterior-mean latent factors of each structure.

        Parameters
        ----------
        X : mapping of str to array-like (n, d_m)
            The fitted modalities; a row that is all NaN in a modality is treated as missing it, and only
            the modalities a row has are used.

        Returns
        -------
        dict of str to ndarray (n, r_S)
            One block per fitted structure; rows with none of S's modalities get the prior mean 0.
        """
        self._check_fitted()
        X = check_X(X, modalities=self.modalities_, dims=self.n_features_, allow_nan_rows=True)
        mods = self.modalities_
        n = next(iter(X.values())).shape[0]
        W = self._W()
        k = W.shape[1]
        dims = self.n_features_
        offs = np.cumsum([0] + [dims[m] for m in mods])
        psi = np.concatenate([np.full(dims[m], self.noise_variance_[m]) for m in mods])
        obs = np.column_stack([~np.isnan(X[m][:, 0]) for m in mods])
        Z = np.zeros((n, k))
        if k:
            patterns, inv = np.unique(obs, axis=0, return_inverse=True)
            inv = np.asarray(inv).ravel()
            for pi, pat in enumerate(patterns):
                rows = np.where(inv == pi)[0]
                use = [m for m, o in zip(mods, pat, strict=True) if o]
                idx = np.concatenate(
                    [np.arange(offs[i], offs[i + 1]) for i, m in enumerate(mods) if m in use]
                )
                Wo = W[idx]
                Wt = Wo / psi[idx][:, None]
                Mk = np.eye(k) + Wo.T @ Wt
                Xo = np.hstack([X[m][rows] - self.mean_[m] for m in use])
                Z[rows] = np.linalg.solve(Mk, (Xo @ Wt).T).T
        out = {}
        c = 0
        for s, r in self.structure_.items():
            out[s] = Z[:, c : c + r]
            c += r
        return out

    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then transform ``X``."""
        return self.fit(X, y).transform(X)

    def score(self, X, y=None) -> float:
        """Average log-likelihood per row under the fitted Gaussian model (complete rows only)."""
        self._check_fitted()
        X = check_X(X, modalities=self.modalities_, dims=self.n_features_)
        W = self._W()
        mods = self.modalities_
        psi = np.concatenate([np.full(self.n_features_[m], self.noise_variance_[m]) for m in mods])
        Xc = np.hstack([X[m] - self.mean_[m] for m in mods])
        cov = W @ W.T + np.diag(psi)
        sign, logdet = np.linalg.slogdet(cov)
        sol = np.linalg.solve(cov, Xc.T)
        p = Xc.shape[1]
        return float(-0.5 * (p * np.log(2 * np.pi) + logdet + np.mean(np.sum(Xc.T * sol, axis=0))))

    def print_summary(self, decimals: int = 3) -> None:
        """Log and print the per-structure summary table."""
        self._check_fitted()
        text = (
            f"LinearHCL  modalities={list(self.modalities_)}  n={self.n_samples_}  "
            f"noise={ {m: round(v, 4) for m, v in self.noise_variance_.items()} }\n"
            f"refinement: {self.n_iter_} iterations, objective {self.objective_:.6g}, "
            f"converged={self.converged_}\n" + self.summary.round(decimals).to_string()
        )
        logger.info("%s", text)
        print(text)  # noqa: T201 - print_summary is a display method, like lifelines'


# ---------------------------------------------------------------------- internals
def _covariance(X: Mapping[str, np.ndarray]):
    """Sample covariance (pairwise-complete rows when modalities are missing), means and row counts."""
    mods = list(X)
    obs = {m: ~np.isnan(X[m][:, 0]) for m in mods}
    n_obs = {m: int(obs[m].sum()) for m in mods}
    for m in mods:
        if n_obs[m] < 3:
            raise ValidationError(
                f"modality {m!r} (shape {X[m].shape[0]}x{X[m].shape[1]}) is observed in only {n_obs[m]} rows; "
                "at least 3 are needed"
            )
    mean = {m: X[m][obs[m]].mean(axis=0) for m in mods}
    if all(o.all() for o in obs.values()):
        n = next(iter(X.values())).shape[0]
        Xc = np.empty((n, sum(X[m].shape[1] for m in mods)))
        off = 0
        for m in mods:
            d = X[m].shape[1]
            np.subtract(X[m], mean[m], out=Xc[:, off : off + d])
            off += d
        S = Xc.T @ Xc
        S /= n
        return S, mean, n_obs
    dims = [X[m].shape[1] for m in mods]
    offs = np.cumsum([0] + dims)
    S = np.zeros((offs[-1], offs[-1]))
    for i, a in enumerate(mods):
        for j in range(i, len(mods)):
            b = mods[j]
            rows = obs[a] & obs[b]
            nr = int(rows.sum())
            if nr < 2:
                raise ValidationError(
                    f"modalities {a!r} and {b!r} are observed together in only {nr} rows; "
                    "their covariance cannot be estimated"
                )
            blk = (X[a][rows] - mean[a]).T @ (X[b][rows] - mean[b]) / nr
            S[offs[i] : offs[i + 1], offs[j] : offs[j + 1]] = blk
            S[offs[j] : offs[j + 1], offs[i] : offs[i + 1]] = blk.T
    return S, mean, n_obs


def _top_eig(A, k=None, value=None, max_k=None, extra=0):
    """Top eigenpairs of symmetric A, largest first: the top ``k``, or those above ``value`` (+``extra``).

    Uses Lanczos (ARPACK, deterministic start) for a few pairs of a large matrix, LAPACK otherwise.
    """
    d = A.shape[0]
    cap = d if max_k is None else min(d, max_k + extra)
    if value is not None:
        kk = min(cap, 12)
        while True:
            lam, U = _eig_k(A, kk)
            n_above = int(np.sum(lam > value))
            if (n_above < kk and n_above + extra <= kk) or kk >= cap:
                kk = min(n_above + extra, cap, len(lam))
                return lam[:kk], U[:, :kk]
            kk = min(cap, 2 * kk)
    k = min(int(k), d)
    if k <= 0:
        return np.zeros(0), np.zeros((d, 0))
    return _eig_k(A, k)


def _eig_k(A, k):
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


def _assemble(blocks, structure, mods, sl, p):
    """Loading matrix (p, k) from per-structure stacked blocks (p, r_S) and its structural mask."""
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


def _refine(mode, S, W, mask, psi, mods, sl, max_iter, tol):
    if W.shape[1] == 0 or mode is False:
        return W, psi, 0, float("nan"), True
    if mode == "ml":
        return _ml_lbfgs(S, W, mask, psi, mods, sl, max_iter, tol)
    V, it, obj, conv = _ls_masked(S - np.diag(psi), W, mask, max_iter, tol)
    return V, psi, it, obj, conv


def _components(W, psi, structure, mods, sl, n_obs):
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


def _pad_components(cp, cp_first, r):
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


def _edge(gamma: float) -> float:
    """Excess of the Marchenko-Pastur upper edge over 1: (1 + sqrt(g))^2 - 1."""
    return 2 * np.sqrt(gamma) + gamma


def _peel(S, psi_m, mods, sl, dims, n_obs, ranks, margin, max_rank):
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
                thr_o = margin * float(np.mean(psi[orows])) * _edge(len(orows) / n_o)
                lo_k, Uo_k = _top_eig(Roo, value=thr_o, max_k=len(orows))
                k_o = len(lo_k)
            else:
                k_o = sum(
                    r
                    for t, r in ranks.items()
                    if t not in done and set(parse_structure(t, mods)) & set(outside)
                )
                k_o = min(k_o, len(orows))
                if k_o > 0:
                    lo_k, Uo_k = _top_eig(Roo, k=k_o)
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
        thr = margin * sig_s * _edge(len(rows) / n_s)
        if ranks is None:
            lam, U = _top_eig(C, value=thr, max_k=min(max_rank, len(rows)), extra=2)
            r = int(min(np.sum(lam > thr), max_rank, len(rows)))
        else:
            r = int(ranks.get(s, 0))
            lam, U = _top_eig(C, k=min(r + 2, len(rows)))
        info[s] = {"eigenvalues": lam[: max(r + 2, 3)].tolist(), "threshold": thr, "rank": r}
        if r > 0:
            Ws = U[:, :r] * np.sqrt(np.maximum(lam[:r], 0))
            full = np.zeros((p, r))
            full[rows] = Ws
            out[s] = full
            R[np.ix_(rows, rows)] -= Ws @ Ws.T
        done.add(s)
    return out, info


def _ml_lbfgs(S, W, mask, psi, mods, sl, max_iter, tol):
    """Maximum likelihood under the zero pattern: L-BFGS on the masked loadings and log noise levels.

    Minimises ``f = 1/2 (log det Sigma + tr(Sigma^{-1} S))`` with ``Sigma = W W^T + Psi`` (the mean negative
    log-likelihood per row without its constant); each evaluation costs one (p x p)(p x k) product.
    Returns W, psi, iterations, final objective and whether it converged.
    """
    from scipy.optimize import minimize

    p, k = W.shape
    sel = mask.ravel()
    n_w = int(sel.sum())
    dS = np.diag(S).copy()
    blocks = [np.arange(p)[sl[m]] for m in mods]
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
    return V, ps, int(res.nit), float(res.fun), converged


def _ls_masked(R, W, mask, max_iter, tol):
    """Minimise 1/2 ||V V^T - R||_F^2 over V with V[~mask] = 0 by L-BFGS."""
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
        options={"maxiter": max_iter, "ftol": 1e-15, "gtol": tol},
    )
    V = np.zeros(p * k)
    V[sel] = res.x
    return V.reshape(p, k), int(res.nit), float(res.fun), bool(res.success)

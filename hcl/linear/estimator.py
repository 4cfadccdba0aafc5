"""The :class:`LinearHCL` estimator: statistics pass, noise levels, peeling, EM refinement, shrinkage."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions

from hcl._base import HCLEstimator, fit_context
from hcl._validation import check_X
from hcl.exceptions import ConvergenceWarning, ValidationError
from hcl.linear.em import refine_and_prune
from hcl.linear.moments import Moments
from hcl.linear.peeling import assemble, peel
from hcl.linear.stats import noise_from_eigs
from hcl.metrics import variance_explained
from hcl.structures import all_structures, kind, normalize_ranks, parse_structure

logger = logging.getLogger(__name__)

__all__ = ["LinearHCL"]

#: summary flags structures with a component weaker than this multiple of the detection limit
NEAR_SNR = 3.0
#: tol="auto": relative log-likelihood change at which EM stops, with ranks="auto" and with given ranks
TOL_DISCOVER = 1e-9
TOL_GIVEN_RANKS = 1e-7
_SUMMARY_FIXED = ["structure", "kind", "rank", "rank_detectable"]


#: feature count from which the solve after the statistics pass uses the default BLAS threads
_SOLVE_THREADED_FROM = 5_000


class LinearHCL(TransformerMixin, HCLEstimator):
    """Linear hierarchical contrastive learning: a factor model with one block per modality subset.

    The model, per modality ``m`` and structure ``S`` (a non-empty set of modalities), is
    ``x_m = mu_m + sum_{S containing m} A_{m,S} z_S + eps_m`` with ``z_S ~ N(0, I)`` and
    ``eps_m ~ N(0, sigma_m^2 I)``. Fitting uses the means and the covariance only, gathered in one pass
    over the rows (:meth:`partial_fit` takes them chunk by chunk); what follows does not depend on the
    number of rows: noise levels from the Marchenko-Pastur median, the peeling estimate, maximum likelihood
    under the structural zero pattern by closed-form EM, and spiked-covariance shrinkage.

    Parameters
    ----------
    ranks : int, dict of str to int, or "auto", default "auto"
        Rank of every structure (int), per structure name (dict; 0 or absent = structure absent), or
        ``"auto"`` to discover the present structures and their ranks from data.
    refine : bool or {"ml", "ls"}, default True
        ``True``/``"ml"``: maximum likelihood under the structural zero pattern (EM, accelerated by
        SQUAREM). ``"ls"``: minimise ``1/2 ||V V^T - (S - Psi)||_F^2`` over pattern-constrained V (L-BFGS).
        ``False``: peeling estimate only.
    shrink : bool, default True
        Shrink each structure's components with the spiked-covariance formulas (undetectable ones to 0).
    max_iter : int, default 5000
        Most refinement iterations (EM steps; each costs one p x p by p x k product).
    tol : float or "auto", default "auto"
        Stop the refinement when the relative change of its objective between iterations is at most
        ``tol`` (ML: the log-likelihood, twice in a row; ``"ls"``: the least-squares objective, or when
        L-BFGS's projected gradient is below 1e-4). ``"auto"``: 1e-9 with ``ranks="auto"`` (whether a weak
        component stays depends on its converged strength) and 1e-7 with given ranks (the likelihood is
        nearly flat along weak components, and a tighter optimum costs many EM steps for no gain in
        accuracy; measured in ``benchmarks/linear_speed.py``).
    detection_margin : float, default 1.2
        With ``ranks="auto"``, a peeling eigenvalue counts as a component when it exceeds
        ``detection_margin`` times the Marchenko-Pastur noise edge ``sigma^2 (2 sqrt(gamma) + gamma)`` of the
        step (``gamma = d_S / n``). After refinement, components whose de-biased squared loading norm is
        below twice the detection limit ``sigma^2 sqrt(d_S / n)`` are dropped and the model is refitted
        (over-fitted spare components of the refinement measure about 1-1.7 times the limit).
    max_rank : int, default 50
        With ``ranks="auto"``, most components per structure.
    n_threads : int, optional
        If given, BLAS/OpenMP threads used during fit and transform (``threadpoolctl``; restored after).
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
    variance_explained_ : pandas.DataFrame
        Modality x structure fraction of each modality's variance.
    discovery_ : dict
        Per structure, the peeling eigenvalues, threshold and rank (and, with ``ranks="auto"``, the
        candidate structure before pruning).
    moments_ : Moments
        The accumulated statistics (what :meth:`partial_fit` adds to); not saved by :meth:`save`.
    """

    _fitted_attribute = "loadings_"
    _parameter_constraints: dict = {
        "ranks": [Interval(Integral, 0, None, closed="left"), dict, StrOptions({"auto"})],
        "refine": ["boolean", StrOptions({"ml", "ls"})],
        "shrink": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "detection_margin": [Interval(Real, 0, None, closed="neither")],
        "max_rank": [Interval(Integral, 1, None, closed="left")],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        ranks="auto",
        refine=True,
        shrink=True,
        max_iter=5000,
        tol="auto",
        detection_margin=1.2,
        max_rank=50,
        n_threads=None,
        random_state=None,
    ):
        self.ranks = ranks
        self.refine = refine
        self.shrink = shrink
        self.max_iter = max_iter
        self.tol = tol
        self.detection_margin = detection_margin
        self.max_rank = max_rank
        self.n_threads = n_threads
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _tol(self, discover: bool) -> float:
        if self.tol == "auto":
            return TOL_DISCOVER if discover else TOL_GIVEN_RANKS
        return float(self.tol)

    def _threads(self):
        if self.n_threads is None:
            return nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=int(self.n_threads))

    # ------------------------------------------------------------------ fit
    @fit_context
    def fit(self, X, y=None):
        """Fit the model in one pass over the rows.

        Parameters
        ----------
        X : mapping of str to array-like (n, d_m), or iterable of such mappings
            At least two modalities, or an iterable of row chunks of them (read once, in order). A row that
            is all NaN in a modality means the modality is missing for that row (covariances then use
            pairwise-complete rows).
        y : None
            Ignored.

        Returns
        -------
        self
        """
        with self._threads():
            chunks = [X] if isinstance(X, Mapping) else X
            if not isinstance(chunks, Iterable):
                check_X(X)  # raises its "must be a mapping" error
            moments = None
            for chunk in chunks:
                moments = self._accumulate(moments, chunk)
            if moments is None:
                raise ValidationError("fit got an empty iterable of chunks; pass at least one mapping")
            return self._solve(moments, stacklevel=4)

    def partial_fit(self, X, y=None):
        """Add a chunk of rows to the statistics and refit from all rows seen so far.

        The result after the last chunk equals ``fit`` on all the rows (up to rounding). Each call solves
        the model again (a cost that does not depend on the rows); to fit from many chunks at once, pass
        an iterable of chunks to :meth:`fit`.

        Parameters
        ----------
        X : mapping of str to array-like (n_chunk, d_m)
            The same modalities and features as the first chunk.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        first = not hasattr(self, "moments_")
        if first and hasattr(self, "loadings_"):
            raise ValidationError(
                "this LinearHCL was loaded without its statistics; partial_fit cannot add rows to it. "
                "Fit a new one on all rows"
            )
        self._validate_params()
        with self._threads():
            return self._solve(self._accumulate(getattr(self, "moments_", None), X), stacklevel=3)

    def _accumulate(self, moments: Moments | None, chunk) -> Moments:
        """Validate one chunk and add it to ``moments`` (created from the chunk's modalities if None)."""
        if moments is None:
            X = check_X(chunk, allow_nan_rows=True)
            if len(X) < 2:
                raise ValidationError(f"LinearHCL needs at least 2 modalities, got {list(X)}")
            moments = Moments(tuple(X), {m: x.shape[1] for m, x in X.items()})
        else:
            X = check_X(chunk, modalities=moments.modalities, dims=moments.dims, allow_nan_rows=True)
        moments.update(X)
        return moments

    def _resolve_ranks(self, mods, dims, n_rows):
        """``None`` with ``ranks="auto"``, else ``{structure: rank}`` after checking it fits the data."""
        if isinstance(self.ranks, str):
            return None
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
        return ranks

    def _solve(self, moments: Moments, stacklevel: int):
        """Everything after the statistics pass: noise, peeling, refinement, shrinkage, summaries."""
        with self._solve_threads(moments.p):
            return self._solve_unlimited(moments, stacklevel + 1)

    def _solve_threads(self, p: int):
        """BLAS threads for the solve: one by default below ``_SOLVE_THREADED_FROM`` features.

        Its products are p x k with k the total rank, too small for threads to pay: at 1,400 features the
        solve took 0.49-0.55 s on one thread against 0.91-1.02 s on two (benchmarks/linear_speed.py design).
        An explicit ``n_threads`` is honoured as given.
        """
        if self.n_threads is not None or p >= _SOLVE_THREADED_FROM:
            return nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1)

    def _solve_unlimited(self, moments: Moments, stacklevel: int):
        if moments.n_rows < 3:
            raise ValidationError(f"X has {moments.n_rows} rows; at least 3 are needed")
        S, mean, n_obs = moments.finalize()
        mods, dims, sl = moments.modalities, moments.dims, moments.slices
        psi_m = {m: noise_from_eigs(np.linalg.eigvalsh(S[sl[m], sl[m]]), n_obs[m]) for m in mods}
        ranks = self._resolve_ranks(mods, dims, moments.n_rows)
        # peeling (with ranks="auto": candidate ranks at the plain noise edge, pruned after refinement)
        init, disc_info = peel(S, psi_m, mods, sl, dims, n_obs, ranks, self.detection_margin, self.max_rank)
        if ranks is None:
            structure = {
                s: init[s].shape[1] for s in all_structures(mods) if s in init and init[s].shape[1] > 0
            }
            disc_info["candidate_structure"] = dict(structure)
        else:
            structure = {s: r for s, r in ranks.items() if r > 0}
        W, mask = assemble(init, structure, mods, sl, moments.p)
        psi = np.concatenate([np.full(dims[m], psi_m[m]) for m in mods])
        mode = "ml" if self.refine is True else self.refine
        structure_out, comps, res = refine_and_prune(
            mode,
            S,
            W,
            mask,
            psi,
            {"mods": mods, "sl": sl, "n_obs": n_obs},
            structure,
            discover=ranks is None,
            staged=mode == "ml" and (ranks is None or bool(self.shrink)),
            max_iter=self.max_iter,
            tol=self._tol(ranks is None),
        )
        if not res.converged:
            warnings.warn(
                f"LinearHCL refinement stopped at max_iter={self.max_iter} before reaching tol={self._tol(ranks is None):g}; "
                "raise max_iter",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )
        self.moments_ = moments
        self.modalities_ = mods
        self.n_features_ = dict(dims)
        self.n_samples_ = dict(n_obs)
        self.mean_ = mean
        self.noise_variance_ = {m: float(res.psi[sl[m]].mean()) for m in mods}
        self.n_iter_ = int(res.n_iter)
        self.objective_ = float(res.objective)
        self.converged_ = bool(res.converged)
        self.discovery_ = disc_info
        self._set_loadings(comps, structure_out if ranks is None else structure, discover=ranks is None)
        self._set_fit_summaries(S)
        return self

    def _set_loadings(self, comps, fitted_structure, discover):
        """Shrink each structure's components and store loadings, structure, SNRs and summary rows."""
        mods, dims = self.modalities_, self.n_features_
        snr, kept, loadings, structure = {}, {}, {}, {}
        for s, cp in comps.items():
            snr[s] = cp["ell"] / np.sqrt(cp["gamma"])
            sv_new = np.sqrt(cp["shrunk"]) if self.shrink else cp["sv"]
            kept[s] = int(np.sum(cp["shrunk"] > 0))
            if discover:  # drop components shrunk to zero
                keep = sv_new > 0
                Wn = cp["sq"] * (cp["u"][:, keep] * sv_new[keep])
            else:
                Wn = cp["sq"] * (cp["u"] * sv_new) @ cp["vt"]
            if Wn.shape[1] == 0:
                continue
            structure[s] = Wn.shape[1]
            off = 0
            for m in parse_structure(s, mods):
                loadings[(m, s)] = np.ascontiguousarray(Wn[off : off + dims[m]])
                off += dims[m]
        self.structure_ = structure
        self.loadings_ = loadings
        self.component_snr_ = snr
        self._fitted_structure = {s: int(r) for s, r in fitted_structure.items()}
        self._kept = {s: int(kept.get(s, 0)) for s in fitted_structure}

    def _set_fit_summaries(self, S):
        """``ls_objective_`` and ``variance_explained_`` of the final loadings."""
        mods, dims = self.modalities_, self.n_features_
        Wf = self._W()
        R = S - np.diag(np.concatenate([np.full(dims[m], self.noise_variance_[m]) for m in mods]))
        self.ls_objective_ = (
            float(0.5 * np.linalg.norm(Wf @ Wf.T - R) ** 2)
            if Wf.size
            else float(0.5 * np.linalg.norm(R) ** 2)
        )
        self.variance_explained_ = (
            variance_explained(self.loadings_, mods, self.noise_variance_, dims)
            if self.loadings_
            else pd.DataFrame(index=pd.Index(list(mods), name="modality"))
        )

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

    @property
    def summary(self) -> pd.DataFrame:
        """One row per fitted structure: kind, rank, detectable rank, variance explained, weakest SNR.

        Returns
        -------
        pandas.DataFrame
            One row per structure (column ``structure``, as on every hcl estimator); ``near_detection_limit`` flags structures with a component weaker than
            three times the detection limit or shrunk to zero.
        """
        self._check_fitted()
        rows = []
        ve = self.variance_explained_
        auto = isinstance(self.ranks, str)
        for s, r in self._fitted_structure.items():
            rank = int(self.structure_.get(s, 0)) if auto else r
            row = {
                "structure": s,
                "kind": kind(s, self.modalities_),
                "rank": rank,
                "rank_detectable": self._kept[s],
            }
            for m in self.modalities_:
                row[f"var_{m}"] = float(ve.loc[m, s]) if s in ve.columns else 0.0
            e = self.component_snr_.get(s, np.zeros(0))
            row["min_snr"] = float(e.min()) if len(e) else 0.0
            row["near_detection_limit"] = bool(len(e) and (e.min() < NEAR_SNR or self._kept[s] < r))
            rows.append(row)
        cols = _SUMMARY_FIXED + [f"var_{m}" for m in self.modalities_] + ["min_snr", "near_detection_limit"]
        return pd.DataFrame(rows, columns=cols)

    # ------------------------------------------------------------------ use
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
        with self._threads():
            return self._posterior_means(X)

    def _posterior_means(self, X):
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
            f"converged={self.converged_}\n" + self.summary.set_index("structure").round(decimals).to_string()
        )
        logger.info("%s", text)
        print(text)  # noqa: T201 - print_summary is a display method, like lifelines'

    # ---------------------------------------------------------------------- internals

    # ------------------------------------------------------------------ persistence
    def _get_state(self):
        """JSON-able learned attributes and the learned arrays, for :meth:`save`."""
        state = {
            "modalities": list(self.modalities_),
            "n_features": self.n_features_,
            "n_samples": self.n_samples_,
            "structure": [[s, r] for s, r in self.structure_.items()],
            "noise_variance": self.noise_variance_,
            "n_iter": self.n_iter_,
            "objective": self.objective_,
            "ls_objective": self.ls_objective_,
            "converged": self.converged_,
            "discovery": self.discovery_,
            "fitted_structure": [[s, r] for s, r in self._fitted_structure.items()],
            "kept": self._kept,
            "variance_explained": self.variance_explained_.to_dict(orient="split"),
        }
        arrays = {f"mean/{m}": v for m, v in self.mean_.items()}
        arrays.update({f"loadings/{m}/{s}": v for (m, s), v in self.loadings_.items()})
        arrays.update({f"component_snr/{s}": v for s, v in self.component_snr_.items()})
        return state, arrays

    def _set_state(self, state, arrays):
        """Restore what :meth:`_get_state` saved."""
        self.modalities_ = tuple(state["modalities"])
        self.n_features_ = {m: int(state["n_features"][m]) for m in self.modalities_}
        self.n_samples_ = {m: int(state["n_samples"][m]) for m in self.modalities_}
        self.structure_ = {s: int(r) for s, r in state["structure"]}
        self.noise_variance_ = {m: float(state["noise_variance"][m]) for m in self.modalities_}
        self.n_iter_ = int(state["n_iter"])
        self.objective_ = float(state["objective"])
        self.ls_objective_ = float(state["ls_objective"])
        self.converged_ = bool(state["converged"])
        self.discovery_ = state["discovery"]
        self._fitted_structure = {s: int(r) for s, r in state["fitted_structure"]}
        self._kept = {s: int(v) for s, v in state["kept"].items()}
        ve = state["variance_explained"]
        self.variance_explained_ = pd.DataFrame(
            ve["data"], index=pd.Index(ve["index"], name="modality"), columns=ve["columns"]
        )
        self.mean_ = {m: arrays[f"mean/{m}"] for m in self.modalities_}
        self.loadings_ = {}
        for key, v in arrays.items():
            if key.startswith("loadings/"):
                _, m, s = key.split("/", 2)
                self.loadings_[(m, s)] = v
        self.component_snr_ = {
            k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("component_snr/")
        }

"""Block models of :class:`hcl.deep.HCL`, fitted after training on the final network's heads.

- **Fusion** (``fusion="factor"``): per kept shared structure, a factor-analysis model of its member
  heads; a block is the posterior mean of the factors given the heads a row has, so a modality whose
  head is a noisier view of the shared factors gets less weight. Without one, the heads are averaged.
- **Private residuals** (``private="residual"``): per kept private structure, the principal axes of
  what its modality carries beyond an intercept and its kept shared blocks.

numpy and scikit-learn only; the heads arrive as numpy arrays (the inputs ``xs`` as tensors, converted
here).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from hcl.exceptions import ConvergenceWarning
from hcl.structures import parse_structure

__all__ = ["BlockModels", "factor_analysis"]

logger = logging.getLogger(__name__)


@dataclass
class BlockModels:
    """The fusion and private-residual models of one fitted HCL, and the blocks they give.

    Parameters
    ----------
    modalities : list of str
        Fitted modality order.
    candidates : dict of str to int
        Trained structures and their dimensions.
    structure : dict of str to int
        Kept structures.
    fusion : dict of str to dict, optional
        Per shared structure: ``mean``, ``loadings`` (summed member dims x dim), ``noise``.
    private : dict of str to dict, optional
        Per private structure: ``coef``, ``center``, ``components``.
    """

    modalities: list[str]
    candidates: dict[str, int]
    structure: dict[str, int]
    fusion: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    private: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def fit_fusion(self, heads, observed: np.ndarray, max_iter: int) -> None:
        """Per kept shared structure, a factor model of its member heads (on the rows that have them all).

        The model is :func:`factor_analysis`, i.e. scikit-learn's ``FactorAnalysis(svd_method="lapack")``.

        Parameters
        ----------
        heads : dict of str to dict of str to ndarray (n, dim_S)
            Raw head outputs, per modality and structure.
        observed : ndarray (M, n) bool
        max_iter : int
            EM iterations of the factor model.
        """
        self.fusion = {}
        mods = self.modalities
        for s, dim in self.structure.items():
            members = parse_structure(s, mods)
            if len(members) < 2:
                continue
            rows = observed[[mods.index(m) for m in members]].all(axis=0)
            H = np.hstack([heads[m][s][rows] for m in members])
            if rows.sum() < max(50, 2 * H.shape[1]):
                logger.info("HCL fusion: %s has %d complete rows; its heads are averaged", s, rows.sum())
                continue
            # sklearn's 1000 EM iterations fell short on a demo's codes+notes (it needed 1056, 0.7 s)
            fa = factor_analysis(H, dim, max_iter)
            if fa["n_iter"] >= max_iter:
                warnings.warn(
                    f"HCL fusion: the factor model of {s} did not converge in {max_iter} EM "
                    "iterations; its block is the last iterate",
                    ConvergenceWarning,
                    stacklevel=4,
                )
            self.fusion[s] = {
                "mean": fa["mean"],
                "loadings": fa["loadings"],  # (sum of member dims, dim)
                "noise": np.maximum(fa["noise"], 1e-6 * float(np.var(H, axis=0).mean()) + 1e-12),
            }

    def shared_blocks(self, heads, observed: np.ndarray) -> dict[str, np.ndarray]:
        """Every kept shared structure's block, combined from its member heads.

        Parameters
        ----------
        heads : dict of str to dict of str to ndarray
        observed : ndarray (M, n) bool

        Returns
        -------
        dict of str to ndarray (n, dim_S)
        """
        out = {}
        for s in self.structure:
            members = parse_structure(s, self.modalities)
            if len(members) >= 2:
                out[s] = self.combine(s, members, heads, observed)
        return out

    def _shared_design(self, m: str, shared, n_rows: int) -> np.ndarray:
        """Intercept + the kept shared blocks of modality ``m``."""
        cols = [b for s, b in shared.items() if m in parse_structure(s, self.modalities)]
        return np.hstack([np.ones((n_rows, 1)), *cols])

    def fit_private(self, xs, heads, observed: np.ndarray) -> None:
        """Per kept private structure, the principal axes of its modality's residual.

        Parameters
        ----------
        xs : list of torch.Tensor (n, d_m)
            Standardised inputs.
        heads : dict of str to dict of str to ndarray
        observed : ndarray (M, n) bool
        """
        self.private = {}
        shared = self.shared_blocks(heads, observed)
        mods = self.modalities
        for s, dim in self.structure.items():
            members = parse_structure(s, mods)
            if len(members) != 1:
                continue
            i = mods.index(members[0])
            rows = observed[i]
            x = xs[i].cpu().numpy().astype(np.float64)
            design = self._shared_design(members[0], shared, len(x))
            coef, *_ = np.linalg.lstsq(design[rows], x[rows], rcond=None)
            resid = x[rows] - design[rows] @ coef
            center = resid.mean(axis=0)
            _u, _sv, vt = np.linalg.svd(resid - center, full_matrices=False)
            k = min(dim, vt.shape[0])
            components = np.zeros((x.shape[1], dim))  # a block keeps its dimension even if rank-short
            components[:, :k] = vt[:k].T
            self.private[s] = {"coef": coef, "center": center, "components": components}

    def residual_block(self, s: str, m: str, xs, shared, observed: np.ndarray) -> np.ndarray:
        """Private block ``s`` of modality ``m``: its residual's scores on the fitted principal axes.

        Parameters
        ----------
        s, m : str
            The private structure and its modality.
        xs : list of torch.Tensor (n, d_m)
        shared : dict of str to ndarray
            The kept shared blocks (:meth:`shared_blocks`).
        observed : ndarray (M, n) bool

        Returns
        -------
        ndarray (n, dim_S)
            Zeros where ``m`` is missing.
        """
        params = self.private[s]
        i = self.modalities.index(m)
        x = xs[i].cpu().numpy().astype(np.float64)
        resid = x - self._shared_design(m, shared, len(x)) @ params["coef"]
        return ((resid - params["center"]) @ params["components"]) * observed[i][:, None]

    def combine(self, s: str, members, heads, observed: np.ndarray) -> np.ndarray:
        """Block ``s`` from the member heads: the factor model's posterior mean, or the mean of the heads.

        Parameters
        ----------
        s : str
        members : sequence of str
        heads : dict of str to dict of str to ndarray
        observed : ndarray (M, n) bool

        Returns
        -------
        ndarray (n, dim_S)
            Zeros for rows with no member observed.
        """
        if s in self.fusion:
            return self._fuse(s, members, heads, observed)
        acc = np.zeros((observed.shape[1], self.candidates[s]))
        cnt = np.zeros((observed.shape[1], 1))
        for m in members:
            w = observed[self.modalities.index(m)].astype(np.float64)[:, None]
            acc += heads[m][s] * w
            cnt += w
        return acc / np.maximum(cnt, 1.0)

    def _fuse(self, s, members, heads, observed) -> np.ndarray:
        """Posterior mean of structure ``s``'s factors given the member heads each row has."""
        params = self.fusion[s]
        dim = params["loadings"].shape[1]
        widths = [heads[m][s].shape[1] for m in members]
        offs = np.cumsum([0] + widths)
        H = np.hstack([heads[m][s] for m in members])
        obs = np.stack([observed[self.modalities.index(m)] for m in members])  # (k, n)
        out = np.zeros((H.shape[0], dim))
        codes = (obs.astype(np.int64) * (2 ** np.arange(len(members)))[:, None]).sum(0)
        for code in np.unique(codes):
            if code == 0:
                continue
            cols = np.concatenate(
                [np.arange(offs[i], offs[i + 1]) for i in range(len(members)) if code >> i & 1]
            )
            W = params["loadings"][cols]
            inv_psi = 1.0 / params["noise"][cols]
            precision = np.eye(dim) + (W.T * inv_psi) @ W
            gain = np.linalg.solve(precision, W.T * inv_psi)  # (dim, |cols|)
            rows = codes == code
            out[rows] = (H[np.ix_(rows, cols)] - params["mean"][cols]) @ gain.T
        return out

    def blocks(self, names, xs, heads, observed: np.ndarray) -> dict[str, np.ndarray]:
        """Return the blocks ``names``: private residuals, fused shared blocks, or combined heads.

        Parameters
        ----------
        names : list of str
            Trained structures to return.
        xs : list of torch.Tensor (n, d_m)
        heads : dict of str to dict of str to ndarray
        observed : ndarray (M, n) bool

        Returns
        -------
        dict of str to ndarray (n, dim_S)
        """
        # each kept shared block once: private residuals need those of their modality too
        shared = self.shared_blocks(heads, observed)
        out = {}
        for s in names:
            members = parse_structure(s, self.modalities)
            if s in self.private:
                out[s] = self.residual_block(s, members[0], xs, shared, observed)
            elif s in shared:
                out[s] = shared[s]
            else:
                out[s] = self.combine(s, members, heads, observed)
        return out


_SMALL = 1e-12  # scikit-learn's FactorAnalysis floor on the noise variances


def factor_analysis(X: np.ndarray, n_components: int, max_iter: int, tol: float = 1e-2) -> dict:
    """Maximum-likelihood factor analysis by scikit-learn's EM, run on the sample covariance.

    Gives the model of ``sklearn.decomposition.FactorAnalysis(n_components, tol=tol,
    svd_method="lapack", max_iter=max_iter)`` (same iterations, same stopping rule, same signs) up to
    rounding. Each EM step of scikit-learn needs only the leading eigenpairs of the scaled covariance
    ``diag(psi)^-1/2 S diag(psi)^-1/2``, which it takes from an SVD of the (n, p) data; here they come from
    an eigendecomposition of the (p, p) matrix, so a step costs O(p^3) instead of O(n p^2). The last step
    is redone with scikit-learn's SVD of the data so the loadings have its signs.

    Parameters
    ----------
    X : ndarray (n, p)
    n_components : int
    max_iter : int
        EM iterations at most.
    tol : float, default 1e-2
        Stop when the log-likelihood gains less than this.

    Returns
    -------
    dict
        ``mean`` (p,), ``loadings`` (p, n_components), ``noise`` (p,) and ``n_iter``.
    """
    from scipy import linalg

    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    k = int(n_components)
    mean = X.mean(axis=0)
    Xc = X - mean
    var = np.var(Xc, axis=0)
    cov = Xc.T @ Xc / n
    llconst = p * np.log(2.0 * np.pi) + k
    psi = np.ones(p)
    old_ll = -np.inf
    n_iter = 0
    for n_iter in range(1, int(max_iter) + 1):  # noqa: B007 (the count is returned)
        sqrt_psi = np.sqrt(psi) + _SMALL
        evals, evecs = np.linalg.eigh(cov / np.outer(sqrt_psi, sqrt_psi))
        evals = np.maximum(evals[::-1], 0.0)  # descending: the squared singular values of the scaled data
        W = np.sqrt(np.maximum(evals[:k] - 1.0, 0.0))[:, None] * evecs[:, ::-1][:, :k].T * sqrt_psi
        ll = llconst + np.sum(np.log(evals[:k])) + evals[k:].sum() + np.sum(np.log(psi))
        ll *= -n / 2.0
        if ll - old_ll < tol:
            break
        old_ll = ll
        psi = np.maximum(var - np.sum(W**2, axis=0), _SMALL)
    # the last step's loadings again, from scikit-learn's SVD of the data (its signs)
    _u, sv, vt = linalg.svd(Xc / (sqrt_psi * np.sqrt(n)), full_matrices=False, check_finite=False)
    W = np.sqrt(np.maximum(sv[:k] ** 2 - 1.0, 0.0))[:, None] * vt[:k] * sqrt_psi
    return {"mean": mean, "loadings": W.T.copy(), "noise": psi, "n_iter": n_iter}

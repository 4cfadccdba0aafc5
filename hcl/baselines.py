"""Comparison methods with the :class:`hcl.deep.HCL` API: ``fit(X)`` and ``transform(X) -> dict``.

* :class:`Concat` -- standardised concatenation, one block ``"concat"``.
* :class:`PCA` -- principal components of the standardised concatenation, one block ``"pca"``.
* :class:`CLIP` -- InfoNCE over every modality pair, one shared block (named like the global structure),
  on the same backbone and training loop as :class:`~hcl.deep.HCL` (a preset of it, defined in
  :mod:`hcl.deep.presets` and re-exported here).
* :class:`SharedPrivate` -- deep HCL restricted to the global and the private structures (the binary
  shared/private view that HCL argues against; also a preset).
* :class:`JIVE` -- linear joint (global) + individual (private) structure by iterated SVDs.

Missing modalities are rows of NaN: the linear methods impute zeros after standardisation (the mean),
the deep ones average the available encoders.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.utils._param_validation import Interval

from hcl._base import HCLEstimator, fit_context
from hcl._validation import check_X, is_int
from hcl.deep import CLIP, SharedPrivate
from hcl.exceptions import ConvergenceWarning, ValidationError
from hcl.preprocessing import column_scale
from hcl.structures import all_structures, kind

__all__ = ["CLIP", "JIVE", "PCA", "Concat", "SharedPrivate"]


class _Standardised(TransformerMixin, HCLEstimator):
    """Per-modality standardisation on observed rows; missing rows become zeros."""

    _fitted_attribute = "structure_"

    def _fit_scaler(self, X: dict[str, np.ndarray]) -> None:
        self.modalities_ = list(X)
        self.dims_ = {m: int(a.shape[1]) for m, a in X.items()}
        self.mean_, self.scale_ = {}, {}
        for m, a in X.items():
            obs = a[~np.isnan(a[:, 0])]
            if obs.shape[0] < 2:
                raise ValidationError(f"modality {m!r} is observed in {obs.shape[0]} rows; need at least 2")
            self.mean_[m], self.scale_[m] = column_scale(obs)

    def _standardise(self, X: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for m in self.modalities_:
            z = (X[m] - self.mean_[m]) / self.scale_[m]
            out[m] = np.nan_to_num(z, nan=0.0)
        return out

    @fit_context
    def fit(self, X, y=None):
        """Fit on ``X``.

        Parameters
        ----------
        X : mapping of str to array (n, d_m)
            One array per modality; a row of NaN means the modality is missing there.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        self._fit(check_X(X, allow_nan_rows=True, min_rows=2))
        return self

    def _check_transform(self, X) -> dict[str, np.ndarray]:
        self._check_fitted()
        return check_X(X, modalities=self.modalities_, dims=self.dims_, allow_nan_rows=True)

    @property
    def summary(self):
        """pandas.DataFrame: one row per structure block, with ``structure``, ``kind`` and ``dim``."""
        self._check_fitted()
        import pandas as pd

        rows = [{"structure": s, "kind": self._kind(s), "dim": int(d)} for s, d in self.structure_.items()]
        return pd.DataFrame(rows, columns=["structure", "kind", "dim"])

    def _kind(self, s: str) -> str:
        return kind(s, self.modalities_)

    def _get_state(self):
        state = {"modalities": self.modalities_, "dims": self.dims_, "structure": self.structure_}
        arrays = {}
        for m in self.modalities_:
            arrays[f"mean.{m}"], arrays[f"scale.{m}"] = self.mean_[m], self.scale_[m]
        return state, arrays

    def _set_state(self, state, arrays) -> None:
        self.modalities_ = list(state["modalities"])
        self.dims_ = {m: int(d) for m, d in state["dims"].items()}
        self.structure_ = {s: int(d) for s, d in state["structure"].items()}
        self.mean_ = {m: arrays[f"mean.{m}"] for m in self.modalities_}
        self.scale_ = {m: arrays[f"scale.{m}"] for m in self.modalities_}


class Concat(_Standardised):
    """Standardised concatenation of all modalities: one block ``"concat"`` (n, sum d_m).

    Each column is centred and scaled on the rows where its modality is observed; a missing modality
    contributes zeros (its mean).
    """

    _parameter_constraints: dict = {}

    def __init__(self):
        pass

    def _kind(self, s: str) -> str:
        return "concatenation"

    def _fit(self, X) -> None:
        """Learn the per-column means and scales."""
        self._fit_scaler(X)
        self.structure_ = {"concat": int(sum(self.dims_.values()))}

    def transform(self, X) -> dict[str, np.ndarray]:
        """Return ``{"concat": array (n, sum d_m)}``, the standardised modalities of ``X`` side by side."""
        X = self._check_transform(X)
        Z = self._standardise(X)
        return {"concat": np.concatenate([Z[m] for m in self.modalities_], axis=1)}


class PCA(_Standardised):
    """Principal components of the standardised concatenation: one block ``"pca"`` (n, n_components).

    Parameters
    ----------
    n_components : int, default 16
        Number of components; at most the number of concatenated features.

    Attributes
    ----------
    components_ : ndarray (n_components, sum d_m)
    explained_variance_ : ndarray (n_components,)
    structure_ : dict
        ``{"pca": n_components}``.
    """

    _parameter_constraints: dict = {"n_components": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, n_components=16):
        self.n_components = n_components

    def _kind(self, s: str) -> str:
        return "pca"

    def _fit(self, X) -> None:
        """Fit the components on the standardised concatenation."""
        self._fit_scaler(X)
        Z = np.concatenate([self._standardise(X)[m] for m in self.modalities_], axis=1)
        if self.n_components > Z.shape[1]:
            raise ValidationError(
                f"PCA: n_components={self.n_components!r} exceeds the {Z.shape[1]} features of the concatenated "
                f"modalities {list(self.modalities_)}; lower n_components"
            )
        k = min(int(self.n_components), *Z.shape)
        self.center_ = Z.mean(axis=0)
        _u, s, vt = np.linalg.svd(Z - self.center_, full_matrices=False)
        self.components_ = vt[:k]
        self.explained_variance_ = s[:k] ** 2 / max(Z.shape[0] - 1, 1)
        self.structure_ = {"pca": k}

    def transform(self, X) -> dict[str, np.ndarray]:
        """Return ``{"pca": array (n, n_components)}``, the scores of ``X`` on the fitted components."""
        X = self._check_transform(X)
        Z = np.concatenate([self._standardise(X)[m] for m in self.modalities_], axis=1)
        return {"pca": (Z - self.center_) @ self.components_.T}

    @property
    def summary(self):
        """pandas.DataFrame: one row, ``pca``, with ``structure``, ``kind``, ``dim``, ``explained_variance``."""
        frame = super().summary
        frame["explained_variance"] = float(self.explained_variance_.sum())
        return frame

    def _get_state(self):
        state, arrays = super()._get_state()
        arrays.update(
            center=self.center_, components=self.components_, explained_variance=self.explained_variance_
        )
        return state, arrays

    def _set_state(self, state, arrays) -> None:
        super()._set_state(state, arrays)
        self.center_ = arrays["center"]
        self.components_ = arrays["components"]
        self.explained_variance_ = arrays["explained_variance"]


class JIVE(_Standardised):
    """Joint and Individual Variation Explained: linear global + private blocks by iterated SVDs.

    Each standardised modality is scaled to unit Frobenius norm. Alternately: the joint part is the
    rank-``joint_rank`` SVD of the concatenation minus the individual parts; each individual part is the
    rank-``individual_rank`` SVD of its modality minus the joint part, after projecting out the joint
    scores (so joint and individual scores are orthogonal). Missing rows are imputed with zeros.

    Parameters
    ----------
    joint_rank : int, default 4
        Rank of the joint (global) part.
    individual_rank : int or dict of str to int, default 4
        Rank of each modality's individual part (0: none).
    max_iter : int, default 100
        Most alternations.
    tol : float, default 1e-6
        Relative change of the fitted signal at which the iteration stops.

    Attributes
    ----------
    structure_ : dict of str to int
        The global structure and each modality's private structure with their ranks.
    n_iter_ : int
    """

    _parameter_constraints: dict = {
        "joint_rank": [Interval(Integral, 1, None, closed="left")],
        "individual_rank": [Interval(Integral, 0, None, closed="left"), dict],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, joint_rank=4, individual_rank=4, max_iter=100, tol=1e-6):
        self.joint_rank = joint_rank
        self.individual_rank = individual_rank
        self.max_iter = max_iter
        self.tol = tol

    @staticmethod
    def _svd_approx(M: np.ndarray, r: int):
        u, s, vt = np.linalg.svd(M, full_matrices=False)
        r = min(r, len(s))
        return u[:, :r], s[:r], vt[:r]

    def _fit(self, X) -> None:
        """Fit joint and individual structure (at least two modalities)."""
        mods = list(X)
        if len(mods) < 2:
            raise ValidationError(f"JIVE needs at least 2 modalities, got {mods}")
        ir = self.individual_rank
        ranks = dict(ir) if isinstance(ir, dict) else {m: ir for m in mods}
        for m in mods:
            r = ranks.get(m)
            if not is_int(r) or r < 0:
                raise ValidationError(f"JIVE: individual_rank for modality {m!r} is {r!r}; use an int >= 0")
        self._fit_scaler(X)
        Z = self._standardise(X)
        self.block_scale_ = {m: float(np.linalg.norm(Z[m])) or 1.0 for m in mods}
        Zs = {m: Z[m] / self.block_scale_[m] for m in mods}
        cols = np.cumsum([0] + [Zs[m].shape[1] for m in mods])
        # every iterate lies in the column space of the concatenation: iterate on its QR coordinates
        # (min(n, d) rows instead of n; same singular values and right vectors, so the same loadings)
        _q, Xc = np.linalg.qr(np.concatenate([Zs[m] for m in mods], axis=1))
        Zs = {m: Xc[:, cols[k] : cols[k + 1]] for k, m in enumerate(mods)}
        indiv = {m: np.zeros_like(Zs[m]) for m in mods}
        prev = None
        self.n_iter_ = 0
        converged = False
        for it in range(int(self.max_iter)):
            R = Xc - np.concatenate([indiv[m] for m in mods], axis=1)
            uj, sj, vj = self._svd_approx(R, int(self.joint_rank))
            J = (uj * sj) @ vj
            for k, m in enumerate(mods):
                res = Zs[m] - J[:, cols[k] : cols[k + 1]]
                res = res - uj @ (uj.T @ res)  # individual scores orthogonal to joint scores
                if ranks[m] > 0:
                    u, s, vt = self._svd_approx(res, int(ranks[m]))
                    indiv[m] = (u * s) @ vt
            fitted = J + np.concatenate([indiv[m] for m in mods], axis=1)
            self.n_iter_ = it + 1
            if prev is not None:
                change = np.linalg.norm(fitted - prev) / max(np.linalg.norm(fitted), 1e-12)
                if change < float(self.tol):
                    converged = True
                    break
            prev = fitted
        if not converged:
            warnings.warn(
                f"JIVE stopped at max_iter={self.max_iter} before the relative change fell below tol={self.tol}",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.joint_loadings_ = vj.T  # (sum d, r_J)
        self.individual_loadings_ = {}
        for m in mods:
            if ranks[m] > 0:
                _u, _s, vt = self._svd_approx(indiv[m], int(ranks[m]))
                self.individual_loadings_[m] = vt.T  # (d_m, r_m)
        self._cols = cols
        glob = all_structures(mods)[0]
        self.structure_ = {glob: int(vj.shape[0])}
        self.structure_.update({m: int(v.shape[1]) for m, v in self.individual_loadings_.items()})

    def transform(self, X) -> dict[str, np.ndarray]:
        """Joint and individual scores.

        Parameters
        ----------
        X : mapping of str to array (n, d_m)
            The fitted modalities.

        Returns
        -------
        dict of str to ndarray
            ``{global: (n, r_J)}`` and, per modality with an individual part, ``{m: (n, r_m)}``.
        """
        X = self._check_transform(X)
        Z = self._standardise(X)
        mods = self.modalities_
        Zs = [Z[m] / self.block_scale_[m] for m in mods]
        Xc = np.concatenate(Zs, axis=1)
        joint = Xc @ self.joint_loadings_
        J = joint @ self.joint_loadings_.T
        out = {all_structures(mods)[0]: joint}
        for k, m in enumerate(mods):
            if m in self.individual_loadings_:
                res = Zs[k] - J[:, self._cols[k] : self._cols[k + 1]]
                out[m] = res @ self.individual_loadings_[m]
        return out

    def _get_state(self):
        state, arrays = super()._get_state()
        state.update(block_scale=self.block_scale_, n_iter=self.n_iter_)
        arrays.update(joint_loadings=self.joint_loadings_, cols=np.asarray(self._cols))
        for m, v in self.individual_loadings_.items():
            arrays[f"individual_loadings.{m}"] = v
        return state, arrays

    def _set_state(self, state, arrays) -> None:
        super()._set_state(state, arrays)
        self.block_scale_ = {m: float(v) for m, v in state["block_scale"].items()}
        self.n_iter_ = int(state["n_iter"])
        self.joint_loadings_ = arrays["joint_loadings"]
        self._cols = arrays["cols"]
        self.individual_loadings_ = {
            m: arrays[f"individual_loadings.{m}"]
            for m in self.modalities_
            if f"individual_loadings.{m}" in arrays
        }

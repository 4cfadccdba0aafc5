"""Comparison methods with the :class:`hcl.deep.HCL` API: ``fit(X)`` and ``transform(X) -> dict``.

* :class:`Concat` -- standardised concatenation, one block ``"concat"``.
* :class:`PCA` -- principal components of the standardised concatenation, one block ``"pca"``.
* :class:`CLIP` -- InfoNCE over every modality pair, one shared block (named like the global structure),
  on the same backbone and training loop as :class:`~hcl.deep.HCL`.
* :class:`SharedPrivate` -- deep HCL restricted to the global and the private structures (the binary
  shared/private view that HCL argues against).
* :class:`JIVE` -- linear joint (global) + individual (private) structure by iterated SVDs.

Missing modalities are rows of NaN: the linear methods impute zeros after standardisation (the mean),
the deep ones average the available encoders.
"""

from __future__ import annotations

import warnings

import numpy as np

from hcl._validation import check_X
from hcl.deep import HCL, _is_int, _ParamsMixin
from hcl.exceptions import ConvergenceWarning, NotFittedError, ValidationError
from hcl.preprocessing import column_scale
from hcl.structures import all_structures

__all__ = ["CLIP", "JIVE", "PCA", "Concat", "SharedPrivate"]


class _Standardised(_ParamsMixin):
    """Per-modality standardisation on observed rows; missing rows become zeros."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "modalities_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

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

    def _check_transform(self, X) -> dict[str, np.ndarray]:
        self._check_fitted()
        return check_X(X, modalities=self.modalities_, dims=self.dims_, allow_nan_rows=True)

    def fit_transform(self, X, y=None) -> dict[str, np.ndarray]:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)


class Concat(_Standardised):
    """Standardised concatenation of all modalities: one block ``"concat"`` (n, sum d_m).

    Each column is centred and scaled on the rows where its modality is observed; a missing modality
    contributes zeros (its mean).
    """

    def __init__(self):
        pass

    def fit(self, X, y=None):
        """Learn the per-column means and scales. Returns self."""
        X = check_X(X, allow_nan_rows=True, min_rows=2)
        self._fit_scaler(X)
        self.structure_ = {"concat": int(sum(self.dims_.values()))}
        return self

    def transform(self, X) -> dict[str, np.ndarray]:
        """``{"concat": array (n, sum d_m)}``."""
        X = self._check_transform(X)
        Z = self._standardise(X)
        return {"concat": np.concatenate([Z[m] for m in self.modalities_], axis=1)}


class PCA(_Standardised):
    """Principal components of the standardised concatenation: one block ``"pca"`` (n, n_components).

    Parameters
    ----------
    n_components : int, default 16
    """

    def __init__(self, n_components=16):
        self.n_components = n_components

    def fit(self, X, y=None):
        """Fit the components on the standardised concatenation. Returns self."""
        X = check_X(X, allow_nan_rows=True, min_rows=2)
        if not _is_int(self.n_components) or self.n_components < 1:
            raise ValidationError(f"PCA: n_components={self.n_components!r} is invalid; use a positive int")
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
        return self

    def transform(self, X) -> dict[str, np.ndarray]:
        """``{"pca": array (n, n_components)}``: scores on the fitted components."""
        X = self._check_transform(X)
        Z = np.concatenate([self._standardise(X)[m] for m in self.modalities_], axis=1)
        return {"pca": (Z - self.center_) @ self.components_.T}


class CLIP(HCL):
    """CLIP-style baseline: one shared block trained with InfoNCE over every modality pair.

    The same per-modality backbone, heads, training loop, early stopping, checkpoints and persistence as
    :class:`~hcl.deep.HCL`, with only the global structure, no decorrelation and no group penalty. The
    block is named like the global structure (``"a+b+c"``).
    """

    structures = "global"
    loss = "infonce"
    decorrelation = 0.0
    nonlinear_decorrelation = 0
    decorrelation_upward = 0.0
    strict_missing = False
    group_penalty = 0.0
    private_augment = 0.2
    prune_threshold = 0.0
    fusion = "mean"  # CLIP averages its encoders' embeddings
    private = "contrastive"  # no private structures; unused

    def __init__(
        self,
        embedding_dim=8,
        hidden=(64,),
        temperature=0.1,
        max_epochs=200,
        batch_size=512,
        lr=3e-3,
        validation_fraction=0.1,
        patience=10,
        random_state=None,
        device="cpu",
        verbose=True,
        checkpoint_dir=None,
        n_threads=None,
    ):
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.temperature = temperature
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.n_threads = n_threads

    def _resolve_structures(self, modalities):
        if len(modalities) < 2:
            raise ValidationError(f"CLIP needs at least 2 modalities, got {modalities}")
        return {all_structures(modalities)[0]: int(self.embedding_dim)}


class SharedPrivate(HCL):
    """Deep HCL restricted to the global structure and the private ones (no partially shared blocks).

    Takes every parameter of :class:`~hcl.deep.HCL` except ``structures``.
    """

    structures = "global+private"
    strict_missing = True  # no partially shared candidates, so it changes nothing

    def __init__(
        self,
        embedding_dim=8,
        hidden=(64,),
        loss="spectral",
        temperature=0.1,
        decorrelation=1.0,
        nonlinear_decorrelation=64,
        decorrelation_upward=0.5,
        group_penalty=1e-3,
        private_augment=0.2,
        max_epochs=200,
        batch_size=512,
        lr=3e-3,
        validation_fraction=0.1,
        patience=10,
        prune_threshold=0.0,
        fusion="factor",
        private="residual",
        random_state=None,
        device="cpu",
        verbose=True,
        checkpoint_dir=None,
        n_threads=None,
    ):
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.loss = loss
        self.temperature = temperature
        self.decorrelation = decorrelation
        self.nonlinear_decorrelation = nonlinear_decorrelation
        self.decorrelation_upward = decorrelation_upward
        self.group_penalty = group_penalty
        self.private_augment = private_augment
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.prune_threshold = prune_threshold
        self.fusion = fusion
        self.private = private
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.n_threads = n_threads

    def _resolve_structures(self, modalities):
        names = all_structures(modalities)
        keep = [names[0]] + [s for s in names if "+" not in s]
        return {s: int(self.embedding_dim) for s in keep}


class JIVE(_Standardised):
    """Joint and Individual Variation Explained: linear global + private blocks by iterated SVDs.

    Each standardised modality is scaled to unit Frobenius norm. Alternately: the joint part is the
    rank-``joint_rank`` SVD of the concatenation minus the individual parts; each individual part is the
    rank-``individual_rank`` SVD of its modality minus the joint part, after projecting out the joint
    scores (so joint and individual scores are orthogonal). Missing rows are imputed with zeros.

    Parameters
    ----------
    joint_rank : int, default 4
    individual_rank : int or dict of str to int, default 4
    max_iter : int, default 100
    tol : float, default 1e-6
        Relative change of the fitted signal at which the iteration stops.

    Attributes
    ----------
    structure_ : dict of str to int
        The global structure and each modality's private structure with their ranks.
    n_iter_ : int
    """

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

    def fit(self, X, y=None):
        """Fit joint and individual structure. Returns self."""
        X = check_X(X, allow_nan_rows=True, min_rows=2)
        mods = list(X)
        if len(mods) < 2:
            raise ValidationError(f"JIVE needs at least 2 modalities, got {mods}")
        if not _is_int(self.joint_rank) or self.joint_rank < 1:
            raise ValidationError(f"JIVE: joint_rank={self.joint_rank!r} is invalid; use a positive int")
        ir = self.individual_rank
        ranks = dict(ir) if isinstance(ir, dict) else {m: ir for m in mods}
        for m in mods:
            r = ranks.get(m)
            if not _is_int(r) or r < 0:
                raise ValidationError(f"JIVE: individual_rank for modality {m!r} is {r!r}; use an int >= 0")
        if not _is_int(self.max_iter) or self.max_iter < 1:
            raise ValidationError(f"JIVE: max_iter={self.max_iter!r} is invalid; use a positive int")
        self._fit_scaler(X)
        Z = self._standardise(X)
        self.block_scale_ = {m: float(np.linalg.norm(Z[m])) or 1.0 for m in mods}
        Zs = {m: Z[m] / self.block_scale_[m] for m in mods}
        cols = np.cumsum([0] + [Zs[m].shape[1] for m in mods])
        Xc = np.concatenate([Zs[m] for m in mods], axis=1)
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
        return self

    def transform(self, X) -> dict[str, np.ndarray]:
        """Joint scores ``{global: (n, r_J)}`` and individual scores ``{m: (n, r_m)}``."""
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

"""The estimator :class:`HCL`: parameters, fit, transform and summary, on top of the package's parts.

The network lives in :mod:`hcl.deep.network`, the objective in :mod:`hcl.deep.objective`, the training
loop with checkpoints in :mod:`hcl.deep.training`, pruning in :mod:`hcl.deep.pruning`, the fusion and
private-residual block models in :mod:`hcl.deep.blocks` and the saved state in :mod:`hcl.deep.persistence`.
torch is imported inside the methods that need it, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions

from hcl._base import HCLEstimator, fit_context
from hcl._validation import check_X, is_int
from hcl.deep.blocks import BlockModels
from hcl.exceptions import ValidationError
from hcl.preprocessing import column_scale
from hcl.structures import all_structures, parse_structure

__all__ = ["HCL"]

logger = logging.getLogger(__name__)

# Parameters that do not change the fitted result (left out of the checkpoint fingerprint).
_NON_RESULT_PARAMS = {"verbose", "checkpoint_dir", "n_threads", "max_epochs", "device"}


def _positive_int():
    return Interval(Integral, 1, None, closed="left")


class HCL(TransformerMixin, HCLEstimator):
    """Deep hierarchical contrastive learning with structure discovery and missing modalities.

    Parameters
    ----------
    structures : "all", list of str or dict of str to int, default "all"
        Candidate structures: every non-empty subset of the modalities (``"all"``), a list of structure
        names (each of dimension ``embedding_dim``), or a dict name -> embedding dimension.
    embedding_dim : int, default 8
        Dimension of each structure's block when ``structures`` does not give one.
    hidden : int or tuple of int, default (64,)
        Widths of each modality's MLP backbone (ReLU). ``()`` gives linear heads on the inputs.
    loss : {"spectral", "infonce"}, default "spectral"
        Alignment loss: the paper's linear loss (mean negative minus mean positive cosine similarity) or
        InfoNCE with ``temperature``.
    temperature : float, default 0.1
        InfoNCE temperature (ignored by ``"spectral"``).
    decorrelation : float, default 1.0
        Weight of the decorrelation term (squared cross-covariance between one modality's blocks for
        different structures, normalised by batch size). It is hierarchical: between blocks of structures
        of different sizes the smaller structure's block gets the whole gradient and the larger one only
        ``decorrelation_upward`` of it, so a partially shared block is pushed off the global one more than
        the reverse (as peeling does).
    nonlinear_decorrelation : int, default 64
        Number of random Fourier features of each larger structure's block that a smaller structure's
        block of the same modality is also decorrelated from (same weight ``decorrelation``). This stops a
        block from carrying *nonlinear* functions of a larger structure's factors, which otherwise lets an
        absent structure align on them. 0 keeps the linear term only.
    decorrelation_upward : float, default 0.5
        Between blocks of structures of different sizes, the fraction of the decorrelation gradient that
        reaches the larger structure's block (the smaller one always gets all of it). 0 is strictly
        hierarchical (the global block is never pushed), 1 is symmetric.
    group_penalty : float, default 1e-3
        Weight of the group-lasso penalty on the heads (one group per (modality, structure) head).
    private_augment : float, default 0.2
        Fraction of input features masked (set to 0) in each of the two views that form the positives of
        a private structure. Must be in (0, 1).
    max_epochs : int, default 200
    batch_size : int, default 512
        Rows per minibatch (the whole training set if larger).
    lr : float, default 3e-3
        Adam learning rate.
    validation_fraction : float, default 0.1
        Fraction of rows held out to monitor the objective for early stopping (0 disables it).
    patience : int, default 10
        Epochs without improvement of the validation objective before stopping (best weights kept).
    prune : {"permutation", "threshold"}, default "permutation"
        How shared structures (two or more modalities) are kept after training; private structures are
        always kept (their positives, two views of one row, align even on noise). Every pair of a
        structure's modalities shares its factors, so its *weakest pair* decides (see
        :mod:`hcl.deep.pruning`). ``"permutation"``: on the held-out rows, largest structures first, each
        pair's blocks are residualised on those of the kept structures that contain it, and their
        alignment must clear its permutation null (one modality's rows shuffled) by ``prune_z`` standard
        deviations. ``"threshold"``: the raw weakest-pair alignment (mean positive minus mean negative
        cosine similarity, 0 to 2) must reach ``prune_threshold``; no fixed value fits every data set, as a
        present structure's alignment moves with its rank, the noise and the rows (0.17 to 0.9 on the
        simulator). Structures of three or more modalities pruned after the first fit are dropped and the
        model is fitted again without them (``dropped_structures_``): a block of ``a+b+c`` earns part of
        its reward when only ``a`` and ``b`` agree, so while trained it can starve a true ``a+b`` block.
    prune_z : float, default 4.0
        With ``prune="permutation"``, the z-score against the permutation null that a structure's weakest
        pair must reach (one-sided; 4 keeps the chance of keeping an absent structure below 1e-4 per pair
        test, so below about 1% over the 50-odd pair tests of four modalities).
    prune_threshold : float, default 0.3
        With ``prune="threshold"``, the weakest-pair alignment a shared structure must reach (0 keeps
        every structure). Ignored with ``prune="permutation"``.
    fusion : {"factor", "mean"}, default "factor"
        How ``transform`` combines the heads of a structure's modalities into its block. ``"mean"``
        averages them. ``"factor"`` fits, after training, a factor-analysis model per structure on the
        member heads (train rows) and returns the posterior mean of its factors given the heads a row
        has: a modality whose head is a noisier view of the shared factors gets less weight, as in
        precision weighting.
    private : {"residual", "contrastive"}, default "residual"
        What ``transform`` returns for a private structure. ``"contrastive"``: its head, trained on two
        feature-masked views of the row. ``"residual"``: the top ``dim`` principal components (train rows)
        of the modality's standardised inputs after a least-squares fit on the modality's kept shared
        blocks, i.e. what the modality carries beyond what it shares. Masked views of sparse or
        redundant features agree on little that is private, so the contrastive heads learn these
        factors weakly (held-out R² of the readmission demo's four private factors: 0.05-0.76 from the
        contrastive heads, 0.44-0.93 from residuals).
        The private heads are trained either way: their decorrelation shapes the shared blocks.
    strict_missing : bool, default True
        A row that observes only part of a structure ``S`` still aligns ``S`` over the modalities it has,
        except when that observed part is itself a candidate structure (e.g. a row without ``a`` and the
        global ``a+b+c`` with ``b+c`` a candidate): such a row's agreement is evidence for the smaller
        structure and would leak its factors into ``S``. False uses every row with two or more observed
        modalities of ``S``.
    random_state : int, numpy Generator or None
        Seed for initialisation, the validation split, shuffling and augmentation. With an int, two fits
        on CPU give identical results.
    device : str, default "cpu"
    verbose : bool, default True
        Show a tqdm progress bar with the loss.
    checkpoint_dir : str or Path, optional
        If given, a checkpoint (weights, optimizer state, RNG states, history) is written there after every
        epoch, and a fit resumes from it; the result equals an uninterrupted fit with the same seed.
    n_threads : int, optional
        If given, ``torch.set_num_threads(n_threads)`` during fit/transform (restored afterwards).

    Attributes
    ----------
    modalities_ : list of str
    dims_ : dict of str to int
    candidates_ : dict of str to int
        Every trained structure and its dimension.
    structure_ : dict of str to int
        Kept structures (after pruning) and their dimensions; ``transform`` returns these.
    fusion_ : dict of str to dict
        With ``fusion="factor"``, per kept shared structure the factor model of its member heads:
        ``mean``, ``loadings`` (summed member dims x dim) and diagonal ``noise`` variances.
    history_ : list of float
        Training objective per epoch.
    val_history_ : list of float
        Validation objective per epoch (empty without validation).
    n_epochs_ : int
    summary : pandas.DataFrame
        One row per candidate structure: structure, kind, dim, head norm per modality, relative norm,
        validation alignment (mean positive minus mean negative similarity), the alignment of its weakest
        pair of modalities, with ``prune="permutation"`` that pair's z-score against its permutation null
        (``weakest_pair_z``) and its alignment after residualising on kept larger structures
        (``residual_alignment``), kept. Dropped structures come last, with their first fit's figures.
    private_ : dict of str to dict
        With ``private="residual"``, per private structure: ``coef`` (least-squares coefficients of the
        modality's standardised inputs on an intercept and its kept shared blocks), ``center`` and
        ``components`` (principal axes of the residual).
    dropped_structures_ : list of str
        Structures of three or more modalities dropped after the first fit (see ``prune``).
    """

    _parameter_constraints: dict = {
        "structures": [StrOptions({"all"}), list, tuple, Mapping],
        "embedding_dim": [_positive_int()],
        "hidden": [_positive_int(), tuple, list],
        "loss": [StrOptions({"spectral", "infonce"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "decorrelation": [Interval(Real, 0, None, closed="left")],
        "nonlinear_decorrelation": [Interval(Integral, 0, None, closed="left")],
        "decorrelation_upward": [Interval(Real, 0, 1, closed="both")],
        "group_penalty": [Interval(Real, 0, None, closed="left")],
        "private_augment": [Interval(Real, 0, 1, closed="neither")],
        "max_epochs": [_positive_int()],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "patience": [_positive_int(), None],
        "prune": [StrOptions({"permutation", "threshold"})],
        "prune_z": [Interval(Real, 0, None, closed="left")],
        "prune_threshold": [Interval(Real, 0, 2, closed="both")],
        "fusion": [StrOptions({"factor", "mean"})],
        "private": [StrOptions({"residual", "contrastive"})],
        "strict_missing": ["boolean"],
        "random_state": [Integral, np.random.Generator, None],
        "device": [str],
        "verbose": ["verbose"],
        "checkpoint_dir": [str, os.PathLike, None],
        "n_threads": [_positive_int(), None],
    }
    _fitted_attribute = "net_"

    def __init__(
        self,
        structures="all",
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
        prune="permutation",
        prune_z=4.0,
        prune_threshold=0.3,
        fusion="factor",
        private="residual",
        strict_missing=True,
        random_state=None,
        device="cpu",
        verbose=True,
        checkpoint_dir=None,
        n_threads=None,
    ):
        self.structures = structures
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
        self.prune = prune
        self.prune_z = prune_z
        self.prune_threshold = prune_threshold
        self.fusion = fusion
        self.private = private
        self.strict_missing = strict_missing
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.n_threads = n_threads

    def __init_subclass__(cls, **kwargs):
        """Turn a subclass that declares ``_preset`` into a preset of HCL (see :mod:`hcl.deep.presets`)."""
        super().__init_subclass__(**kwargs)
        if "_preset" in cls.__dict__:
            from hcl.deep.presets import make_preset

            make_preset(cls, HCL)

    # ------------------------------------------------------------------ parameters
    def _hidden_widths(self) -> tuple[int, ...]:
        """``hidden`` as a tuple of positive ints (the constraints only check its type)."""
        hidden = (self.hidden,) if is_int(self.hidden) else self.hidden
        if not all(is_int(h) and h >= 1 for h in hidden):
            raise ValidationError(
                f"{type(self).__name__}: hidden={self.hidden!r} is invalid; use a positive int or a tuple "
                "of positive ints"
            )
        return tuple(int(h) for h in hidden)

    def _resolve_structures(self, modalities: list[str]) -> dict[str, int]:
        spec = self.structures
        if isinstance(spec, str) and spec == "all":
            return {s: int(self.embedding_dim) for s in all_structures(modalities)}
        items = list(spec.items()) if isinstance(spec, Mapping) else [(s, self.embedding_dim) for s in spec]
        if not items:
            raise ValidationError("structures is empty; name at least one structure or use 'all'")
        out: dict[str, int] = {}
        for name, dim in items:
            if not isinstance(name, str):
                raise ValidationError(f"structure names must be strings, got {name!r}")
            members = parse_structure(name, modalities)
            canon = "+".join(members)
            if not is_int(dim) or dim < 1:
                raise ValidationError(f"structure {name!r} has dimension {dim!r}; use a positive int")
            if canon in out:
                raise ValidationError(f"structure {name!r} is listed twice")
            out[canon] = int(dim)
        order = all_structures(modalities)
        return {s: out[s] for s in order if s in out}

    # ------------------------------------------------------------------ helpers
    def _seed(self) -> int:
        if is_int(self.random_state):
            return int(self.random_state) % (2**31 - 1)
        return int(np.random.default_rng(self.random_state).integers(0, 2**31 - 1))

    def _layout(self):
        """Per modality, the (structure, start, stop) slices of its head output."""
        layout = {m: [] for m in self.modalities_}
        for m in self.modalities_:
            start = 0
            for s, dim in self.candidates_.items():
                if m in parse_structure(s, self.modalities_):
                    layout[m].append((s, start, start + dim))
                    start += dim
        return layout

    def _prepare(self, X: dict[str, np.ndarray]):
        """Standardise with the fitted statistics; NaN rows -> 0. Returns tensors (n, d_m) and mask (M, n)."""
        import torch

        xs, masks = [], []
        for m in self.modalities_:
            a = X[m]
            obs = ~np.isnan(a[:, 0])
            z = (np.nan_to_num(a, nan=0.0) - self.mean_[m]) / self.scale_[m]
            z[~obs] = 0.0
            xs.append(torch.as_tensor(z, dtype=torch.float32, device=self.device))
            masks.append(torch.as_tensor(obs, device=self.device))
        return xs, torch.stack(masks)

    def _make_objective(self):
        from hcl.deep.objective import HCLObjective

        return HCLObjective(
            self.modalities_,
            self.candidates_,
            self._layout_,
            loss=self.loss,
            temperature=self.temperature,
            decorrelation=self.decorrelation,
            nonlinear_decorrelation=self.nonlinear_decorrelation,
            decorrelation_upward=self.decorrelation_upward,
            group_penalty=self.group_penalty,
            private_augment=self.private_augment,
            strict_missing=self.strict_missing,
            seed=self._seed_value,
            device=self.device,
        )

    def _alignment_mask(self, s, members, mask):
        """Rows (k, n) that align structure ``s`` (see :meth:`HCLObjective.alignment_mask`)."""
        return self._make_objective().alignment_mask(s, members, mask)

    def _fingerprint(self, X: dict[str, np.ndarray]) -> str:
        params = {k: v for k, v in self.get_params().items() if k not in _NON_RESULT_PARAMS}
        params["random_state"] = self._seed_value
        h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
        h.update(json.dumps(self.candidates_).encode())
        for m in self.modalities_:
            a = X[m]
            h.update(m.encode())
            h.update(str(a.shape).encode())
            step = max(1, a.shape[0] // 512)
            h.update(np.nan_to_num(a[::step], nan=-7.0).tobytes())
        return h.hexdigest()

    def _threads(self):
        """Context in which torch uses ``n_threads`` threads (restored afterwards)."""
        from hcl.deep.training import torch_threads

        return torch_threads(self.n_threads)

    # ------------------------------------------------------------------ fit
    @fit_context
    def fit(self, X, y=None):
        """Fit the encoders on ``X``.

        Parameters
        ----------
        X : mapping of str to array (n, d_m)
            One array per modality, rows aligned; a row of NaN means the modality is missing there.
        y : None
            Ignored.

        Returns
        -------
        self : HCL
        """
        import torch

        self._hidden_widths()
        X = check_X(X, allow_nan_rows=True, min_rows=4)
        modalities = list(X)
        self._seed_value = self._seed()
        with self._threads():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._seed_value)
                self._fit(X, modalities, self._resolve_structures(modalities), self.checkpoint_dir)
                self._refit_without_absent_triples(X, modalities)
            self._fit_block_models(X)
        return self

    def _refit_without_absent_triples(self, X, modalities) -> None:
        """Drop structures of three or more modalities that the first fit pruned, and fit again.

        A block of a+b+c is rewarded for a and b agreeing even when c does not, so while it is trained it
        can take the factors of a true a+b and starve that block. Every pair of a structure's modalities
        shares its factors, so a triple (or larger) whose weakest pair does not align is absent.
        """
        import torch

        absent = [
            s for s in self.candidates_ if s not in self.structure_ and len(parse_structure(s, modalities)) >= 3
        ]
        remaining = {s: d for s, d in self.candidates_.items() if s not in absent}
        self.dropped_structures_ = []
        if not absent or not remaining:
            return
        first_round = [r for r in self.summary_records_ if r["structure"] in absent]
        torch.manual_seed(self._seed_value)
        refit_dir = None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / "refit"
        self._fit(X, modalities, remaining, refit_dir)
        self.summary_records_ += first_round
        self.dropped_structures_ = absent

    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted validation and training row indices (``validation_fraction`` of the rows held out)."""
        perm = np.random.default_rng(self._seed_value).permutation(n)
        n_val = int(round(self.validation_fraction * n)) if self.validation_fraction > 0 else 0
        if n_val >= n - 2:
            n_val = 0
        return np.sort(perm[:n_val]), np.sort(perm[n_val:])

    def _fit(self, X: dict[str, np.ndarray], modalities: list[str], candidates, checkpoint_dir) -> None:
        from hcl.deep.network import HeadNetwork
        from hcl.deep.pruning import prune
        from hcl.deep.training import CHECKPOINT_FILE, TrainSettings, train

        self.modalities_ = modalities
        self.dims_ = {m: int(X[m].shape[1]) for m in modalities}
        self.candidates_ = dict(candidates)
        self._layout_ = self._layout()
        self.mean_, self.scale_ = {}, {}
        for m in modalities:
            a = X[m][~np.isnan(X[m][:, 0])]
            if a.shape[0] < 2:
                raise ValidationError(
                    f"modality {m!r} is observed in {a.shape[0]} rows of {X[m].shape[0]}; need at least 2"
                )
            self.mean_[m], self.scale_[m] = column_scale(a)
        objective = self._make_objective()
        val_idx, tr_idx = self._split(next(iter(X.values())).shape[0])
        xs, mask = self._prepare(X)
        train_rows = ([x[tr_idx] for x in xs], mask[:, tr_idx])
        val_rows = ([x[val_idx] for x in xs], mask[:, val_idx]) if len(val_idx) else None
        self._hidden_ = self._hidden_widths()
        head_dims = [[b - a for _s, a, b in self._layout_[m]] for m in modalities]
        net = HeadNetwork([self.dims_[m] for m in modalities], self._hidden_, head_dims).to(self.device)
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = (Path(checkpoint_dir) / CHECKPOINT_FILE, self._fingerprint(X))
        settings = TrainSettings(
            max_epochs=int(self.max_epochs),
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            patience=self.patience,
            verbose=bool(self.verbose),
            device=self.device,
            seed=self._seed_value,
        )
        state = train(net, objective, train_rows, val_rows, settings, checkpoint, self._epoch_end)
        self.net_ = net
        self.history_ = state.history
        self.val_history_ = state.val_history
        self.n_epochs_ = state.epoch
        held_out = val_rows if val_rows is not None else train_rows
        self.structure_, self.summary_records_ = prune(
            net,
            objective,
            held_out[0],
            held_out[1],
            self._seed_value,
            self.prune_threshold,
            rule=self.prune,
            z_threshold=self.prune_z,
        )

    def _epoch_end(self, epoch: int) -> None:
        """Run after each epoch, once its checkpoint is written; does nothing by default (a test hook)."""

    def _head_outputs(self, xs):
        """Raw head outputs (before soft normalisation): dict m -> dict S -> ndarray (n, dim_S)."""
        import torch

        self.net_.eval()
        with torch.no_grad():
            outs = self.net_(xs)
        return {
            m: {s: o[:, a:b].cpu().numpy().astype(np.float64) for s, a, b in self._layout_[m]}
            for m, o in zip(self.modalities_, outs, strict=True)
        }

    def _block_models(self) -> BlockModels:
        return BlockModels(self.modalities_, self.candidates_, self.structure_, self.fusion_, self.private_)

    def _fit_block_models(self, X) -> None:
        """Fit the fusion and private models of the kept structures on the fit rows.

        They use the final network's heads, once, after any refit: a first fit that is refitted would
        only throw them away.
        """
        from hcl import deep  # the package's _FUSION_MAX_ITER, read at call time so a test can lower it

        xs, mask = self._prepare(X)
        heads, observed = self._head_outputs(xs), mask.cpu().numpy()
        self.fusion_, self.private_ = {}, {}
        models = self._block_models()
        if self.fusion == "factor":
            models.fit_fusion(heads, observed, deep._FUSION_MAX_ITER)
        if self.private == "residual":
            models.fit_private(xs, heads, observed)
        self.fusion_, self.private_ = models.fusion, models.private

    # ------------------------------------------------------------------ summary
    @property
    def summary(self):
        """pandas.DataFrame: one row per candidate structure (see the class docstring)."""
        self._check_fitted()
        import pandas as pd

        return pd.DataFrame(self.summary_records_)

    def print_summary(self) -> str:
        """Render :attr:`summary` as text, log it at INFO level and return it.

        Returns
        -------
        str
        """
        text = self.summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")
        logger.info("HCL summary\n%s", text)
        return text

    # ------------------------------------------------------------------ transform
    def transform(self, X, structures=None) -> dict[str, np.ndarray]:
        """Block representations of ``X``.

        Parameters
        ----------
        X : mapping of str to array (n, d_m)
            The fitted modalities; a row of NaN marks a missing modality.
        structures : list of str, optional
            Which blocks to return; default the kept ones (``structure_``). Any trained candidate may be named.

        Returns
        -------
        dict of str to ndarray (n, dim_S)
            For each structure, its head outputs ``h_{m,S}`` over the row's available modalities ``m`` in
            ``S`` (before the soft normalisation used in training, which would discard the radius of the
            factors), combined as ``fusion`` says: the factor model's posterior mean, or their mean; zeros
            for rows with no modality of ``S``.
        """
        self._check_fitted()
        X = check_X(X, modalities=self.modalities_, dims=self.dims_, allow_nan_rows=True)
        names = list(self.structure_) if structures is None else list(structures)
        for s in names:
            if s not in self.candidates_:
                raise ValidationError(f"structure {s!r} was not trained; trained: {list(self.candidates_)}")
        with self._threads():
            xs, mask = self._prepare(X)
            # raw head outputs: the soft normalisation used in training discards the radius of the
            # latent factors, which a downstream linear model needs
            heads = self._head_outputs(xs)
            return self._block_models().blocks(names, xs, heads, mask.cpu().numpy())

    # ------------------------------------------------------------------ persistence
    def _get_state(self):
        from hcl.deep.persistence import get_state

        return get_state(self)

    def _set_state(self, state, arrays) -> None:
        from hcl.deep.persistence import set_state

        set_state(self, state, arrays)

    def _params_to_json(self, params: dict) -> dict:
        params = dict(params)
        if params.get("checkpoint_dir") is not None:
            params["checkpoint_dir"] = str(params["checkpoint_dir"])
        if "random_state" in params:
            rs = params["random_state"]
            params["random_state"] = int(rs) if is_int(rs) else None
        if isinstance(params.get("hidden"), tuple):
            params["hidden"] = list(params["hidden"])
        return params

    @classmethod
    def _params_from_json(cls, params: dict) -> dict:
        params = dict(params)
        if isinstance(params.get("hidden"), list):
            params["hidden"] = tuple(params["hidden"])
        return params

"""Deep hierarchical contrastive learning: :class:`HCL`.

One MLP backbone per modality; on top of it one linear head ``h_{m,S}`` per (modality, structure) pair
with ``m`` in ``S``. For every structure ``S`` the heads of the modalities in ``S`` are aligned by a
structure-aware contrastive loss (the paper's linear "spectral" loss, or InfoNCE), a decorrelation term
keeps one modality's heads for different structures apart, and a group penalty (one group per head)
shrinks the heads of structures the data do not support, which are then pruned. A private structure
(one modality) has no second modality to align with; its positives are two randomly feature-masked views
of the same row (``private_augment``), so it learns what the modality carries beyond its shared blocks.

Missing modalities are rows of NaN: alignment for ``S`` uses only the modalities a row has, a row with
fewer than two observed modalities of ``S`` adds no alignment term for ``S``, and ``transform`` combines
the available encoders: by default through a factor model of each structure's heads fitted after training,
which weights a modality by how cleanly its head carries the shared factors (``fusion``). A private block
is, by default, the principal components of what its modality carries beyond its shared blocks
(``private``).

torch is imported inside the functions that need it, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hcl._validation import check_X
from hcl.exceptions import ConvergenceWarning, NotFittedError, ValidationError
from hcl.preprocessing import column_scale
from hcl.structures import all_structures, kind, parse_structure

__all__ = ["HCL"]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1

# Parameters that do not change the fitted result (left out of the checkpoint fingerprint).
_NON_RESULT_PARAMS = {"verbose", "checkpoint_dir", "n_threads", "max_epochs", "device"}
_FUSION_MAX_ITER = 10_000  # EM iterations of the factor model behind fusion="factor"


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)


class _ParamsMixin:
    """get_params / set_params / repr in the scikit-learn contract (no sklearn import needed)."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters of this estimator, as a dict."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters; returns self."""
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValidationError(f"{type(self).__name__} has no parameter {k!r}; valid: {valid}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {
            k: p.default for k, p in inspect.signature(type(self).__init__).parameters.items() if k != "self"
        }
        parts = []
        for k, v in self.get_params().items():
            try:
                same = bool(v == defaults.get(k))
            except Exception:  # noqa: BLE001 - arrays etc.
                same = False
            if not same:
                parts.append(f"{k}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_text(text: str, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build_net(dims: list[int], hidden: tuple[int, ...], head_dims: list[list[int]]):
    """The network: per-modality MLP backbone + one linear layer holding all heads of that modality."""
    import torch
    from torch import nn

    class _Net(nn.Module):
        def __init__(self):
            super().__init__()
            backbones = []
            for d in dims:
                layers: list[nn.Module] = []
                prev = d
                for h in hidden:
                    layers += [nn.Linear(prev, h), nn.ReLU()]
                    prev = h
                backbones.append(nn.Sequential(*layers))
            self.backbones = nn.ModuleList(backbones)
            last = hidden[-1] if hidden else None
            self.heads = nn.ModuleList(
                nn.Linear(last if last is not None else d, max(1, sum(hd)))
                for d, hd in zip(dims, head_dims, strict=True)
            )

        def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
            # xs[m]: (n, d_m) -> out[m]: (n, sum_S dim_S) all heads of modality m side by side
            return [head(bb(x)) for x, bb, head in zip(xs, self.backbones, self.heads, strict=True)]

    return _Net()


class HCL(_ParamsMixin):
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
    prune_threshold : float, default 0.3
        A shared structure (two or more modalities) is kept when the held-out alignment (mean positive
        minus mean negative cosine similarity of the heads, between 0 and 2; about 0.85 for a supported
        structure, about 0 for an absent one) of its *weakest pair* of modalities is at least this value:
        every pair of a structure's modalities shares its factors. Private structures are always kept:
        their positives are two views of the same row, which align even on noise. Structures of three or
        more modalities that fail this test after the first fit are dropped and the model is fitted
        again without them (``dropped_structures_``): a block of ``a+b+c`` earns part of its reward when
        only ``a`` and ``b`` agree, so while it is trained it can starve a true ``a+b`` block.
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
        pair of modalities, kept. Dropped structures come last, with their first fit's figures.
    private_ : dict of str to dict
        With ``private="residual"``, per private structure: ``coef`` (least-squares coefficients of the
        modality's standardised inputs on an intercept and its kept shared blocks), ``center`` and
        ``components`` (principal axes of the residual).
    dropped_structures_ : list of str
        Structures of three or more modalities dropped after the first fit (see ``prune_threshold``).
    """

    _losses = ("spectral", "infonce")

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
        self.prune_threshold = prune_threshold
        self.fusion = fusion
        self.private = private
        self.strict_missing = strict_missing
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.n_threads = n_threads

    # ------------------------------------------------------------------ parameter checks
    def _check_params(self) -> None:
        def bad(name, what):
            raise ValidationError(f"{type(self).__name__}: {name}={getattr(self, name)!r} is invalid; {what}")

        if not _is_int(self.embedding_dim) or self.embedding_dim < 1:
            bad("embedding_dim", "use a positive int")
        hidden = (self.hidden,) if _is_int(self.hidden) else self.hidden
        if not isinstance(hidden, (tuple, list)) or not all(_is_int(h) and h >= 1 for h in hidden):
            bad("hidden", "use a positive int or a tuple of positive ints")
        if self.loss not in self._losses:
            bad("loss", f"use one of {list(self._losses)}")
        if not _is_num(self.temperature) or self.temperature <= 0:
            bad("temperature", "use a positive number")
        for name in ("decorrelation", "group_penalty"):
            if not _is_num(getattr(self, name)) or getattr(self, name) < 0:
                bad(name, "use a number >= 0")
        if not _is_num(self.private_augment) or not 0 < self.private_augment < 1:
            bad("private_augment", "use a fraction in (0, 1)")
        if not _is_int(self.max_epochs) or self.max_epochs < 1:
            bad("max_epochs", "use a positive int")
        if not _is_int(self.batch_size) or self.batch_size < 2:
            bad("batch_size", "use an int >= 2")
        if not _is_num(self.lr) or self.lr <= 0:
            bad("lr", "use a positive number")
        if not _is_num(self.validation_fraction) or not 0 <= self.validation_fraction < 1:
            bad("validation_fraction", "use a fraction in [0, 1)")
        if self.patience is not None and (not _is_int(self.patience) or self.patience < 1):
            bad("patience", "use a positive int or None")
        if not _is_num(self.prune_threshold) or not 0 <= self.prune_threshold <= 2:
            bad("prune_threshold", "use a number in [0, 2]")
        if not _is_num(self.decorrelation_upward) or not 0 <= self.decorrelation_upward <= 1:
            bad("decorrelation_upward", "use a fraction in [0, 1]")
        if self.fusion not in ("factor", "mean"):
            bad("fusion", "use 'factor' or 'mean'")
        if self.private not in ("residual", "contrastive"):
            bad("private", "use 'residual' or 'contrastive'")
        if not isinstance(self.strict_missing, bool):
            bad("strict_missing", "use True or False")
        if not _is_int(self.nonlinear_decorrelation) or self.nonlinear_decorrelation < 0:
            bad("nonlinear_decorrelation", "use an int >= 0 (number of random features)")
        if self.n_threads is not None and (not _is_int(self.n_threads) or self.n_threads < 1):
            bad("n_threads", "use a positive int or None")
        if not isinstance(self.device, str):
            bad("device", "use a torch device string such as 'cpu' or 'cuda'")

    def _resolve_structures(self, modalities: list[str]) -> dict[str, int]:
        spec = self.structures
        if isinstance(spec, str) and spec == "all":
            return {s: int(self.embedding_dim) for s in all_structures(modalities)}
        if isinstance(spec, Mapping):
            items = list(spec.items())
        elif isinstance(spec, (list, tuple)):
            items = [(s, self.embedding_dim) for s in spec]
        else:
            raise ValidationError(
                f"structures={spec!r} is invalid; use 'all', a list of names like 'a+b', or a dict name -> dim"
            )
        if not items:
            raise ValidationError("structures is empty; name at least one structure or use 'all'")
        out: dict[str, int] = {}
        for name, dim in items:
            if not isinstance(name, str):
                raise ValidationError(f"structure names must be strings, got {name!r}")
            members = parse_structure(name, modalities)
            canon = "+".join(members)
            if not _is_int(dim) or dim < 1:
                raise ValidationError(f"structure {name!r} has dimension {dim!r}; use a positive int")
            if canon in out:
                raise ValidationError(f"structure {name!r} is listed twice")
            out[canon] = int(dim)
        order = all_structures(modalities)
        return {s: out[s] for s in order if s in out}

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

    def _seed(self) -> int:
        if _is_int(self.random_state):
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

    def _soft_normalize(self, h):
        # u = h / sqrt(|h|^2 + 1): like L2 normalisation for large heads, but a shrunk head gives a
        # small (uninformative) embedding, so the group penalty is not undone by scale invariance.
        return h / (h.pow(2).sum(-1, keepdim=True) + 1.0).sqrt()

    def _embeddings(self, outs):
        """dict m -> dict S -> soft-normalised embedding (n, dim_S)."""
        emb = {}
        for m, out in zip(self.modalities_, outs, strict=True):
            emb[m] = {s: self._soft_normalize(out[:, a:b]) for s, a, b in self._layout_[m]}
        return emb

    def _objective(self, net, xs, mask, generator=None, with_penalty=True):
        """Total objective and its alignment part for one batch.

        xs: list of (n, d_m); mask: (M, n) bool.
        """
        import torch

        outs = net(xs)
        emb = self._embeddings(outs)
        align = xs[0].new_zeros(())
        mods = self.modalities_
        aug = None
        for s in self.candidates_:
            members = parse_structure(s, mods)
            if len(members) >= 2:
                idx = [mods.index(m) for m in members]
                z = torch.stack([emb[m][s] for m in members])  # (k, n, dim)
                align = align + self._align_loss(z, self._alignment_mask(s, members, mask[idx]))
            elif generator is not None:  # private: two feature-masked views of the same rows
                if aug is None:
                    aug = self._augmented_views(net, xs, generator)
                m = members[0]
                i = mods.index(m)
                z = torch.stack([aug[0][m][s], aug[1][m][s]])  # (2, n, dim)
                align = align + self._align_loss(z, mask[[i, i]])
        total = align
        if self.decorrelation > 0:
            dec = xs[0].new_zeros(())
            for i, m in enumerate(mods):
                blocks = list(emb[m].values())
                if len(blocks) >= 2:
                    prio = [len(parse_structure(s, mods)) for s, _a, _b in self._layout_[m]]
                    dec = dec + self._decor(blocks, mask[i], priority=prio)
                    if self.nonlinear_decorrelation > 0:
                        dec = dec + self._nonlinear_decor(m, blocks, prio, mask[i])
            total = total + self.decorrelation * dec
        if with_penalty and self.group_penalty > 0:
            total = total + self.group_penalty * self._group(self._head_groups(net))
        return total, align

    def _alignment_mask(self, s, members, mask):
        """Rows (k, n) that align structure ``s``.

        With ``strict_missing``, a row that observes only a proper subset of ``s`` which is itself a
        candidate structure is left out: its agreement is evidence for that smaller structure, and using
        it for ``s`` would teach ``s``'s heads the smaller structure's factors.
        """
        import torch

        if not self.strict_missing or bool(mask.all()):
            return mask
        k = len(members)
        bits = (mask.to(torch.int64) * (2 ** torch.arange(k, device=mask.device)).unsqueeze(1)).sum(0)
        sub = self._sub_bits.get(s)
        if sub is None:
            sub = []
            for t in self.candidates_:
                tm = parse_structure(t, self.modalities_)
                if t != s and len(tm) >= 2 and set(tm) <= set(members):
                    sub.append(sum(2 ** members.index(m) for m in tm))
            sub = torch.tensor(sub, dtype=torch.int64, device=mask.device)
            self._sub_bits[s] = sub
        if sub.numel() == 0:
            return mask
        ambiguous = torch.isin(bits, sub)
        return mask & ~ambiguous.unsqueeze(0)

    def _nonlinear_decor(self, m, blocks, prio, rows):
        """Cross-covariance of each block with random Fourier features of every larger structure's block.

        Driving it to zero makes a block's conditional mean given a larger structure's block zero, so the
        block cannot carry nonlinear functions of that structure's factors either.
        """
        import torch

        total = blocks[0].new_zeros(())
        rows = rows.to(torch.bool)
        for s, hs in enumerate(blocks):
            higher = hs.detach()[rows]
            if higher.shape[0] < 2:
                continue
            higher = (higher - higher.mean(0)) / (higher.std(0) + 1e-6)
            w, b = self._rff_params(m, s, hs.shape[1])
            phi = torch.cos(higher @ w + b)  # (n_obs, D)
            for t, ht in enumerate(blocks):
                if prio[t] < prio[s]:
                    total = total + self._decor([phi, ht[rows]])
        return total

    def _rff_params(self, m, s, d):
        import torch

        key = (m, s)
        if key not in self._rff_cache:
            g = torch.Generator().manual_seed(self._seed_value + 7919 * (1 + self.modalities_.index(m)) + s)
            w = torch.randn(d, int(self.nonlinear_decorrelation), generator=g, dtype=torch.float32)
            b = 2 * np.pi * torch.rand(int(self.nonlinear_decorrelation), generator=g, dtype=torch.float32)
            self._rff_cache[key] = (w.to(self.device), b.to(self.device))
        return self._rff_cache[key]

    def _augmented_views(self, net, xs, generator):
        import torch

        views = []
        for _ in range(2):
            xa = []
            for x in xs:
                keep = torch.rand(x.shape, generator=generator).to(x.device) >= self.private_augment
                xa.append(x * keep / (1.0 - self.private_augment))
            views.append(self._embeddings(net(xa)))
        return views

    def _head_groups(self, net):
        groups = []
        for i, m in enumerate(self.modalities_):
            head = net.heads[i]
            for _s, a, b in self._layout_[m]:
                groups.append(_head_group(head.weight[a:b], head.bias[a:b]))
        return groups

    def _head_norms(self) -> dict[tuple[str, str], float]:
        import torch

        out = {}
        with torch.no_grad():
            for i, m in enumerate(self.modalities_):
                w = self.net_.heads[i].weight
                for s, a, b in self._layout_[m]:
                    out[(m, s)] = float(w[a:b].norm())
        return out

    def _make_losses(self):
        from hcl.losses import DecorrelationLoss, GroupPenalty, InfoNCELoss, SpectralLoss

        if self.loss == "spectral":
            self._align_loss = SpectralLoss(normalize=False)
        else:
            self._align_loss = InfoNCELoss(temperature=float(self.temperature), normalize=False)
        self._decor = DecorrelationLoss(upward=float(self.decorrelation_upward))
        self._rff_cache = {}
        self._sub_bits = {}
        self._group = GroupPenalty()

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

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit the encoders on ``X``.

        Parameters
        ----------
        X : mapping of str to array (n, d_m)
            One array per modality, rows aligned; a row of NaN means the modality is missing there.
        y : ignored

        Returns
        -------
        self
        """
        import torch

        self._check_params()
        X = check_X(X, allow_nan_rows=True, min_rows=4)
        modalities = list(X)
        if len(modalities) < 1:
            raise ValidationError("X needs at least one modality")
        self._seed_value = self._seed()
        old_threads = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._seed_value)
                self._fit(X, modalities, self._resolve_structures(modalities), self.checkpoint_dir)
                self._refit_without_absent_triples(X, modalities)
            self._fit_block_models(X)
        finally:
            if self.n_threads is not None:
                torch.set_num_threads(old_threads)
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

    def fit_transform(self, X, y=None) -> dict[str, np.ndarray]:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    def _fit(self, X: dict[str, np.ndarray], modalities: list[str], candidates, checkpoint_dir) -> None:
        import torch

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
        self._make_losses()
        seed = self._seed_value
        n = next(iter(X.values())).shape[0]
        rng = np.random.default_rng(seed)
        perm = rng.permutation(n)
        n_val = int(round(self.validation_fraction * n)) if self.validation_fraction > 0 else 0
        if n_val >= n - 2:
            n_val = 0
        val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        xs, mask = self._prepare(X)
        x_tr = [x[tr_idx] for x in xs]
        m_tr = mask[:, tr_idx]
        x_va = [x[val_idx] for x in xs] if n_val else None
        m_va = mask[:, val_idx] if n_val else None

        hidden = (self.hidden,) if _is_int(self.hidden) else tuple(int(h) for h in self.hidden)
        head_dims = [[b - a for _s, a, b in self._layout_[m]] for m in modalities]
        self._hidden_ = hidden
        net = _build_net([self.dims_[m] for m in modalities], hidden, head_dims).to(self.device)
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        gen = torch.Generator().manual_seed(seed + 1)

        history: list[float] = []
        val_history: list[float] = []
        best_val, best_state, bad_epochs, start_epoch, stopped = np.inf, None, 0, 0, False
        fingerprint = None
        ckpt_path = None
        if checkpoint_dir is not None:
            ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE
            fingerprint = self._fingerprint(X)
            if ckpt_path.exists():
                # safe: weights_only=True unpickles only tensors and plain containers, never code
                state = torch.load(ckpt_path, map_location=self.device, weights_only=True)
                if state.get("fingerprint") != fingerprint:
                    raise ValidationError(
                        f"checkpoint {ckpt_path} was written by a fit with other data or parameters; "
                        "use an empty checkpoint_dir or the same X and parameters to resume"
                    )
                net.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                gen.set_state(state["generator"])
                torch.set_rng_state(state["torch_rng"])
                history = [float(v) for v in state["history"]]
                val_history = [float(v) for v in state["val_history"]]
                best_val = float(state["best_val"])
                best_state = state["best_model"] or None
                bad_epochs = int(state["bad_epochs"])
                start_epoch = int(state["epoch"])
                stopped = bool(state["stopped"])
                logger.info("resuming HCL fit from %s at epoch %d", ckpt_path, start_epoch)

        n_tr = len(tr_idx)
        bs = min(int(self.batch_size), n_tr)
        n_batches = max(1, n_tr // bs)  # drop the ragged last batch (spectral negatives need a full batch)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=int(self.max_epochs),
            initial=min(start_epoch, int(self.max_epochs)),
            disable=not self.verbose,
            desc="HCL",
            unit="epoch",
            leave=False,
        )
        epoch = start_epoch
        try:
            while epoch < int(self.max_epochs) and not stopped:
                net.train()
                order = torch.randperm(n_tr, generator=gen)
                total = 0.0
                for b in range(n_batches):
                    idx = order[b * bs : (b + 1) * bs].to(self.device)
                    loss, _ = self._objective(net, [x[idx] for x in x_tr], m_tr[:, idx], generator=gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach())
                history.append(total / n_batches)
                epoch += 1
                if n_val:
                    net.eval()
                    with torch.no_grad():  # in chunks of the batch size, so memory stays bounded
                        vgen = torch.Generator().manual_seed(seed + 2)
                        parts = []
                        for c0 in range(0, n_val, bs):
                            c1 = n_val if n_val - c0 < 2 * bs else c0 + bs  # no ragged small chunk
                            vloss, _ = self._objective(
                                net, [x[c0:c1] for x in x_va], m_va[:, c0:c1], generator=vgen
                            )
                            parts.append((float(vloss), c1 - c0))
                            if c1 == n_val:
                                break
                    v = sum(a * w for a, w in parts) / sum(w for _a, w in parts)
                    val_history.append(v)
                    if not np.isfinite(best_val) or v < best_val - 1e-4 * max(1.0, abs(best_val)):
                        best_val, bad_epochs = v, 0
                        best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
                    else:
                        bad_epochs += 1
                    if self.patience is not None and bad_epochs >= int(self.patience):
                        stopped = True
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]:.4f}", val=f"{val_history[-1]:.4f}" if n_val else "-")
                if ckpt_path is not None:
                    _atomic_torch_save(
                        {
                            "fingerprint": fingerprint,
                            "epoch": epoch,
                            "model": net.state_dict(),
                            "optimizer": opt.state_dict(),
                            "generator": gen.get_state(),
                            "torch_rng": torch.get_rng_state(),
                            "history": history,
                            "val_history": val_history,
                            "best_val": float(best_val),
                            "best_model": best_state or {},
                            "bad_epochs": bad_epochs,
                            "stopped": stopped,
                        },
                        ckpt_path,
                    )
                self._epoch_end(epoch)
        finally:
            bar.close()
        if not stopped and (self.patience is not None and n_val):
            warnings.warn(
                f"HCL stopped at max_epochs={self.max_epochs} before early stopping triggered "
                f"(validation objective {val_history[-1]:.4f}); raise max_epochs or lr",
                ConvergenceWarning,
                stacklevel=3,
            )
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.net_ = net
        self.history_ = history
        self.val_history_ = val_history
        self.n_epochs_ = epoch
        self._finish(x_va if n_val else x_tr, m_va if n_val else m_tr)

    def _fit_block_models(self, X) -> None:
        """Fusion and private models of the kept structures, from the final network's heads on the fit rows
        (once, after any refit: a first fit that is refitted would only throw them away)."""
        xs, mask = self._prepare(X)
        heads, observed = self._head_outputs(xs), mask.cpu().numpy()
        self._fit_fusion(heads, observed)
        self._fit_private(xs, heads, observed)

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

    def _fit_fusion(self, heads, observed) -> None:
        """Per kept shared structure, a factor model of its member heads (see ``fusion``)."""
        self.fusion_ = {}
        if self.fusion != "factor":
            return
        from sklearn.decomposition import FactorAnalysis
        from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

        mods = self.modalities_
        for s, dim in self.structure_.items():
            members = parse_structure(s, mods)
            if len(members) < 2:
                continue
            rows = observed[[mods.index(m) for m in members]].all(axis=0)
            H = np.hstack([heads[m][s][rows] for m in members])
            if rows.sum() < max(50, 2 * H.shape[1]):
                logger.info("HCL fusion: %s has %d complete rows; its heads are averaged", s, rows.sum())
                continue
            # sklearn's 1000 EM iterations fell short on a demo's codes+notes (it needed 1056, 0.7 s)
            fa = FactorAnalysis(n_components=dim, svd_method="lapack", random_state=0, max_iter=_FUSION_MAX_ITER)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SklearnConvergenceWarning)  # said below, naming the structure
                fa.fit(H)
            if fa.n_iter_ >= _FUSION_MAX_ITER:
                warnings.warn(
                    f"HCL fusion: the factor model of {s} did not converge in {_FUSION_MAX_ITER} EM "
                    "iterations; its block is the last iterate",
                    ConvergenceWarning,
                    stacklevel=2,
                )
            self.fusion_[s] = {
                "mean": fa.mean_,
                "loadings": fa.components_.T.copy(),  # (sum of member dims, dim)
                "noise": np.maximum(fa.noise_variance_, 1e-6 * float(np.var(H, axis=0).mean()) + 1e-12),
            }

    def _shared_blocks(self, heads, observed) -> dict[str, np.ndarray]:
        """Every kept shared structure's block, combined from its member heads."""
        out = {}
        for s in self.structure_:
            members = parse_structure(s, self.modalities_)
            if len(members) >= 2:
                out[s] = self._combine(s, members, heads, observed)
        return out

    def _shared_design(self, m, shared, n_rows) -> np.ndarray:
        """Intercept + the kept shared blocks of modality ``m``."""
        cols = [b for s, b in shared.items() if m in parse_structure(s, self.modalities_)]
        return np.hstack([np.ones((n_rows, 1)), *cols])

    def _fit_private(self, xs, heads, observed) -> None:
        """Per kept private structure, the principal axes of its modality's residual (see ``private``)."""
        self.private_ = {}
        if self.private != "residual":
            return
        shared = self._shared_blocks(heads, observed)
        mods = self.modalities_
        for s, dim in self.structure_.items():
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
            self.private_[s] = {"coef": coef, "center": center, "components": components}

    def _residual_block(self, s, m, xs, shared, observed) -> np.ndarray:
        params = self.private_[s]
        i = self.modalities_.index(m)
        x = xs[i].cpu().numpy().astype(np.float64)
        resid = x - self._shared_design(m, shared, len(x)) @ params["coef"]
        return ((resid - params["center"]) @ params["components"]) * observed[i][:, None]

    def _combine(self, s, members, heads, observed) -> np.ndarray:
        """Block ``s`` from the member heads: the factor model's posterior mean, or the mean of the heads."""
        if s in self.fusion_:
            return self._fuse(s, members, heads, observed)
        acc = np.zeros((observed.shape[1], self.candidates_[s]))
        cnt = np.zeros((observed.shape[1], 1))
        for m in members:
            w = observed[self.modalities_.index(m)].astype(np.float64)[:, None]
            acc += heads[m][s] * w
            cnt += w
        return acc / np.maximum(cnt, 1.0)

    def _fuse(self, s, members, heads, observed) -> np.ndarray:
        """Posterior mean of structure ``s``'s factors given the member heads each row has."""
        params = self.fusion_[s]
        dim = params["loadings"].shape[1]
        widths = [heads[m][s].shape[1] for m in members]
        offs = np.cumsum([0] + widths)
        H = np.hstack([heads[m][s] for m in members])
        obs = np.stack([observed[self.modalities_.index(m)] for m in members])  # (k, n)
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

    def _epoch_end(self, epoch: int) -> None:
        """Hook called after each epoch (after the checkpoint is written); does nothing by default."""

    def _finish(self, xs, mask) -> None:
        """Alignment per structure on held-out rows, head norms, pruning, summary records."""
        import torch

        with torch.no_grad():
            emb = self._embeddings(self.net_(xs))
            gen = torch.Generator().manual_seed(self._seed_value + 3)
            aug = self._augmented_views(self.net_, xs, gen)
        from hcl.losses import SpectralLoss

        spectral = SpectralLoss(normalize=True)
        mods = self.modalities_
        norms = self._head_norms()
        struct_norm = {
            s: float(np.mean([norms[(m, s)] for m in parse_structure(s, mods)])) for s in self.candidates_
        }
        top = max(struct_norm.values()) if struct_norm else 0.0
        records = []
        kept = {}
        for s, dim in self.candidates_.items():
            members = parse_structure(s, mods)
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
            rel = struct_norm[s] / top if top > 0 else 0.0
            # every pair of a structure's modalities shares its factors, so its weakest pair decides
            keep = len(members) < 2 or weakest >= float(self.prune_threshold)
            if keep:
                kept[s] = dim
            rec = {"structure": s, "kind": kind(s, mods), "dim": dim}
            for m in mods:
                rec[f"head_norm_{m}"] = norms.get((m, s), float("nan"))
            rec.update({"relative_norm": rel, "alignment": gap, "weakest_pair_alignment": weakest, "kept": keep})
            records.append(rec)
        if not kept:  # nothing supported: keep the best-aligned structure rather than nothing
            best = max(records, key=lambda r: r["alignment"])["structure"]
            kept[best] = self.candidates_[best]
            for r in records:
                r["kept"] = r["structure"] == best
        self.structure_ = kept
        self.summary_records_ = records

    @property
    def summary(self):
        """pandas DataFrame: one row per candidate structure (see the class docstring)."""
        self._check_fitted()
        import pandas as pd

        return pd.DataFrame(self.summary_records_)

    def print_summary(self) -> str:
        """Render :attr:`summary` as text, log it at INFO level and return it."""
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
        import torch

        self._check_fitted()
        X = check_X(X, modalities=self.modalities_, dims=self.dims_, allow_nan_rows=True)
        names = list(self.structure_) if structures is None else list(structures)
        for s in names:
            if s not in self.candidates_:
                raise ValidationError(f"structure {s!r} was not trained; trained: {list(self.candidates_)}")
        old = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        try:
            xs, mask = self._prepare(X)
            # raw head outputs: the soft normalisation used in training discards the radius of the
            # latent factors, which a downstream linear model needs
            heads = self._head_outputs(xs)
            observed = mask.cpu().numpy()
            # each kept shared block once: private residuals need those of their modality too
            shared = self._shared_blocks(heads, observed)
            out = {}
            for s in names:
                members = parse_structure(s, self.modalities_)
                if s in self.private_:
                    out[s] = self._residual_block(s, members[0], xs, shared, observed)
                elif s in shared:
                    out[s] = shared[s]
                else:
                    out[s] = self._combine(s, members, heads, observed)
        finally:
            if self.n_threads is not None:
                torch.set_num_threads(old)
        return out

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict:
        params = self.get_params()
        params["checkpoint_dir"] = None if self.checkpoint_dir is None else str(self.checkpoint_dir)
        rs = params["random_state"]
        params["random_state"] = int(rs) if _is_int(rs) else None
        if isinstance(params["hidden"], tuple):
            params["hidden"] = list(params["hidden"])
        return {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "params": params,
            "modalities": self.modalities_,
            "dims": self.dims_,
            "candidates": self.candidates_,
            "structure": self.structure_,
            "hidden": list(self._hidden_),
            "seed": self._seed_value,
            "history": self.history_,
            "val_history": self.val_history_,
            "n_epochs": self.n_epochs_,
            "summary": self.summary_records_,
            "dropped_structures": self.dropped_structures_,
        }

    def save(self, path) -> Path:
        """Write the fitted model to folder ``path``: ``config.json`` and ``weights.safetensors``.

        The folder is written under a temporary name and renamed, so a crash never leaves half a model.
        Loading never unpickles objects (:meth:`load`).
        """
        from safetensors.torch import save_file

        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()}
            import torch

            for m in self.modalities_:
                tensors[f"mean.{m}"] = torch.as_tensor(self.mean_[m])
                tensors[f"scale.{m}"] = torch.as_tensor(self.scale_[m])
            for kind_, fitted in (("fusion", self.fusion_), ("private", self.private_)):
                for st, params in fitted.items():
                    for key, value in params.items():
                        tensors[f"{kind_}.{st}.{key}"] = torch.as_tensor(np.ascontiguousarray(value))
            save_file(tensors, str(tmp / WEIGHTS_FILE))
            (tmp / CONFIG_FILE).write_text(
                json.dumps(self._config(), indent=2, default=float), encoding="utf-8"
            )
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
                os.replace(path, old / "x")
                os.replace(tmp, path)
                import shutil

                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save` (JSON config + safetensors; nothing is unpickled)."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg_file, w_file = path / CONFIG_FILE, path / WEIGHTS_FILE
        for f in (cfg_file, w_file):
            if not f.is_file():
                raise ValidationError(f"{f} not found; pass a folder written by {cls.__name__}.save()")
        try:
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{cfg_file} is not valid JSON ({exc}); save the model again") from None
        if cfg.get("format_version") != FORMAT_VERSION:
            raise ValidationError(
                f"{cfg_file}: format_version {cfg.get('format_version')!r} is not {FORMAT_VERSION}; "
                "save the model again with this version"
            )
        params = dict(cfg["params"])
        if isinstance(params.get("hidden"), list):
            params["hidden"] = tuple(params["hidden"])
        valid = cls._param_names()
        model = cls(**{k: v for k, v in params.items() if k in valid})
        model.modalities_ = list(cfg["modalities"])
        model.dims_ = {m: int(d) for m, d in cfg["dims"].items()}
        model.candidates_ = {s: int(d) for s, d in cfg["candidates"].items()}
        model.structure_ = {s: int(d) for s, d in cfg["structure"].items()}
        model._hidden_ = tuple(cfg["hidden"])
        model._seed_value = int(cfg["seed"])
        model.history_ = list(cfg["history"])
        model.val_history_ = list(cfg["val_history"])
        model.n_epochs_ = int(cfg["n_epochs"])
        model.summary_records_ = list(cfg["summary"])
        model.dropped_structures_ = list(cfg.get("dropped_structures", []))
        model._layout_ = model._layout()
        model._make_losses()
        tensors = load_file(str(w_file))
        model.mean_ = {m: tensors[f"mean.{m}"].numpy() for m in model.modalities_}
        model.scale_ = {m: tensors[f"scale.{m}"].numpy() for m in model.modalities_}
        model.fusion_, model.private_ = {}, {}
        for key, value in tensors.items():
            kind_, _, rest = key.partition(".")
            if kind_ in ("fusion", "private"):
                st, name = rest.rsplit(".", 1)
                getattr(model, f"{kind_}_").setdefault(st, {})[name] = value.numpy().astype(np.float64)
        head_dims = [[b - a for _s, a, b in model._layout_[m]] for m in model.modalities_]
        net = _build_net([model.dims_[m] for m in model.modalities_], model._hidden_, head_dims)
        state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        net.load_state_dict(state)
        net.to(model.device)
        net.eval()
        model.net_ = net
        return model


def _head_group(weight, bias):
    """One parameter group: a head's weight rows (dim, hidden) and its bias (dim,) as one flat tensor."""
    import torch

    return torch.cat([weight.reshape(-1), bias.reshape(-1)])

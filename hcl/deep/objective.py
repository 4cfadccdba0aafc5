"""The training objective of :class:`hcl.deep.HCL` as a :class:`torch.nn.Module`.

For every structure ``S`` the heads of its modalities are aligned by a structure-aware contrastive loss
(spectral or InfoNCE); a private structure aligns two feature-masked views of the same row. A
decorrelation term keeps one modality's heads for different structures apart (linearly, and through
random Fourier features of the larger structure's block), and a group penalty shrinks whole heads.

Importing this module imports torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hcl.losses import DecorrelationLoss, GroupPenalty, InfoNCELoss, SpectralLoss
from hcl.structures import parse_structure

__all__ = ["HCLObjective", "soft_normalize"]


def soft_normalize(h: torch.Tensor) -> torch.Tensor:
    """``h / sqrt(|h|^2 + 1)`` row-wise.

    Like L2 normalisation for large heads, but a shrunk head gives a small (uninformative) embedding, so
    the group penalty is not undone by scale invariance.

    Parameters
    ----------
    h : torch.Tensor (n, d)

    Returns
    -------
    torch.Tensor (n, d)
    """
    return h / (h.pow(2).sum(-1, keepdim=True) + 1.0).sqrt()


def _head_group(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """One parameter group: a head's weight rows (dim, hidden) and its bias (dim,) as one flat tensor."""
    return torch.cat([weight.reshape(-1), bias.reshape(-1)])


class HCLObjective(nn.Module):
    """Alignment + decorrelation + group penalty of one batch, for a :class:`~hcl.deep.network.HeadNetwork`.

    Parameters
    ----------
    modalities, candidates, layout
        The fitted modality order (list of str), the trained structures with their dimensions (dict of
        str to int) and, per modality, the (structure, start, stop) slices of its head output.
    loss : {"spectral", "infonce"}
    temperature : float
    decorrelation, nonlinear_decorrelation, decorrelation_upward, group_penalty, private_augment
        As in :class:`hcl.deep.HCL`.
    strict_missing : bool
        As in :class:`hcl.deep.HCL` (see :meth:`alignment_mask`).
    seed : int
        Seeds the random Fourier features.
    device : str

    Shape
    -----
    - net : the network; xs : list of M tensors (n, d_m); mask : (M, n) bool.
    - output : (total, alignment), two scalars.
    """

    def __init__(
        self,
        modalities: list[str],
        candidates: dict[str, int],
        layout: dict[str, list[tuple[str, int, int]]],
        *,
        loss: str,
        temperature: float,
        decorrelation: float,
        nonlinear_decorrelation: int,
        decorrelation_upward: float,
        group_penalty: float,
        private_augment: float,
        strict_missing: bool,
        seed: int,
        device: str = "cpu",
    ):
        super().__init__()
        self.modalities = list(modalities)
        self.candidates = dict(candidates)
        self.layout = layout
        if loss == "spectral":
            self.align_loss = SpectralLoss(normalize=False)
        else:
            self.align_loss = InfoNCELoss(temperature=float(temperature), normalize=False)
        self.decor = DecorrelationLoss(upward=float(decorrelation_upward))
        self.group = GroupPenalty()
        self.decorrelation = decorrelation
        self.nonlinear_decorrelation = nonlinear_decorrelation
        self.group_penalty = group_penalty
        self.private_augment = private_augment
        self.strict_missing = strict_missing
        self.seed = seed
        self.device = device
        self._rff_cache: dict = {}
        self._sub_bits: dict = {}

    def embeddings(self, outs: list[torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """Soft-normalised embedding of every head: dict m -> dict S -> (n, dim_S).

        Parameters
        ----------
        outs : list of torch.Tensor
            The network's output, one tensor per modality.

        Returns
        -------
        dict of str to dict of str to torch.Tensor
        """
        return self._embed(outs)[0]

    def _embed(self, outs):
        """Embeddings (as :meth:`embeddings`) and, per modality, all its heads' side by side (or None).

        When a modality's heads have one width they are normalised in one go, through a (n, heads, width)
        view; the values are those of normalising each head on its own.
        """
        emb, full = {}, []
        for m, out in zip(self.modalities, outs, strict=True):
            layout = self.layout[m]
            widths = {b - a for _s, a, b in layout}
            if len(widths) == 1 and layout[-1][2] == out.shape[1]:
                d = widths.pop()
                e = soft_normalize(out.view(out.shape[0], -1, d)).view(out.shape)
                emb[m] = {s: e[:, a:b] for s, a, b in layout}
                full.append(e)
            else:
                emb[m] = {s: soft_normalize(out[:, a:b]) for s, a, b in layout}
                full.append(None)
        return emb, full

    def forward(self, net, xs, mask, generator=None, with_penalty=True):
        """Total objective and its alignment part for one batch.

        Parameters
        ----------
        net : HeadNetwork
        xs : list of torch.Tensor (n, d_m)
        mask : torch.Tensor (M, n) bool
        generator : torch.Generator, optional
            Draws the feature masks of private structures; without it private structures add nothing.
        with_penalty : bool, default True
            Add the group penalty.

        Returns
        -------
        total, align : torch.Tensor
            Scalars.
        """
        emb, full = self._embed(net(xs))
        align = self._alignment(net, xs, mask, emb, generator)
        total = align
        if self.decorrelation > 0:
            total = total + self.decorrelation * self._decorrelation(xs, emb, mask, full)
        if with_penalty and self.group_penalty > 0:
            total = total + self.group_penalty * self.group(self.head_groups(net))
        return total, align

    def _alignment(self, net, xs, mask, emb, generator):
        if not isinstance(self.align_loss, SpectralLoss):
            return self._alignment_loop(net, xs, mask, emb, generator)
        # spectral: the structures of one size and dimension in one batched call (privates with the pairs)
        mods = self.modalities
        views, masks = {}, {}
        aug = None
        for s in self.candidates:
            members = parse_structure(s, mods)
            if len(members) >= 2:
                idx = [mods.index(m) for m in members]
                key = (len(members), self.candidates[s])
                views.setdefault(key, []).extend(emb[m][s] for m in members)
                masks.setdefault(key, []).append(self.alignment_mask(s, members, mask[idx]))
            elif generator is not None:  # private: two feature-masked views of the same rows
                if aug is None:
                    aug = self.augmented_views(net, xs, generator, structures=self._private())
                m = members[0]
                i = mods.index(m)
                views.setdefault((2, self.candidates[s]), []).extend([aug[0][m][s], aug[1][m][s]])
                masks.setdefault((2, self.candidates[s]), []).append(mask[[i, i]])
        align = xs[0].new_zeros(())
        for (k, dim), zs in views.items():
            z = torch.stack(zs).view(-1, k, *zs[0].shape)  # (structures, k, n, dim)
            align = align + self.align_loss.batched(z, torch.stack(masks[(k, dim)]))
        return align

    def _alignment_loop(self, net, xs, mask, emb, generator):
        align = xs[0].new_zeros(())
        mods = self.modalities
        aug = None
        for s in self.candidates:
            members = parse_structure(s, mods)
            if len(members) >= 2:
                idx = [mods.index(m) for m in members]
                z = torch.stack([emb[m][s] for m in members])  # (k, n, dim)
                align = align + self.align_loss(z, self.alignment_mask(s, members, mask[idx]))
            elif generator is not None:  # private: two feature-masked views of the same rows
                if aug is None:
                    aug = self.augmented_views(net, xs, generator, structures=self._private())
                m = members[0]
                i = mods.index(m)
                z = torch.stack([aug[0][m][s], aug[1][m][s]])  # (2, n, dim)
                align = align + self.align_loss(z, mask[[i, i]])
        return align

    def _decorrelation(self, xs, emb, mask, full=None):
        """Linear and nonlinear decorrelation of every modality's blocks, each from one stacked product."""
        if self._batchable(full, mask):
            return self._batched_decorrelation(torch.stack(full), mask)
        dec = xs[0].new_zeros(())
        for i, m in enumerate(self.modalities):
            blocks = list(emb[m].values())
            if len(blocks) < 2:
                continue
            widths, prio = self._block_layout(m)
            H = full[i] if full is not None and full[i] is not None else torch.cat(blocks, dim=1)
            H = H[mask[i].to(torch.bool)]  # (n_obs, D)
            if H.shape[0] == 0:
                continue
            Hc = H - H.mean(0, keepdim=True)
            dec = dec + self.decor.stacked(Hc, widths, prio)
            if self.nonlinear_decorrelation > 0 and H.shape[0] >= 2:
                dec = dec + self._nonlinear_decor(m, H.detach(), Hc, widths, prio)
        return dec

    def _batchable(self, full, mask) -> bool:
        """Whether all modalities' blocks can be decorrelated at once (one layout of equal widths)."""
        if full is None or any(f is None for f in full):
            return False
        key = "batchable"
        if key not in self._sub_bits:
            layouts = {tuple(map(tuple, self._block_layout(m))) for m in self.modalities}
            widths, prio = self._block_layout(self.modalities[0])
            self._sub_bits[key] = len(layouts) == 1 and len(set(widths)) == 1 and len(prio) >= 2
        return self._sub_bits[key] and bool(mask.sum(1).min() >= 2)

    def _batched_decorrelation(self, E, mask):
        """Decorrelate all modalities' blocks with batched products (rows a modality lacks weigh 0).

        Equal to :meth:`_decorrelation`'s loop over modalities (the same sums, in another order).

        Parameters
        ----------
        E : torch.Tensor (M, n, D)
            Every modality's embeddings side by side.
        mask : torch.Tensor (M, n) bool
        """
        widths, prio = self._block_layout(self.modalities[0])
        w = mask.to(E.dtype).unsqueeze(-1)  # (M, n, 1)
        cnt = w.sum(1, keepdim=True)  # (M, 1, 1)
        Hc = (E - (E * w).sum(1, keepdim=True) / cnt) * w
        C = Hc.transpose(1, 2) @ Hc.detach() / cnt  # gradient through the left factor (see decor.stacked)
        Cd = C.detach()
        upper, gain = self.decor._pair_weights(tuple(widths), prio, E)
        surrogate = (gain * Cd * C).sum()
        dec = (upper * Cd * Cd).sum() + (surrogate - surrogate.detach())
        if self.nonlinear_decorrelation <= 0:
            return dec
        higher = E.detach()
        dev = higher - (higher * w).sum(1, keepdim=True) / cnt
        std = ((dev * w).pow(2).sum(1, keepdim=True) / (cnt - 1)).sqrt()
        Z = dev / (std + 1e-6)
        n, d = E.shape[1], widths[0]
        for cols, lower, W, b in self._batched_rff(widths, prio):
            S = W.shape[1]
            z = Z[:, :, cols].reshape(len(self.modalities), n, S, d)
            phi = torch.cos(torch.einsum("mnsd,msdf->mnsf", z, W).reshape(len(self.modalities), n, -1) + b)
            phi = (phi - (phi * w).sum(1, keepdim=True) / cnt) * w
            c = phi.transpose(1, 2) @ Hc[:, :, lower] / cnt
            dec = dec + (c * c).sum()
        return dec

    def _batched_rff(self, widths, prio):
        """Random Fourier features of all modalities, per structure size that has smaller blocks.

        Each entry: its blocks' columns, the smaller blocks' columns, and every modality's frequencies
        (M, S, d, F) and phases (M, 1, S * F) of its blocks.
        """
        key = "batched"
        if key not in self._rff_cache:
            groups = []
            for sources, lower in self._rff_groups(self.modalities[0], widths, prio):
                offs = np.cumsum([0, *widths])
                cols = [c for s in sources for c in range(offs[s], offs[s + 1])]
                params = [[self._rff_params(m, s, widths[s]) for s in sources] for m in self.modalities]
                W = torch.stack([torch.stack([w for w, _b in ps]) for ps in params])
                b = torch.stack([torch.cat([b for _w, b in ps]) for ps in params]).unsqueeze(1)
                groups.append((torch.tensor(cols, dtype=torch.long, device=self.device), lower, W, b))
            self._rff_cache[key] = groups
        return self._rff_cache[key]

    def _block_layout(self, m):
        """Widths and priorities (structure sizes) of modality ``m``'s blocks, in layout order."""
        layout = self.layout[m]
        return [b - a for _s, a, b in layout], [
            len(parse_structure(s, self.modalities)) for s, _a, _b in layout
        ]

    def alignment_mask(self, s: str, members, mask: torch.Tensor) -> torch.Tensor:
        """Rows (k, n) that align structure ``s``.

        With ``strict_missing``, a row that observes only a proper subset of ``s`` which is itself a
        candidate structure is left out: its agreement is evidence for that smaller structure, and using
        it for ``s`` would teach ``s``'s heads the smaller structure's factors.

        Parameters
        ----------
        s : str
            The structure.
        members : sequence of str
            Its modalities, in the fitted order.
        mask : torch.Tensor (k, n) bool
            Observed members per row.

        Returns
        -------
        torch.Tensor (k, n) bool
        """
        if not self.strict_missing or bool(mask.all()):
            return mask
        k = len(members)
        bits = (mask.to(torch.int64) * (2 ** torch.arange(k, device=mask.device)).unsqueeze(1)).sum(0)
        sub = self._sub_bits.get(s)
        if sub is None:
            sub = []
            for t in self.candidates:
                tm = parse_structure(t, self.modalities)
                if t != s and len(tm) >= 2 and set(tm) <= set(members):
                    sub.append(sum(2 ** members.index(m) for m in tm))
            sub = torch.tensor(sub, dtype=torch.int64, device=mask.device)
            self._sub_bits[s] = sub
        if sub.numel() == 0:
            return mask
        ambiguous = torch.isin(bits, sub)
        return mask & ~ambiguous.unsqueeze(0)

    def _nonlinear_decor(self, m, higher, Hc, widths, prio):
        """Cross-covariance of each block with random Fourier features of every larger structure's block.

        Driving it to zero makes a block's conditional mean given a larger structure's block zero, so the
        block cannot carry nonlinear functions of that structure's factors either. ``higher`` is the
        blocks side by side, detached (no gradient reaches a larger structure through its features), and
        ``Hc`` the centred blocks. The blocks of one structure size share their smaller blocks, so their
        features are decorrelated from those in one product.
        """
        higher = (higher - higher.mean(0)) / (higher.std(0) + 1e-6)
        offs = np.cumsum([0, *widths])
        total = Hc.new_zeros(())
        for sources, lower in self._rff_groups(m, widths, prio):
            feats = []
            for s in sources:
                w, b = self._rff_params(m, s, widths[s])
                feats.append(torch.cos(higher[:, offs[s] : offs[s + 1]] @ w + b))
            phi = torch.cat(feats, dim=1)  # (n_obs, features of the blocks of one structure size)
            phi = phi - phi.mean(0, keepdim=True)
            c = phi.T @ Hc[:, lower] / Hc.shape[0]
            total = total + (c * c).sum()
        return total

    def _rff_groups(self, m, widths, prio):
        """Per structure size ``p`` with smaller blocks: its blocks and the columns of the smaller ones."""
        key = (m, "groups")
        if key not in self._rff_cache:
            offs = np.cumsum([0, *widths])
            groups = []
            for p in sorted(set(prio), reverse=True):
                sources = [s for s in range(len(prio)) if prio[s] == p]
                lower = [c for t in range(len(prio)) if prio[t] < p for c in range(offs[t], offs[t + 1])]
                if lower:
                    groups.append((sources, torch.tensor(lower, dtype=torch.long, device=self.device)))
            self._rff_cache[key] = groups
        return self._rff_cache[key]

    def _rff_params(self, m, s, d):
        key = (m, s)
        if key not in self._rff_cache:
            g = torch.Generator().manual_seed(self.seed + 7919 * (1 + self.modalities.index(m)) + s)
            w = torch.randn(d, int(self.nonlinear_decorrelation), generator=g, dtype=torch.float32)
            b = 2 * np.pi * torch.rand(int(self.nonlinear_decorrelation), generator=g, dtype=torch.float32)
            self._rff_cache[key] = (w.to(self.device), b.to(self.device))
        return self._rff_cache[key]

    def _private(self):
        if "private" not in self._sub_bits:
            self._sub_bits["private"] = {
                s for s in self.candidates if len(parse_structure(s, self.modalities)) == 1
            }
        return self._sub_bits["private"]

    def augmented_views(self, net, xs, generator, structures=None):
        """Embeddings of two randomly feature-masked views of the rows (positives of private structures).

        Parameters
        ----------
        net : HeadNetwork
        xs : list of torch.Tensor (n, d_m)
        generator : torch.Generator
            Draws the masks.
        structures : set of str, optional
            Embed only these structures' heads (default: all).

        Returns
        -------
        list of two dicts m -> S -> torch.Tensor (n, dim_S)
        """
        views = []
        for _ in range(2):
            xa = []
            for x in xs:
                keep = torch.rand(x.shape, generator=generator).to(x.device) >= self.private_augment
                xa.append(x * keep / (1.0 - self.private_augment))
            views.append(
                self._embed(net(xa))[0] if structures is None else self._heads_of(net, xa, structures)
            )
        return views

    def _heads_of(self, net, xs, structures):
        """Embeddings of only the heads of ``structures``: dict m -> S -> (n, dim_S).

        Each head is computed from its own rows of the head layer, so the other heads cost nothing.
        """
        emb = {}
        for i, (m, x) in enumerate(zip(self.modalities, xs, strict=True)):
            wanted = [(s, a, b) for s, a, b in self.layout[m] if s in structures]
            if not wanted:
                emb[m] = {}
                continue
            h = net.backbones[i](x)
            head = net.heads[i]
            emb[m] = {
                s: soft_normalize(torch.nn.functional.linear(h, head.weight[a:b], head.bias[a:b]))
                for s, a, b in wanted
            }
        return emb

    def head_groups(self, net) -> list[torch.Tensor]:
        """One flat parameter tensor per (modality, structure) head, in layout order.

        Parameters
        ----------
        net : HeadNetwork

        Returns
        -------
        list of torch.Tensor
        """
        groups = []
        for i, m in enumerate(self.modalities):
            head = net.heads[i]
            for _s, a, b in self.layout[m]:
                groups.append(_head_group(head.weight[a:b], head.bias[a:b]))
        return groups

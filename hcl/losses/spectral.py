"""The structure-aware spectral (linear) contrastive loss of HCL."""

from __future__ import annotations

import torch
from torch import nn

from hcl.losses._common import check_views, l2_normalize


class SpectralLoss(nn.Module):
    """Mean similarity of negative pairs minus mean similarity of positive pairs, for one structure.

    For a structure ``S`` with ``k = |S| >= 2`` modalities, ``z[a, i]`` is the embedding of row ``i`` by
    the encoder of modality ``a`` for ``S``. A *positive* pair is ``(z[a, i], z[b, i])`` with ``a != b``;
    a *negative* pair is ``(z[a, i], z[b, j])`` with ``a != b`` and ``i != j``. Similarity is the dot
    product of L2-normalised embeddings (cosine). The loss is linear in the similarities: no softmax and
    no temperature.

    Only rows with at least two observed modalities in ``S`` take part (as positives and as negatives);
    within such rows only observed modalities count. With no such row the loss is 0 (still
    differentiable). Perfectly aligned, zero-mean embeddings give ``-1 - 1/(n - 1)``; embeddings
    independent across modalities give about 0.

    Parameters
    ----------
    normalize : bool, default True
        L2-normalise the embeddings first. Pass False if they are already normalised (or deliberately
        softly normalised, as :class:`hcl.deep.HCL` does).

    Shape
    -----
    - z : (k, n, d) -- one view per modality of the structure.
    - mask : (k, n) bool, optional -- True where modality ``a`` is observed in row ``i``.
    - output : scalar.
    """

    def __init__(self, normalize: bool = True):
        super().__init__()
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {normalize!r}")
        self.normalize = normalize

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Compute the loss (shapes in the class docstring)."""
        mask = check_views(z, mask, "SpectralLoss")
        if self.normalize:
            z = l2_normalize(z)
        valid = mask.sum(0) >= 2  # (n,)
        w = (mask & valid).to(z.dtype)  # (k, n)
        zw = z * w.unsqueeze(-1)  # (k, n, d)
        c = w.sum(0)  # (n,) observed views per row
        n_a = w.sum(1)  # (k,)
        # positives: sum over a != b of z_a[i].z_b[i] = |sum_a z_a[i]|^2 - sum_a |z_a[i]|^2
        row_sum = zw.sum(0)  # (n, d)
        pos_sum = (row_sum * row_sum).sum() - (zw * zw).sum()
        pos_cnt = (c * c - c).sum()
        # all cross pairs a != b (any rows): |sum_a S_a|^2 - sum_a |S_a|^2, with S_a = sum_i z_a[i]
        s = zw.sum(1)  # (k, d)
        tot = s.sum(0)
        cross_sum = (tot * tot).sum() - (s * s).sum()
        cross_cnt = n_a.sum() ** 2 - (n_a * n_a).sum()
        neg_sum = cross_sum - pos_sum
        neg_cnt = cross_cnt - pos_cnt
        if pos_cnt <= 0 or neg_cnt <= 0:
            return z.sum() * 0.0
        return neg_sum / neg_cnt - pos_sum / pos_cnt

    def batched(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sum of the losses of ``B`` structures of one size at once (the same sums as :meth:`forward`).

        Parameters
        ----------
        z : torch.Tensor (B, k, n, d)
            Each structure's views.
        mask : torch.Tensor (B, k, n) bool

        Returns
        -------
        torch.Tensor
            Scalar: the sum over the ``B`` structures of :meth:`forward`.
        """
        if self.normalize:
            z = l2_normalize(z)
        valid = mask.sum(1, keepdim=True) >= 2  # (B, 1, n)
        w = (mask & valid).to(z.dtype)  # (B, k, n)
        zw = z * w.unsqueeze(-1)
        c = w.sum(1)  # (B, n)
        n_a = w.sum(2)  # (B, k)
        row_sum = zw.sum(1)  # (B, n, d)
        pos_sum = (row_sum * row_sum).sum((1, 2)) - (zw * zw).sum((1, 2, 3))
        pos_cnt = (c * c - c).sum(1)
        s = zw.sum(2)  # (B, k, d)
        tot = s.sum(1)
        cross_sum = (tot * tot).sum(1) - (s * s).sum((1, 2))
        cross_cnt = n_a.sum(1) ** 2 - (n_a * n_a).sum(1)
        neg_sum = cross_sum - pos_sum
        neg_cnt = cross_cnt - pos_cnt
        ok = (pos_cnt > 0) & (neg_cnt > 0)
        loss = neg_sum / neg_cnt.clamp_min(1) - pos_sum / pos_cnt.clamp_min(1)
        return torch.where(ok, loss, torch.zeros_like(loss)).sum()

"""Multi-view InfoNCE (CLIP-style) for one structure."""

from __future__ import annotations

import torch
from torch import nn

from hcl.losses._common import check_views, l2_normalize


class InfoNCELoss(nn.Module):
    """InfoNCE averaged over every ordered pair of modalities of a structure.

    For each ordered pair ``(a, b)``, ``a != b``, the rows observed in both form the batch; row ``i`` of
    view ``a`` must pick row ``i`` of view ``b`` among them, with logits ``z_a[i] . z_b[j] / temperature``
    (cross-entropy). The loss is the mean over all (pair, row) terms, so for two modalities it is the
    symmetric CLIP loss. A row with fewer than two observed modalities adds nothing. Perfectly aligned,
    mutually orthogonal embeddings with ``n`` rows give ``log(1 + (n - 1) exp(-1 / temperature))``;
    constant embeddings give ``log(n)``.

    Parameters
    ----------
    temperature : float, default 0.1
        Softmax temperature, > 0.
    normalize : bool, default True
        L2-normalise the embeddings first.

    Shape
    -----
    - z : (k, n, d); mask : (k, n) bool, optional; output : scalar.
    """

    def __init__(self, temperature: float = 0.1, normalize: bool = True):
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {normalize!r}")
        self.temperature = float(temperature)
        self.normalize = normalize

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Compute the loss (shapes in the class docstring)."""
        mask = check_views(z, mask, "InfoNCELoss")
        if self.normalize:
            z = l2_normalize(z)
        k, n, _ = z.shape
        # all ordered pairs at once: logits[a, b, i, j] = z_a[i] . z_b[j] / temperature
        logits = torch.einsum("aid,bjd->abij", z, z) / self.temperature  # (k, k, n, n)
        both = mask.unsqueeze(1) & mask.unsqueeze(0)  # (k, k, n): row observed in a and in b
        off = ~torch.eye(k, dtype=torch.bool, device=z.device)
        rows = both & off.unsqueeze(-1)  # (k, k, n) the (pair, row) terms that count
        cols = both.unsqueeze(2)  # (k, k, 1, n) candidates of the pair
        neg_big = torch.finfo(logits.dtype).min / 4
        lse = torch.logsumexp(logits.masked_fill(~cols, neg_big), dim=-1)  # (k, k, n)
        pos = torch.diagonal(logits, dim1=-2, dim2=-1)  # (k, k, n)
        terms = torch.where(rows, lse - pos, torch.zeros_like(pos))
        count = rows.sum()
        if int(count) == 0:
            return z.sum() * 0.0
        return terms.sum() / count

"""Decorrelation between one modality's embeddings for different structures."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hcl.exceptions import ValidationError


class DecorrelationLoss(nn.Module):
    """Sum of squared cross-covariances between the blocks of one modality, normalised by batch size.

    For blocks ``H_1, ..., H_T`` (one per structure containing the modality), centred over the rows in
    ``mask``, the loss is ``sum_{s < t} || H_s^T H_t ||_F^2 / n^2`` with ``n`` the number of those rows:
    zero when the blocks are uncorrelated; for two identical blocks ``H_s = H_t = H`` (centred) it equals
    ``||H^T H||_F^2 / n^2``, e.g. ``d`` when ``H`` has ``d`` uncorrelated unit-variance columns.

    Parameters
    ----------
    center : bool, default True
        Subtract each column's mean over the masked rows first (covariance rather than raw moments).
    standardize : bool, default False
        Also divide each column by its root mean square, so the loss sums squared cross-*correlations*
        (scale-free; two identical blocks of ``d`` uncorrelated columns give ``d``).
    eps : float, default 1e-6
        Added to the variances when standardising.
    upward : float, default 0.0
        With ``priority``, the fraction of a cross term's gradient that still reaches the higher-priority
        block (0: none, 1: the plain symmetric loss).

    Shape
    -----
    - blocks : sequence of T tensors (n, d_t) -- the modality's embeddings, one per structure.
    - mask : (n,) bool, optional -- rows where the modality is observed.
    - priority : sequence of T ints, optional -- when two blocks have different priorities, the gradient of
      their cross term reaches only the lower-priority block (the other is treated as fixed). HCL gives
      larger structures higher priority, so a partially shared block is pushed off the global one and not
      the reverse. The value of the loss does not depend on it.
    - output : scalar.
    """

    def __init__(
        self, center: bool = True, standardize: bool = False, eps: float = 1e-6, upward: float = 0.0
    ):
        super().__init__()
        if isinstance(upward, bool) or not isinstance(upward, (int, float)) or not 0 <= upward <= 1:
            raise ValueError(f"upward must be a number in [0, 1], got {upward!r}")
        self.upward = float(upward)
        if not isinstance(center, bool):
            raise TypeError(f"center must be a bool, got {center!r}")
        if not isinstance(standardize, bool):
            raise TypeError(f"standardize must be a bool, got {standardize!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.center = center
        self.standardize = standardize
        self.eps = float(eps)

    def forward(
        self,
        blocks: Sequence[torch.Tensor],
        mask: torch.Tensor | None = None,
        priority: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Compute the loss (shapes in the class docstring)."""
        blocks = list(blocks)
        if not blocks:
            raise ValidationError("DecorrelationLoss: pass at least one block (n, d)")
        n = blocks[0].shape[0]
        for t, b in enumerate(blocks):
            if b.dim() != 2 or b.shape[0] != n:
                raise ValidationError(
                    f"DecorrelationLoss: block {t} has shape {tuple(b.shape)}, expected (n={n}, d)"
                )
        if priority is not None and len(priority) != len(blocks):
            raise ValidationError(
                f"DecorrelationLoss: priority has {len(priority)} entries for {len(blocks)} blocks"
            )
        if len(blocks) < 2:
            return blocks[0].sum() * 0.0
        if mask is not None:
            if tuple(mask.shape) != (n,):
                raise ValidationError(
                    f"DecorrelationLoss: mask must have shape ({n},), got {tuple(mask.shape)}"
                )
            blocks = [b[mask.to(torch.bool)] for b in blocks]
        m = blocks[0].shape[0]
        if m == 0:
            return blocks[0].sum() * 0.0
        if self.center:
            blocks = [b - b.mean(0, keepdim=True) for b in blocks]
        if self.standardize:  # cross-correlations instead of cross-covariances
            blocks = [b / (b.pow(2).mean(0, keepdim=True) + self.eps).sqrt() for b in blocks]
        total = blocks[0].new_zeros(())
        for s in range(len(blocks)):
            for t in range(s + 1, len(blocks)):
                hs, ht = blocks[s], blocks[t]
                if priority is not None and priority[s] != priority[t]:
                    # only the lower-priority block is pushed away from the higher-priority one
                    if priority[s] > priority[t]:
                        hs = self._damp(hs)
                    else:
                        ht = self._damp(ht)
                c = hs.T @ ht / m  # (d_s, d_t)
                total = total + (c * c).sum()
        return total

    def _damp(self, h: torch.Tensor) -> torch.Tensor:
        """Return ``h`` with its gradient scaled by ``upward`` (0 = detached)."""
        if self.upward == 0.0:
            return h.detach()
        return self.upward * h + (1.0 - self.upward) * h.detach()

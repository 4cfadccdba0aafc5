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
        self._weights_cache: dict = {}

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
        H = torch.cat(blocks, dim=1)  # (n, D): the blocks side by side
        if mask is not None:
            if tuple(mask.shape) != (n,):
                raise ValidationError(
                    f"DecorrelationLoss: mask must have shape ({n},), got {tuple(mask.shape)}"
                )
            H = H[mask.to(torch.bool)]
        m = H.shape[0]
        if m == 0:
            return H.sum() * 0.0
        if self.center:
            H = H - H.mean(0, keepdim=True)
        if self.standardize:  # cross-correlations instead of cross-covariances
            H = H / (H.pow(2).mean(0, keepdim=True) + self.eps).sqrt()
        return self.stacked(H, [b.shape[1] for b in blocks], priority)

    def stacked(self, H: torch.Tensor, widths: Sequence[int], priority=None) -> torch.Tensor:
        """Compute the loss of blocks already masked, centred (and standardised) and put side by side.

        All pairs' cross-covariances come from one (D, D) product. The gradient of the cross term of
        blocks ``s`` and ``t`` that reaches ``s`` is ``2 H_t C_st^T / m`` (``C_st = H_s^T H_t / m``), times
        ``upward`` when ``s`` has the higher priority; it is taken from ``sum(G * sg(C) * H^T sg(H)) / m``
        (``sg``: detach; ``G``: those factors per block pair), added as ``x - sg(x)`` to the value of the
        pairwise sum, which it leaves unchanged.

        Parameters
        ----------
        H : torch.Tensor (m, D)
            The blocks side by side.
        widths : sequence of int
            Each block's width (summing to D).
        priority : sequence of int, optional
            As in :meth:`forward`.

        Returns
        -------
        torch.Tensor
            Scalar.
        """
        m = H.shape[0]
        C = H.T @ H.detach() / m  # the gradient flows through the left factor only
        Cd = C.detach()
        upper, gain = self._pair_weights(tuple(widths), priority, H)
        value = (upper * Cd * Cd).sum()
        surrogate = (gain * Cd * C).sum()
        return value + (surrogate - surrogate.detach())

    def _pair_weights(self, widths, priority, like: torch.Tensor):
        """(D, D) masks: 1 on the blocks of pairs s < t, and each block pair's gradient factor ``G``."""
        key = (tuple(widths), None if priority is None else tuple(priority), like.dtype, like.device)
        cached = self._weights_cache.get(key)
        if cached is not None:
            return cached
        T = len(widths)
        upper = torch.zeros(T, T, dtype=like.dtype)
        gain = torch.zeros(T, T, dtype=like.dtype)
        for s in range(T):
            for t in range(T):
                if s == t:
                    continue
                upper[s, t] = 1.0 if s < t else 0.0
                damped = priority is not None and priority[s] > priority[t]
                gain[s, t] = 2.0 * (self.upward if damped else 1.0)
        sizes = torch.tensor(widths)
        cached = tuple(
            a.repeat_interleave(sizes, 0).repeat_interleave(sizes, 1).to(like.device) for a in (upper, gain)
        )
        self._weights_cache[key] = cached
        return cached

"""Group-lasso penalty with one group per head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hcl.exceptions import ValidationError


class GroupPenalty(nn.Module):
    """``sum_g w_g * ||W_g||_F`` over groups of parameters (one group per (modality, structure) head).

    The Frobenius norm is not squared, so a whole group can be driven exactly to (near) zero: a head
    whose structure is not supported by the data shrinks and is then pruned.

    Parameters
    ----------
    scale_by_size : bool, default False
        Weight each group by ``sqrt(number of its parameters)`` (the classical group-lasso weighting).
    eps : float, default 1e-12
        Added under the square root so the gradient at zero is finite.

    Shape
    -----
    - groups : sequence of tensors of any shape (each one group); output : scalar.

    A row mask does not apply: the penalty is on parameters, not rows.
    """

    def __init__(self, scale_by_size: bool = False, eps: float = 1e-12):
        super().__init__()
        if not isinstance(scale_by_size, bool):
            raise TypeError(f"scale_by_size must be a bool, got {scale_by_size!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        self.scale_by_size = scale_by_size
        self.eps = float(eps)

    def forward(self, groups: Sequence[torch.Tensor]) -> torch.Tensor:
        """Compute the group penalty (shapes in the class docstring)."""
        groups = list(groups)
        if not groups:
            raise ValidationError("GroupPenalty: pass at least one parameter group")
        total = groups[0].sum() * 0.0
        for g in groups:
            norm = torch.sqrt((g * g).sum() + self.eps)
            if self.scale_by_size:
                norm = norm * (g.numel() ** 0.5)
            total = total + norm
        return total

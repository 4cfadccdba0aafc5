"""Argument checks shared by the loss modules (private)."""

from __future__ import annotations

import torch

from hcl.exceptions import ValidationError


def check_views(z: torch.Tensor, mask: torch.Tensor | None, name: str) -> torch.Tensor:
    """Check a stack of views ``z`` (k, n, d) and return a boolean mask (k, n)."""
    if not isinstance(z, torch.Tensor) or z.dim() != 3:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValidationError(f"{name}: embeddings must be a tensor of shape (k, n, d), got {shape}")
    k, n, _ = z.shape
    if mask is None:
        return torch.ones(k, n, dtype=torch.bool, device=z.device)
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (k, n):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValidationError(f"{name}: mask must have shape (k, n) = {(k, n)}, got {shape}")
    return mask.to(dtype=torch.bool, device=z.device)


def l2_normalize(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rows of ``z`` (..., d) scaled to unit Euclidean norm (zero rows stay zero)."""
    return z / z.norm(dim=-1, keepdim=True).clamp_min(eps)

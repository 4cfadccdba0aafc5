"""The network of :class:`hcl.deep.HCL`: one MLP backbone per modality and one linear layer of heads.

Importing this module imports torch.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HeadNetwork"]


class HeadNetwork(nn.Module):
    """Per-modality MLP backbones (ReLU) and, on top of each, one linear layer holding all its heads.

    Parameters
    ----------
    dims : list of int
        Input width of each modality, in the fitted modality order.
    hidden : tuple of int
        Widths of each backbone's hidden layers; ``()`` puts the heads directly on the inputs.
    head_dims : list of list of int
        Per modality, the dimension of each of its heads (one per structure containing it); the layer of
        heads is their concatenation.

    Shape
    -----
    - xs : list of M tensors (n, d_m).
    - output : list of M tensors (n, sum of the modality's head dims), all heads of modality ``m`` side by
      side.
    """

    def __init__(self, dims: list[int], hidden: tuple[int, ...], head_dims: list[list[int]]):
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
        """All heads of every modality.

        Parameters
        ----------
        xs : list of torch.Tensor (n, d_m)
            Standardised inputs, one per modality.

        Returns
        -------
        list of torch.Tensor (n, sum_S dim_S)
        """
        return [head(bb(x)) for x, bb, head in zip(xs, self.backbones, self.heads, strict=True)]

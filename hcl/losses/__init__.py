"""Contrastive losses, decorrelation and group penalties for :class:`hcl.deep.HCL`.

One loss per module, each a :class:`torch.nn.Module` that checks its constructor arguments and states the
shapes it expects. Importing this package imports torch.

* :class:`~hcl.losses.spectral.SpectralLoss` -- the paper's linear structure-aware loss
  (mean negative-pair similarity minus mean positive-pair similarity).
* :class:`~hcl.losses.infonce.InfoNCELoss` -- symmetric multi-view InfoNCE with a temperature.
* :class:`~hcl.losses.decorrelation.DecorrelationLoss` -- cross-covariance between one modality's
  embeddings for different structures, normalised by batch size.
* :class:`~hcl.losses.group.GroupPenalty` -- group-lasso penalty with one group per head.
"""

from hcl.losses.decorrelation import DecorrelationLoss
from hcl.losses.group import GroupPenalty
from hcl.losses.infonce import InfoNCELoss
from hcl.losses.spectral import SpectralLoss

__all__ = ["DecorrelationLoss", "GroupPenalty", "InfoNCELoss", "SpectralLoss"]

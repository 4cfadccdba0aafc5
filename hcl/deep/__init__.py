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

The package's modules: :mod:`~hcl.deep.estimator` (the :class:`HCL` front), :mod:`~hcl.deep.network`,
:mod:`~hcl.deep.objective` (an ``nn.Module``), :mod:`~hcl.deep.training` (the loop, checkpoints and
resume), :mod:`~hcl.deep.pruning`, :mod:`~hcl.deep.blocks` (fusion and private residuals),
:mod:`~hcl.deep.persistence` and :mod:`~hcl.deep.presets` (:class:`CLIP`, :class:`SharedPrivate`).
torch is imported inside the functions that need it, so importing this package stays cheap.
"""

from hcl.deep.estimator import HCL
from hcl.deep.presets import CLIP, SharedPrivate

__all__ = ["CLIP", "HCL", "SharedPrivate"]

_FUSION_MAX_ITER = 10_000  # EM iterations of the factor model behind fusion="factor"

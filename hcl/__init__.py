"""hcl: Hierarchical Contrastive Learning for multimodal data.

A standalone, scikit-learn-style library: a mapping ``{modality_name: array (n, d_m)}`` in, blocks
``{structure_name: array (n, r_S)}`` out, where a structure is a set of modalities named like
``"codes+labs"``. It knows nothing of EHR, files, MLflow or DVC.

Every estimator follows one contract (:mod:`hcl._base`): scikit-learn's ``BaseEstimator`` with
``_parameter_constraints`` checked at ``fit``, ``save``/``load`` (:mod:`hcl.persistence`) and a
``summary`` DataFrame with one row per structure block.

Estimators are imported lazily so that ``import hcl`` stays cheap (torch is only loaded for ``HCL``).
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "LinearHCL": "hcl.linear",
    "HCL": "hcl.deep",
    "GroupLassoClassifier": "hcl.selection",
    "GroupLassoRegressor": "hcl.selection",
    "Concat": "hcl.baselines",
    "PCA": "hcl.baselines",
    "CLIP": "hcl.baselines",
    "SharedPrivate": "hcl.baselines",
    "JIVE": "hcl.baselines",
    "all_structures": "hcl.structures",
    "structure_name": "hcl.structures",
    "parse_structure": "hcl.structures",
    "column_scale": "hcl.preprocessing",
}

__all__ = sorted(_LAZY) + ["__version__"]


_SUBMODULES = {
    "simulate",
    "metrics",
    "structures",
    "selection",
    "baselines",
    "losses",
    "linear",
    "deep",
    "preprocessing",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return import_module(f"hcl.{name}")
    raise AttributeError(f"module 'hcl' has no attribute {name!r}")

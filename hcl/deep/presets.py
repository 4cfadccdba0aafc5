"""Presets of :class:`~hcl.deep.HCL`: the same estimator with some parameters fixed.

A preset is a subclass that declares ``_preset`` (the parameters it fixes, with their values) and, if it
changes a default, ``_preset_defaults``. :func:`make_preset` then gives it an ``__init__`` whose signature
is HCL's without the fixed parameters, and ``_parameter_constraints`` restricted to the same names, so
``get_params``, ``set_params``, ``clone`` and scikit-learn's checks see exactly the free parameters while
the fitting code reads the fixed ones as class attributes.
"""

from __future__ import annotations

import inspect

from hcl.deep.estimator import HCL
from hcl.exceptions import ValidationError
from hcl.structures import all_structures

__all__ = ["CLIP", "SharedPrivate", "make_preset"]


def make_preset(cls, base) -> None:
    """Give preset ``cls`` its ``__init__``, fixed class attributes and parameter constraints.

    Parameters
    ----------
    cls : type
        A subclass of ``base`` declaring ``_preset`` (dict) and optionally ``_preset_defaults`` (dict).
    base : type
        The estimator whose signature the preset narrows (:class:`~hcl.deep.HCL`).
    """
    fixed = dict(cls.__dict__["_preset"])
    defaults = dict(cls.__dict__.get("_preset_defaults", {}))
    base_sig = inspect.signature(base.__init__)
    unknown = (set(fixed) | set(defaults)) - set(base_sig.parameters)
    if unknown:
        raise TypeError(f"preset {cls.__name__} names unknown parameters {sorted(unknown)}")
    params = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=defaults.get(p.name, p.default))
        for name, p in base_sig.parameters.items()
        if name != "self" and name not in fixed
    ]
    sig = inspect.Signature([base_sig.parameters["self"], *params])
    names = [p.name for p in params]

    def __init__(self, **kwargs):  # noqa: N807 - the preset's constructor
        bound = sig.bind(self, **kwargs)
        bound.apply_defaults()
        for name in names:
            setattr(self, name, bound.arguments[name])

    __init__.__signature__ = sig
    __init__.__qualname__ = f"{cls.__name__}.__init__"
    __init__.__module__ = cls.__module__
    __init__.__doc__ = f"Store the parameters of {cls.__name__} (those of {base.__name__} it does not fix)."
    cls.__init__ = __init__
    for name, value in fixed.items():
        setattr(cls, name, value)
    cls._parameter_constraints = {k: v for k, v in base._parameter_constraints.items() if k in names}


class CLIP(HCL):
    """CLIP-style baseline: one shared block trained with InfoNCE over every modality pair.

    The same per-modality backbone, heads, training loop, early stopping, checkpoints and persistence as
    :class:`~hcl.deep.HCL`, with only the global structure, no decorrelation and no group penalty. The
    block is named like the global structure (``"a+b+c"``).

    Parameters
    ----------
    **params
        Every parameter of :class:`~hcl.deep.HCL` except those fixed here: ``structures`` (the global
        one), ``loss="infonce"``, ``decorrelation=0``, ``nonlinear_decorrelation=0``,
        ``decorrelation_upward=0``, ``strict_missing=False``, ``group_penalty=0``,
        ``private_augment=0.2``, ``prune="threshold"`` with ``prune_threshold=0`` (keep), ``fusion="mean"`` (CLIP averages its encoders'
        embeddings) and ``private="contrastive"`` (unused: there are no private structures).
    """

    _preset = {
        "structures": "global",
        "loss": "infonce",
        "decorrelation": 0.0,
        "nonlinear_decorrelation": 0,
        "decorrelation_upward": 0.0,
        "strict_missing": False,
        "group_penalty": 0.0,
        "private_augment": 0.2,
        "prune": "threshold",
        "prune_threshold": 0.0,
        "fusion": "mean",
        "private": "contrastive",
    }

    def _resolve_structures(self, modalities):
        if len(modalities) < 2:
            raise ValidationError(f"CLIP needs at least 2 modalities, got {modalities}")
        return {all_structures(modalities)[0]: int(self.embedding_dim)}


class SharedPrivate(HCL):
    """Deep HCL restricted to the global structure and the private ones (no partially shared blocks).

    Parameters
    ----------
    **params
        Every parameter of :class:`~hcl.deep.HCL` except ``structures`` (the global and the private ones)
        and ``strict_missing`` (True; with no partially shared candidates it changes nothing), with
        ``prune`` defaulting to ``"threshold"`` and ``prune_threshold`` to 0 (keep every structure).
    """

    _preset = {"structures": "global+private", "strict_missing": True}
    _preset_defaults = {"prune": "threshold", "prune_threshold": 0.0}

    def _resolve_structures(self, modalities):
        names = all_structures(modalities)
        keep = [names[0]] + [s for s in names if "+" not in s]
        return {s: int(self.embedding_dim) for s in keep}

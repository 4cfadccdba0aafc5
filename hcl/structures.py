"""The lattice of modality subsets ("structures") that HCL decomposes data into.

With modalities ``("codes", "labs", "notes")`` the candidate structures are every non-empty subset,
named by joining the modality names *in their given order* with ``+``: ``"codes+labs+notes"`` (global),
``"codes+labs"`` (partially shared), ``"notes"`` (private).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations

import numpy as np

from hcl.exceptions import ValidationError

SEPARATOR = "+"


def structure_name(members: Iterable[str], modalities: Sequence[str]) -> str:
    """Name of the structure made of ``members``, joined in the order of ``modalities``."""
    members = set(members)
    unknown = members - set(modalities)
    if unknown:
        raise ValidationError(
            f"structure names unknown modality {sorted(unknown)}; known: {list(modalities)}"
        )
    if not members:
        raise ValidationError("a structure needs at least one modality")
    return SEPARATOR.join(m for m in modalities if m in members)


def parse_structure(name: str, modalities: Sequence[str]) -> tuple[str, ...]:
    """Modalities of structure ``name`` in the order of ``modalities``; raises on unknown names."""
    parts = [p for p in name.split(SEPARATOR)]
    unknown = [p for p in parts if p not in modalities]
    if unknown or not parts or len(set(parts)) != len(parts):
        raise ValidationError(
            f"structure {name!r} is not a '+'-joined set of known modalities {list(modalities)}"
        )
    return tuple(m for m in modalities if m in parts)


def all_structures(modalities: Sequence[str]) -> list[str]:
    """Every non-empty subset of ``modalities``, largest first, then in lexical order of positions.

    For ``("a", "b", "c")``: ``["a+b+c", "a+b", "a+c", "b+c", "a", "b", "c"]``.
    """
    modalities = list(modalities)
    if len(set(modalities)) != len(modalities):
        raise ValidationError(f"modality names must be unique, got {modalities}")
    out: list[str] = []
    for size in range(len(modalities), 0, -1):
        for combo in combinations(modalities, size):
            out.append(SEPARATOR.join(combo))
    return out


def kind(name: str, modalities: Sequence[str]) -> str:
    """``"global"``, ``"partial"`` or ``"private"`` for structure ``name``."""
    size = len(parse_structure(name, modalities))
    if size == len(modalities):
        return "global"
    return "private" if size == 1 else "partial"


def structures_of(modality: str, structures: Iterable[str], modalities: Sequence[str]) -> list[str]:
    """Return the structures in ``structures`` that contain ``modality`` (order kept)."""
    return [s for s in structures if modality in parse_structure(s, modalities)]


def normalize_ranks(ranks, modalities: Sequence[str]) -> dict[str, int]:
    """Turn ``ranks`` (int, or dict name -> rank) into {structure: rank} over all structures.

    Structure names may list their modalities in any order; absent names get rank 0.
    """
    names = all_structures(modalities)
    if isinstance(ranks, bool):
        raise ValidationError(f"ranks must be an int or a dict structure -> int, got {ranks!r}")
    if isinstance(ranks, (int, np.integer)):
        if ranks < 0:
            raise ValidationError(f"ranks must be >= 0, got {ranks}")
        return {s: int(ranks) for s in names}
    if isinstance(ranks, Mapping):
        out = {s: 0 for s in names}
        for key, r in ranks.items():
            if not isinstance(key, str):
                raise ValidationError(f"ranks key {key!r} must be a structure name like 'a+b'")
            canon = "+".join(parse_structure(key, modalities))
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
                raise ValidationError(f"rank of structure {key!r} must be an int >= 0, got {r!r}")
            out[canon] = int(r)
        return out
    raise ValidationError(f"ranks must be an int or a dict structure -> int, got {type(ranks).__name__}")

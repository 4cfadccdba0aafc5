"""Sequence encoders for modalities observed as time-ordered events (the paper's EHR model).

A modality that is a sequence of events, not one row, is given as a :class:`EventBatch`: per row, up to
``L`` events left-aligned in time order, each with any of an item id (a code, a lab item), a value, a
time relative to the row's reference time, and a dense vector (a note embedding), plus a mask of the real
events. :class:`EventEmbedder` turns each event into one vector, the sum of an item embedding
(:class:`ItemEmbedding`), a value projection, a time projection and a vector projection;
:class:`SequenceEncoder` runs a GRU (or a small transformer) over the embedded events and returns one
vector per row.

A row with no event is an absent modality: the encoder returns zeros for it and ``observed`` False, so
that it contributes exactly what a missing modality contributes today. Nothing here knows about EHR.

Importing this module imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

__all__ = ["EventBatch", "EventEmbedder", "ItemEmbedding", "SequenceEncoder"]


@dataclass
class EventBatch:
    """A padded batch of event sequences: ``n`` rows, at most ``L`` events each, left-aligned.

    Parameters
    ----------
    mask : torch.Tensor of bool (n, L)
        True where an event is real. Real events come first in every row (time order), padding after.
    items : torch.Tensor of int64 (n, L), optional
        Item ids in ``[1, n_items]``; 0 is padding.
    values : torch.Tensor (n, L), optional
        One number per event (e.g. a standardised lab value); NaN is read as "no value" (0).
    times : torch.Tensor (n, L), optional
        Each event's time relative to the reference time, in hours (non-positive for the past).
    vectors : torch.Tensor (n, L, d), optional
        One dense vector per event (e.g. a note embedding).
    """

    mask: torch.Tensor
    items: torch.Tensor | None = None
    values: torch.Tensor | None = None
    times: torch.Tensor | None = None
    vectors: torch.Tensor | None = None

    def __post_init__(self):
        """Check shapes and left alignment."""
        if self.mask.dim() != 2:
            raise ValueError(f"EventBatch.mask must be 2-d (n, L); got shape {tuple(self.mask.shape)}")
        n, length = self.mask.shape
        for f in fields(self):
            t = getattr(self, f.name)
            if t is not None and tuple(t.shape[:2]) != (n, length):
                raise ValueError(
                    f"EventBatch.{f.name} has shape {tuple(t.shape)}; expected ({n}, {length}, ...)"
                )
        # Left alignment lets the GRU read each row's last real step at index length - 1.
        m = self.mask.to(torch.int8)
        if length > 1 and bool((m[:, 1:] > m[:, :-1]).any()):
            raise ValueError("EventBatch.mask must be left-aligned: real events first, padding after")

    @property
    def lengths(self) -> torch.Tensor:
        """Number of real events per row, shape (n,)."""
        return self.mask.sum(1)

    def select(self, rows: torch.Tensor) -> EventBatch:
        """Restrict every field to ``rows`` (an index tensor)."""
        return EventBatch(
            **{f.name: None if (t := getattr(self, f.name)) is None else t[rows] for f in fields(self)}
        )

    def to(self, device: torch.device | str) -> EventBatch:
        """Move every tensor to ``device``."""
        return EventBatch(
            **{f.name: None if (t := getattr(self, f.name)) is None else t.to(device) for f in fields(self)}
        )


class ItemEmbedding(nn.Module):
    """A table of item (code) embeddings; row 0 is padding and stays zero.

    Parameters
    ----------
    n_items : int
        Number of distinct items; ids run from 1 to ``n_items``.
    dim : int
        Embedding width.
    init : torch.Tensor (n_items, dim), optional
        Initial vectors (e.g. pretrained code embeddings); random normal(0, 1/sqrt(dim)) otherwise.
    freeze : bool, default False
        Keep the table fixed (only meaningful with ``init``).
    """

    def __init__(self, n_items: int, dim: int, init: torch.Tensor | None = None, freeze: bool = False):
        super().__init__()
        if init is not None and tuple(init.shape) != (n_items, dim):
            raise ValueError(f"init has shape {tuple(init.shape)}; expected ({n_items}, {dim})")
        weight = torch.zeros(n_items + 1, dim)
        if init is None:
            weight[1:] = torch.randn(n_items, dim) / dim**0.5
        else:
            weight[1:] = init.to(weight.dtype)
        self.table = nn.Embedding(n_items + 1, dim, padding_idx=0, _weight=weight)
        self.table.weight.requires_grad_(not freeze)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``items`` (any shape of int64 ids), shape ``items.shape + (dim,)``."""
        return self.table(items)


class EventEmbedder(nn.Module):
    """One vector per event: the sum of the parts the events carry.

    Parameters
    ----------
    dim : int
        Output width.
    n_items : int, optional
        Number of item ids; adds an :class:`ItemEmbedding`.
    values : bool, default False
        Add a projection of the event's value (and of whether it has one).
    times : bool, default False
        Add a projection of the relative time: the hours and their signed log, so both the last hour
        and the last month are resolved.
    vector_dim : int, optional
        Width of per-event dense vectors; adds a linear projection of them.
    item_init : torch.Tensor, optional
        Passed to :class:`ItemEmbedding` as ``init``.
    freeze_items : bool, default False
        Passed to :class:`ItemEmbedding` as ``freeze``.
    """

    def __init__(
        self,
        dim: int,
        n_items: int | None = None,
        values: bool = False,
        times: bool = False,
        vector_dim: int | None = None,
        item_init: torch.Tensor | None = None,
        freeze_items: bool = False,
    ):
        super().__init__()
        if n_items is None and not values and not times and vector_dim is None:
            raise ValueError("EventEmbedder needs at least one of n_items, values, times, vector_dim")
        self.dim = dim
        self.items = ItemEmbedding(n_items, dim, item_init, freeze_items) if n_items is not None else None
        self.values = nn.Linear(2, dim) if values else None
        self.times = nn.Linear(2, dim) if times else None
        self.vectors = nn.Linear(vector_dim, dim) if vector_dim is not None else None

    def forward(self, batch: EventBatch) -> torch.Tensor:
        """Embedded events, shape (n, L, dim); padding positions are zero."""
        n, length = batch.mask.shape
        parts = []
        if self.items is not None:
            parts.append(self.items(_require(batch.items, "items")))
        if self.values is not None:
            v = _require(batch.values, "values")
            has = ~torch.isnan(v)
            parts.append(
                self.values(torch.stack([torch.where(has, v, torch.zeros_like(v)), has.to(v.dtype)], -1))
            )
        if self.times is not None:
            t = _require(batch.times, "times")
            parts.append(self.times(torch.stack([t / 24.0, torch.sign(t) * torch.log1p(t.abs())], -1)))
        if self.vectors is not None:
            parts.append(self.vectors(_require(batch.vectors, "vectors")))
        out = torch.stack(parts).sum(0)
        return out * batch.mask.unsqueeze(-1).to(out.dtype)


def _require(t: torch.Tensor | None, name: str) -> torch.Tensor:
    if t is None:
        raise ValueError(f"the EventEmbedder uses event {name}, but the EventBatch has none")
    return t


class SequenceEncoder(nn.Module):
    """Embedded events through a GRU (or a small transformer), one vector per row.

    Parameters
    ----------
    embedder : EventEmbedder
        Turns the batch's events into vectors.
    out_dim : int
        Output width (e.g. the sum of a modality's head widths).
    hidden : int, default 64
        GRU hidden size / transformer model width.
    kind : {"gru", "transformer"}, default "gru"
        The GRU reads the last real step's state; the transformer mean-pools its outputs over real events.
    n_layers : int, default 1
        Recurrent or transformer layers.
    n_heads : int, default 4
        Attention heads (transformer only).

    Notes
    -----
    A row with no real event gets a zero output and ``observed`` False: an absent modality.
    """

    def __init__(
        self,
        embedder: EventEmbedder,
        out_dim: int,
        hidden: int = 64,
        kind: str = "gru",
        n_layers: int = 1,
        n_heads: int = 4,
    ):
        super().__init__()
        if kind not in ("gru", "transformer"):
            raise ValueError(f"kind must be 'gru' or 'transformer'; got {kind!r}")
        self.embedder = embedder
        self.kind = kind
        self.inp = nn.Linear(embedder.dim, hidden) if embedder.dim != hidden else nn.Identity()
        if kind == "gru":
            self.core = nn.GRU(hidden, hidden, num_layers=n_layers, batch_first=True)
        else:
            layer = nn.TransformerEncoderLayer(hidden, n_heads, 2 * hidden, dropout=0.0, batch_first=True)
            self.core = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, batch: EventBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the batch.

        Parameters
        ----------
        batch : EventBatch

        Returns
        -------
        out : torch.Tensor (n, out_dim)
            Zero for rows with no event.
        observed : torch.Tensor of bool (n,)
            Whether the row has at least one event.
        """
        observed = batch.mask.any(1)
        out = torch.zeros(
            batch.mask.shape[0], self.out.out_features, dtype=self.out.weight.dtype, device=batch.mask.device
        )
        rows = observed.nonzero().squeeze(1)
        if rows.numel() == 0:
            return out, observed
        sub = batch.select(rows)
        h = self.inp(self.embedder(sub))
        if self.kind == "gru":
            lengths = sub.lengths.cpu()
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            _, last = self.core(packed)
            pooled = last[-1]
        else:
            z = self.core(h, src_key_padding_mask=~sub.mask)
            w = sub.mask.unsqueeze(-1).to(z.dtype)
            pooled = (z * w).sum(1) / w.sum(1)
        return out.index_copy(0, rows, self.out(pooled)), observed

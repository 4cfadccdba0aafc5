"""Sequence encoders (issue 16, point 2): masks, padding, absent rows, item tables, order sensitivity."""

import pytest
import torch

from hcl.deep.sequence import EventBatch, EventEmbedder, ItemEmbedding, SequenceEncoder


def _batch(seed=0, n=6, length=7, d=5, n_items=11):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 0, 1, 5, 0])[:n]
    mask = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
    items = torch.randint(1, n_items + 1, (n, length), generator=g) * mask
    values = torch.randn(n, length, generator=g)
    values[0, 2] = float("nan")
    times = -torch.rand(n, length, generator=g) * 100
    vectors = torch.randn(n, length, d, generator=g)
    return EventBatch(mask=mask, items=items, values=values, times=times, vectors=vectors)


def _encoder(kind, seed=0, n_items=11, d=5):
    torch.manual_seed(seed)
    emb = EventEmbedder(8, n_items=n_items, values=True, times=True, vector_dim=d)
    return SequenceEncoder(emb, out_dim=4, hidden=8, kind=kind).eval()


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_all_padding_row_is_an_absent_modality(kind):
    enc = _encoder(kind)
    out, observed = enc(_batch())
    assert observed.tolist() == [True, True, False, True, True, False]
    assert torch.equal(out[~observed], torch.zeros(2, 4))
    assert (out[observed].abs().sum(1) > 0).all()


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_padding_content_and_extra_padding_change_nothing(kind):
    enc = _encoder(kind)
    b = _batch()
    ref, _ = enc(b)
    # garbage in every padded slot
    pad = ~b.mask
    noisy = EventBatch(
        mask=b.mask,
        items=torch.where(pad, torch.full_like(b.items, 3), b.items),
        values=torch.where(pad, torch.full_like(b.values, 99.0), b.values),
        times=torch.where(pad, torch.full_like(b.times, 5.0), b.times),
        vectors=torch.where(pad.unsqueeze(-1), torch.full_like(b.vectors, 7.0), b.vectors),
    )
    out, _ = enc(noisy)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # three more padded columns
    wide = EventBatch(
        mask=torch.cat([b.mask, torch.zeros(6, 3, dtype=torch.bool)], 1),
        items=torch.cat([b.items, torch.zeros(6, 3, dtype=torch.long)], 1),
        values=torch.cat([b.values, torch.zeros(6, 3)], 1),
        times=torch.cat([b.times, torch.zeros(6, 3)], 1),
        vectors=torch.cat([b.vectors, torch.zeros(6, 3, 5)], 1),
    )
    out, _ = enc(wide)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_a_row_does_not_depend_on_its_batch(kind):
    enc = _encoder(kind)
    b = _batch()
    full, _ = enc(b)
    alone, _ = enc(b.select(torch.tensor([4])))
    torch.testing.assert_close(alone[0], full[4], rtol=1e-5, atol=1e-6)


def test_gru_reads_order_and_time():
    enc = _encoder("gru")
    b = _batch().select(torch.tensor([0]))
    rev = torch.arange(6, -1, -1)
    flipped = EventBatch(
        mask=b.mask,
        items=b.items[:, rev],
        values=b.values[:, rev],
        times=b.times[:, rev],
        vectors=b.vectors[:, rev],
    )
    shifted = EventBatch(mask=b.mask, items=b.items, values=b.values, times=b.times - 48.0, vectors=b.vectors)
    out, _ = enc(b)
    assert not torch.allclose(enc(flipped)[0], out, atol=1e-4)
    assert not torch.allclose(enc(shifted)[0], out, atol=1e-4)


def test_item_table_init_freeze_and_padding_row():
    init = torch.arange(12.0).reshape(4, 3)
    table = ItemEmbedding(4, 3, init=init, freeze=True)
    assert torch.equal(table(torch.tensor([0, 1, 4])), torch.stack([torch.zeros(3), init[0], init[3]]))
    assert not table.table.weight.requires_grad
    learned = ItemEmbedding(4, 3)
    learned(torch.tensor([[0, 2]])).sum().backward()
    assert torch.equal(learned.table.weight.grad[0], torch.zeros(3))  # padding never learns
    with pytest.raises(ValueError, match="expected \\(4, 3\\)"):
        ItemEmbedding(4, 3, init=torch.zeros(3, 3))


def test_gradients_reach_only_real_events():
    enc = _encoder("gru")
    b = _batch()
    b.vectors.requires_grad_(True)
    out, _ = enc(b)
    out.sum().backward()
    g = b.vectors.grad.abs().sum(-1)
    assert (g[~b.mask] == 0).all()
    assert (g[b.mask] > 0).all()


def test_batch_checks():
    with pytest.raises(ValueError, match="left-aligned"):
        EventBatch(mask=torch.tensor([[False, True]]))
    with pytest.raises(ValueError, match="EventBatch.values has shape"):
        EventBatch(mask=torch.ones(2, 3, dtype=torch.bool), values=torch.zeros(2, 4))
    enc = SequenceEncoder(EventEmbedder(4, values=True), out_dim=2, hidden=4)
    with pytest.raises(ValueError, match="uses event values"):
        enc(EventBatch(mask=torch.ones(1, 2, dtype=torch.bool)))

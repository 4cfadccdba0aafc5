"""The vectorised losses and the covariance EM of the fusion model against the code they replaced.

The references below are the previous implementations (pairwise Python loops; scikit-learn's
FactorAnalysis), kept here so a change that alters values or gradients is caught.
"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hcl.deep.blocks import factor_analysis  # noqa: E402
from hcl.deep.objective import HCLObjective  # noqa: E402
from hcl.losses import DecorrelationLoss  # noqa: E402


def _damp(h, upward):
    return h.detach() if upward == 0.0 else upward * h + (1.0 - upward) * h.detach()


def decor_pairwise(blocks, mask, priority, upward):
    """The previous DecorrelationLoss.forward (center=True): a loop over block pairs."""
    if mask is not None:
        blocks = [b[mask] for b in blocks]
    m = blocks[0].shape[0]
    blocks = [b - b.mean(0, keepdim=True) for b in blocks]
    total = blocks[0].new_zeros(())
    for s in range(len(blocks)):
        for t in range(s + 1, len(blocks)):
            hs, ht = blocks[s], blocks[t]
            if priority is not None and priority[s] != priority[t]:
                if priority[s] > priority[t]:
                    hs = _damp(hs, upward)
                else:
                    ht = _damp(ht, upward)
            c = hs.T @ ht / m
            total = total + (c * c).sum()
    return total


def _blocks(rng, n, widths, dtype=torch.float64):
    return [torch.tensor(rng.normal(size=(n, w)), dtype=dtype, requires_grad=True) for w in widths]


def _grads(loss, blocks):
    return [g.detach().numpy() for g in torch.autograd.grad(loss, blocks, retain_graph=True)]


@pytest.mark.parametrize("upward", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("with_priority", [False, True])
def test_stacked_decorrelation_equals_pairwise_loop_value_and_gradient(upward, with_priority):
    rng = np.random.default_rng(3)
    widths = [3, 2, 4, 3, 1]
    priority = [3, 2, 2, 1, 3] if with_priority else None
    mask = torch.tensor(rng.random(40) > 0.3)
    blocks = _blocks(rng, 40, widths)
    new = DecorrelationLoss(upward=upward)(blocks, mask, priority=priority)
    old = decor_pairwise(blocks, mask, priority, upward)
    assert torch.allclose(new, old, rtol=1e-12, atol=0)
    for a, b in zip(_grads(new, blocks), _grads(old, blocks), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def _objective(modalities, dims, n_feat, upward=0.5):
    from hcl.structures import all_structures, parse_structure

    candidates = {s: 2 for s in all_structures(modalities)}
    layout = {}
    for m in modalities:
        off, entries = 0, []
        for s in candidates:
            if m in parse_structure(s, modalities):
                entries.append((s, off, off + candidates[s]))
                off += candidates[s]
        layout[m] = entries
    return HCLObjective(
        modalities,
        candidates,
        layout,
        loss="spectral",
        temperature=0.1,
        decorrelation=1.0,
        nonlinear_decorrelation=n_feat,
        decorrelation_upward=upward,
        group_penalty=0.0,
        private_augment=0.2,
        strict_missing=True,
        seed=5,
    )


def decorrelation_loop(obj, emb, mask):
    """The previous HCLObjective._decorrelation and _nonlinear_decor: one loss call per block pair."""
    from hcl.structures import parse_structure

    decor = DecorrelationLoss(upward=obj.decor.upward)
    mods = obj.modalities
    dec = torch.zeros((), dtype=torch.float32)
    for i, m in enumerate(mods):
        blocks = list(emb[m].values())
        prio = [len(parse_structure(s, mods)) for s, _a, _b in obj.layout[m]]
        rows = mask[i]
        dec = dec + decor_pairwise(blocks, rows, prio, decor.upward)
        for s, hs in enumerate(blocks):
            higher = hs.detach()[rows]
            higher = (higher - higher.mean(0)) / (higher.std(0) + 1e-6)
            w, b = obj._rff_params(m, s, hs.shape[1])
            phi = torch.cos(higher @ w + b)
            for t, ht in enumerate(blocks):
                if prio[t] < prio[s]:
                    dec = dec + decor_pairwise([phi, ht[rows]], None, None, 0.0)
    return dec


def test_objective_decorrelation_equals_the_pairwise_loops():
    mods = ["a", "b", "c"]
    obj = _objective(mods, None, n_feat=16)
    rng = np.random.default_rng(0)
    n = 64
    outs = [torch.tensor(rng.normal(size=(n, 8)), dtype=torch.float32, requires_grad=True) for _ in mods]
    mask = torch.tensor(rng.random((3, n)) > 0.2)
    emb = obj.embeddings(outs)
    new = obj._decorrelation(outs, emb, mask)
    old = decorrelation_loop(obj, emb, mask)
    assert torch.allclose(new, old, rtol=1e-5, atol=1e-7)
    for a, b in zip(_grads(new, outs), _grads(old, outs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("n", "p", "k", "max_iter"), [(3000, 24, 8, 10_000), (400, 16, 4, 10_000), (800, 12, 3, 4)]
)
def test_factor_analysis_equals_sklearn(n, p, k, max_iter):
    from sklearn.decomposition import FactorAnalysis

    rng = np.random.default_rng(n)
    X = np.tanh(rng.normal(size=(n, k)) @ rng.normal(size=(k, p))) + rng.normal(size=(n, p)) * rng.uniform(
        0.1, 1, p
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FactorAnalysis(n_components=k, svd_method="lapack", random_state=0, max_iter=max_iter).fit(
            X + 2.0
        )
    got = factor_analysis(X + 2.0, k, max_iter)
    assert got["n_iter"] == ref.n_iter_
    np.testing.assert_allclose(got["mean"], ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(got["loadings"], ref.components_.T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got["noise"], ref.noise_variance_, rtol=0, atol=1e-10)


@pytest.mark.parametrize("missing", [0.0, 0.3])
def test_batched_decorrelation_of_all_modalities_equals_the_pairwise_loops(missing):
    mods = ["a", "b", "c"]
    obj = _objective(mods, None, n_feat=16)
    rng = np.random.default_rng(1)
    n = 64
    outs = [torch.tensor(rng.normal(size=(n, 8)), dtype=torch.float32, requires_grad=True) for _ in mods]
    mask = torch.tensor(rng.random((3, n)) >= missing)
    emb, full = obj._embed(outs)
    assert obj._batchable(full, mask)
    new = obj._decorrelation(outs, emb, mask, full)
    old = decorrelation_loop(obj, emb, mask)
    assert torch.allclose(new, old, rtol=1e-5, atol=1e-7)
    for a, b in zip(_grads(new, outs), _grads(old, outs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_batched_spectral_equals_the_sum_of_per_structure_calls(normalize):
    from hcl.losses import SpectralLoss

    rng = np.random.default_rng(2)
    loss = SpectralLoss(normalize=normalize)
    z = torch.tensor(rng.normal(size=(4, 3, 30, 5)), dtype=torch.float64, requires_grad=True)
    mask = torch.tensor(rng.random((4, 3, 30)) > 0.3)
    mask[2] = False  # a structure with no valid row adds 0
    mask[2, 0] = True
    new = loss.batched(z, mask)
    old = sum(loss(z[b], mask[b]) for b in range(4))
    assert torch.allclose(new, old, rtol=1e-12, atol=1e-14)
    (g_new,) = torch.autograd.grad(new, z, retain_graph=True)
    (g_old,) = torch.autograd.grad(old, z)
    assert torch.isfinite(g_new).all()
    np.testing.assert_allclose(g_new.numpy(), g_old.numpy(), rtol=1e-10, atol=1e-14)


def test_batched_alignment_equals_the_loop_of_structures():
    mods = ["a", "b", "c"]
    obj = _objective(mods, None, n_feat=0)
    torch.manual_seed(0)
    from hcl.deep.network import HeadNetwork

    net = HeadNetwork([6, 5, 4], (), [[2] * 4] * 3)
    rng = np.random.default_rng(4)
    xs = [torch.tensor(rng.normal(size=(50, d)), dtype=torch.float32) for d in (6, 5, 4)]
    mask = torch.tensor(rng.random((3, 50)) > 0.25)
    emb = obj.embeddings(net(xs))
    new = obj._alignment(net, xs, mask, emb, torch.Generator().manual_seed(1))
    old = obj._alignment_loop(net, xs, mask, emb, torch.Generator().manual_seed(1))
    assert torch.allclose(new, old, rtol=1e-5, atol=1e-6)

"""Loss tests: independent plain references, analytic values, symmetries, masks, argument checks."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hcl.exceptions import ValidationError  # noqa: E402
from hcl.losses import DecorrelationLoss, GroupPenalty, InfoNCELoss, SpectralLoss  # noqa: E402


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def spectral_reference(z, mask):
    """Plain double loop: mean cosine of negative pairs minus mean cosine of positive pairs."""
    z = _unit(np.asarray(z, dtype=float))
    k, n, _ = z.shape
    valid = mask.sum(0) >= 2
    pos, neg = [], []
    for a in range(k):
        for b in range(k):
            if a == b:
                continue
            for i in range(n):
                for j in range(n):
                    if not (valid[i] and valid[j] and mask[a, i] and mask[b, j]):
                        continue
                    (pos if i == j else neg).append(float(z[a, i] @ z[b, j]))
    if not pos or not neg:
        return 0.0
    return np.mean(neg) - np.mean(pos)


def infonce_reference(z, mask, t):
    z = _unit(np.asarray(z, dtype=float))
    k = z.shape[0]
    terms = []
    for a in range(k):
        for b in range(k):
            if a == b:
                continue
            rows = np.where(mask[a] & mask[b])[0]
            for i in rows:
                logits = np.array([z[a, i] @ z[b, j] / t for j in rows])
                lse = logits.max() + math.log(np.exp(logits - logits.max()).sum())
                terms.append(lse - z[a, i] @ z[b, i] / t)
    return float(np.mean(terms)) if terms else 0.0


def decorrelation_reference(blocks, mask):
    hs = [np.asarray(b, dtype=float)[mask] for b in blocks]
    hs = [h - h.mean(0) for h in hs]
    m = hs[0].shape[0]
    total = 0.0
    for s in range(len(hs)):
        for t in range(s + 1, len(hs)):
            for p in range(hs[s].shape[1]):
                for q in range(hs[t].shape[1]):
                    total += (np.sum(hs[s][:, p] * hs[t][:, q]) / m) ** 2
    return total


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _mask(rng, k, n, p=0.7):
    mask = rng.random((k, n)) < p
    mask[:, :2] = True  # at least two rows fully observed
    return mask


# ---------------------------------------------------------------- spectral
def test_spectral_matches_reference_with_mask(rng):
    z = rng.standard_normal((3, 12, 4))
    mask = _mask(rng, 3, 12)
    got = SpectralLoss()(torch.tensor(z), torch.tensor(mask))
    assert float(got) == pytest.approx(spectral_reference(z, mask), abs=1e-10)


def test_spectral_perfectly_aligned_zero_mean_is_analytic():
    base = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])  # unit rows, mean zero, n = 4
    z = torch.tensor(np.stack([base, base, base]))
    assert float(SpectralLoss()(z)) == pytest.approx(-1 - 1 / 3, abs=1e-12)


def test_spectral_independent_views_near_zero(rng):
    z = torch.tensor(rng.standard_normal((2, 2000, 32)))
    assert abs(float(SpectralLoss()(z))) < 0.01


def test_spectral_row_order_invariant(rng):
    z = rng.standard_normal((3, 15, 5))
    mask = _mask(rng, 3, 15)
    perm = rng.permutation(15)
    a = SpectralLoss()(torch.tensor(z), torch.tensor(mask))
    b = SpectralLoss()(torch.tensor(z[:, perm]), torch.tensor(mask[:, perm]))
    assert float(a) == pytest.approx(float(b), abs=1e-12)


def test_spectral_row_with_one_observed_view_adds_nothing(rng):
    z = rng.standard_normal((2, 10, 3))
    mask = np.ones((2, 10), dtype=bool)
    mask[1, 9] = False  # row 9 has one observed modality
    base = float(SpectralLoss()(torch.tensor(z), torch.tensor(mask)))
    z2 = z.copy()
    z2[:, 9] = rng.standard_normal((2, 3)) * 100  # change that row completely
    assert float(SpectralLoss()(torch.tensor(z2), torch.tensor(mask))) == pytest.approx(base, abs=1e-12)
    # and it equals the loss computed without the row at all
    assert float(SpectralLoss()(torch.tensor(z[:, :9]))) == pytest.approx(base, abs=1e-12)


def test_spectral_no_valid_row_is_zero_and_differentiable(rng):
    z = torch.tensor(rng.standard_normal((2, 5, 3)), requires_grad=True)
    mask = torch.tensor([[True] * 5, [False] * 5])
    loss = SpectralLoss()(z, mask)
    loss.backward()
    assert float(loss.detach()) == 0.0 and z.grad is not None


def test_spectral_rejects_bad_arguments():
    with pytest.raises(TypeError):
        SpectralLoss(normalize="yes")
    with pytest.raises(ValidationError, match="shape"):
        SpectralLoss()(torch.zeros(5, 3))
    with pytest.raises(ValidationError, match="mask"):
        SpectralLoss()(torch.zeros(2, 5, 3), torch.ones(3, 5, dtype=torch.bool))


# ---------------------------------------------------------------- InfoNCE
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_infonce_matches_reference_with_mask(rng, t):
    z = rng.standard_normal((3, 10, 4))
    mask = _mask(rng, 3, 10)
    got = InfoNCELoss(temperature=t)(torch.tensor(z), torch.tensor(mask))
    assert float(got) == pytest.approx(infonce_reference(z, mask, t), abs=1e-9)


def test_infonce_analytic_values():
    n, t = 6, 0.2
    eye = torch.eye(n, dtype=torch.float64)
    aligned = InfoNCELoss(temperature=t)(torch.stack([eye, eye]))
    assert float(aligned) == pytest.approx(math.log(1 + (n - 1) * math.exp(-1 / t)), abs=1e-12)
    const = torch.ones(2, n, 3, dtype=torch.float64)
    assert float(InfoNCELoss(temperature=t)(const)) == pytest.approx(math.log(n), abs=1e-12)


def test_infonce_row_order_invariant(rng):
    z = rng.standard_normal((2, 12, 4))
    perm = rng.permutation(12)
    a = InfoNCELoss()(torch.tensor(z))
    b = InfoNCELoss()(torch.tensor(z[:, perm]))
    assert float(a) == pytest.approx(float(b), abs=1e-10)


def test_infonce_rejects_bad_temperature():
    for bad in (0, -1.0, True, "0.1"):
        with pytest.raises(ValueError):
            InfoNCELoss(temperature=bad)


# ---------------------------------------------------------------- decorrelation
def test_decorrelation_matches_reference(rng):
    blocks = [rng.standard_normal((20, d)) for d in (3, 2, 4)]
    mask = rng.random(20) < 0.8
    got = DecorrelationLoss()([torch.tensor(b) for b in blocks], torch.tensor(mask))
    assert float(got) == pytest.approx(decorrelation_reference(blocks, mask), abs=1e-12)


def test_decorrelation_analytic_identical_and_independent_blocks(rng):
    # 4 centred, mutually orthogonal, unit-variance columns (a Hadamard design): identical blocks -> d
    h = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=float)[:, 1:]
    h = np.repeat(h, 5, axis=0)  # n = 20, columns still orthogonal with variance 1
    got = DecorrelationLoss()([torch.tensor(h), torch.tensor(h)])
    assert float(got) == pytest.approx(3.0, abs=1e-12)
    a, b = rng.standard_normal((20000, 3)), rng.standard_normal((20000, 3))
    assert float(DecorrelationLoss()([torch.tensor(a), torch.tensor(b)])) < 0.01


def test_decorrelation_standardize_is_scale_free(rng):
    a, b = rng.standard_normal((50, 2)), rng.standard_normal((50, 3))
    loss = DecorrelationLoss(standardize=True)
    one = float(loss([torch.tensor(a), torch.tensor(b)]))
    scaled = float(loss([torch.tensor(a * 100), torch.tensor(b * 0.1)]))
    assert one == pytest.approx(scaled, rel=1e-4)


def test_decorrelation_priority_routes_gradient_only_to_lower_block(rng):
    a = torch.tensor(rng.standard_normal((30, 2)), requires_grad=True)
    b = torch.tensor(rng.standard_normal((30, 2)), requires_grad=True)
    plain = DecorrelationLoss()([a, b])
    loss = DecorrelationLoss()([a, b], priority=[3, 2])
    assert loss.item() == pytest.approx(plain.item(), abs=1e-14)
    loss.backward()
    assert a.grad is None or float(a.grad.abs().sum()) == 0.0
    assert float(b.grad.abs().sum()) > 0


def test_decorrelation_upward_scales_gradient_of_higher_block(rng):
    a0, b0 = rng.standard_normal((30, 2)), rng.standard_normal((30, 2))
    grads = {}
    for up in (0.0, 0.25, 1.0):
        a = torch.tensor(a0, requires_grad=True)
        b = torch.tensor(b0, requires_grad=True)
        loss = DecorrelationLoss(upward=up)([a, b], priority=[3, 2])
        loss.backward()
        ga = torch.zeros_like(a) if a.grad is None else a.grad.clone()
        grads[up] = (loss.item(), ga, b.grad.clone())
    assert grads[0.25][0] == pytest.approx(grads[1.0][0], abs=1e-14)
    torch.testing.assert_close(grads[0.25][1], 0.25 * grads[1.0][1])
    torch.testing.assert_close(grads[0.25][2], grads[1.0][2])
    assert float(grads[0.0][1].abs().sum()) == 0.0
    with pytest.raises(ValueError):
        DecorrelationLoss(upward=1.5)


def test_decorrelation_row_order_invariant(rng):
    blocks = [rng.standard_normal((25, 3)), rng.standard_normal((25, 2))]
    perm = rng.permutation(25)
    a = DecorrelationLoss()([torch.tensor(b) for b in blocks])
    b = DecorrelationLoss()([torch.tensor(x[perm]) for x in blocks])
    assert float(a) == pytest.approx(float(b), abs=1e-12)


def test_decorrelation_rejects_mismatched_rows():
    with pytest.raises(ValidationError, match="block 1"):
        DecorrelationLoss()([torch.zeros(5, 2), torch.zeros(4, 2)])


# ---------------------------------------------------------------- group penalty
def test_group_penalty_reference_and_zero(rng):
    gs = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    got = GroupPenalty(eps=0.0)([torch.tensor(g) for g in gs])
    assert float(got) == pytest.approx(sum(np.linalg.norm(g) for g in gs), abs=1e-12)
    sized = GroupPenalty(scale_by_size=True, eps=0.0)([torch.tensor(g) for g in gs])
    assert float(sized) == pytest.approx(sum(np.sqrt(g.size) * np.linalg.norm(g) for g in gs), abs=1e-12)
    assert float(GroupPenalty()([torch.zeros(3, 3)])) < 1e-5


def test_group_penalty_gradient_finite_at_zero():
    w = torch.zeros(3, 3, requires_grad=True)
    GroupPenalty()([w]).backward()
    assert torch.isfinite(w.grad).all()

"""Deep HCL's pruning rules: the permutation null and the fixed threshold (issue 14, target (f))."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hcl.deep import HCL  # noqa: E402
from hcl.deep.pruning import MIN_RELATIVE_ALIGNMENT, _pair_z, _residual  # noqa: E402
from hcl.losses import SpectralLoss  # noqa: E402

from .conftest import simulate  # noqa: E402

FAST = dict(max_epochs=8, batch_size=128, hidden=(16,), embedding_dim=4, verbose=False, random_state=3)


def test_pair_z_separates_shared_from_independent_blocks():
    """Two 8-wide blocks sharing 2 factors at low signal (raw alignment well under the old 0.3) clear
    the null by far (z about 7); independent blocks sit inside it."""
    rng = np.random.default_rng(0)
    n = 500
    f = rng.normal(size=(n, 2))
    load = rng.normal(size=(2, 8)) * 0.4
    za = f @ load + rng.normal(size=(n, 8))
    zb = f @ load + rng.normal(size=(n, 8))
    spectral = SpectralLoss(normalize=True)
    align, z = _pair_z(za, zb, spectral, np.random.default_rng(1))
    assert align < 0.2 and z > 6
    _, z0 = _pair_z(za, rng.normal(size=(n, 8)), spectral, np.random.default_rng(1))
    assert abs(z0) < 4


def test_residual_removes_a_larger_structures_factors():
    """A block that only repeats a kept larger structure's factors aligns on them, but not once they are
    residualised out: the repetition is not evidence for the smaller structure."""
    rng = np.random.default_rng(2)
    n = 500
    g = rng.normal(size=(n, 2))
    big_a, big_b = g @ rng.normal(size=(2, 4)), g @ rng.normal(size=(2, 4))
    load = rng.normal(size=(2, 4))  # trained heads map a shared factor to the same coordinates
    small_a = g @ load + 0.3 * rng.normal(size=(n, 4))
    small_b = g @ load + 0.3 * rng.normal(size=(n, 4))
    spectral = SpectralLoss(normalize=True)
    _, z_raw = _pair_z(small_a, small_b, spectral, np.random.default_rng(0))
    _, z_res = _pair_z(_residual(small_a, [big_a]), _residual(small_b, [big_b]), spectral, np.random.default_rng(0))
    assert z_raw > 8 and abs(z_res) < 4


def test_threshold_rule_is_the_earlier_one_and_permutation_reports_z():
    sim = simulate(n=400, seed=1)
    old = HCL(**FAST, prune="threshold").fit(sim.X)
    summ = old.summary.set_index("structure")
    shared = [s for s in old.candidates_ if "+" in s]
    for s in shared:
        assert summ.loc[s, "kept"] == (summ.loc[s, "weakest_pair_alignment"] >= 0.3)
    assert "weakest_pair_z" not in summ.columns
    new = HCL(**FAST).fit(sim.X)
    summ = new.summary.set_index("structure")
    for s in [s for s in new.candidates_ if "+" in s]:
        significant = summ.loc[s, "weakest_pair_z"] >= 4.0
        small = summ.loc[s, "relative_alignment"] < MIN_RELATIVE_ALIGNMENT  # NaN (no kept superset): False
        assert summ.loc[s, "kept"] == (significant and not small)
    assert summ.loc[[s for s in new.candidates_ if "+" not in s], "kept"].all()


def test_prune_parameters_are_validated():
    from hcl.exceptions import ValidationError

    X = simulate(n=100, seed=0).X
    with pytest.raises(ValidationError, match="prune"):
        HCL(**FAST, prune="fixed").fit(X)
    with pytest.raises(ValidationError, match="prune_z"):
        HCL(**FAST, prune_z=-1.0).fit(X)


@pytest.mark.parametrize("strength, kept", [(1.0, True), (0.25, False)])
def test_relative_alignment_gates_significant_but_weak_pairs(strength, kept):
    """A pair block sharing its own factor is kept when it aligns about as well as the same two
    modalities do in the kept global block, and pruned when it aligns significantly (z > 4) but at a
    small fraction of that: a weak dependence no structure describes (issue 14, the demo's codes+medications)."""
    from hcl.deep.pruning import _null_test

    rng = np.random.default_rng(5)
    n, mods = 800, ["a", "b", "c"]
    g, h = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    lg, lh = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    emb = {
        m: {
            "a+b+c": torch.as_tensor(g @ lg + 0.5 * rng.normal(size=(n, 4)), dtype=torch.float32),
            "a+b": torch.as_tensor(strength * h @ lh + 0.5 * rng.normal(size=(n, 4)), dtype=torch.float32),
        }
        for m in mods
    }
    mask = torch.ones((3, n), dtype=torch.bool)
    z, _, ratio = _null_test(
        "a+b", ["a", "b"], mods, emb, mask, {"a+b+c": 4}, SpectralLoss(normalize=True), np.random.default_rng(0)
    )
    assert z > 4
    assert (ratio >= MIN_RELATIVE_ALIGNMENT) == kept

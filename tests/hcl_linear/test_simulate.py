"""Tests of hcl.simulate.hierarchical: the simulator must follow its model exactly."""

import numpy as np
import pytest

from hcl.exceptions import ValidationError
from hcl.simulate import hierarchical

DIMS = {"a": 6, "b": 8, "c": 10}


def test_shapes_and_truth():
    sim = hierarchical(50, DIMS, {"a+b+c": 2, "a+b": 1, "c": 3}, random_state=0)
    assert sim.modalities == ("a", "b", "c")
    assert sim.structure == {"a+b+c": 2, "a+b": 1, "c": 3}
    assert {m: x.shape for m, x in sim.X.items()} == {"a": (50, 6), "b": (50, 8), "c": (50, 10)}
    assert set(sim.loadings) == {
        ("a", "a+b+c"),
        ("b", "a+b+c"),
        ("c", "a+b+c"),
        ("a", "a+b"),
        ("b", "a+b"),
        ("c", "c"),
    }
    assert sim.loadings[("c", "c")].shape == (10, 3)
    assert sim.z["a+b"].shape == (50, 1)
    assert sim.y is None and sim.y_prob is None and sim.outcome_structures == ()
    assert all(m.all() for m in sim.mask.values())


def test_singular_values_in_range():
    sim = hierarchical(10, DIMS, 3, loading_scale=(0.5, 1.5), random_state=1)
    for blk in sim.loadings.values():
        sv = np.linalg.svd(blk, compute_uv=False)
        assert sv.min() >= 0.5 - 1e-12 and sv.max() <= 1.5 + 1e-12


def test_covariance_matches_model():
    """Sample covariance of X converges to W W^T + noise I."""
    sim = hierarchical(60000, {"a": 4, "b": 5}, 1, noise=0.7, random_state=2)
    W, _ = sim.loading_matrix()
    X = np.hstack([sim.X[m] for m in sim.modalities])
    S = np.cov(X, rowvar=False)
    target = W @ W.T + 0.7 * np.eye(9)
    assert np.max(np.abs(S - target)) < 0.06
    # and the signal is exactly sum of blocks times factors
    recon = sim.z["a+b"] @ sim.loadings[("a", "a+b")].T + sim.z["a"] @ sim.loadings[("a", "a")].T
    np.testing.assert_allclose(sim.signal["a"], recon)


def test_reproducible_and_seed_dependent():
    a = hierarchical(20, DIMS, 1, random_state=5)
    b = hierarchical(20, DIMS, 1, random_state=5)
    c = hierarchical(20, DIMS, 1, random_state=6)
    np.testing.assert_array_equal(a.X["a"], b.X["a"])
    assert not np.allclose(a.X["a"], c.X["a"])


def test_any_M_and_name_order():
    sim = hierarchical(30, {"w": 3, "x": 3, "y": 3, "z": 3}, {"z+w": 1, "x+y+z": 2}, random_state=0)
    assert sim.structure == {"x+y+z": 2, "w+z": 1}
    assert ("w", "w+z") in sim.loadings


def test_missing_pattern():
    sim = hierarchical(1000, DIMS, 1, missing={"a": 0.3, "b": 0.5, "c": 0.4}, random_state=3)
    assert (~sim.mask["a"]).sum() == 300 and (~sim.mask["b"]).sum() == 500 and (~sim.mask["c"]).sum() == 400
    n_obs = sum(sim.mask[m].astype(int) for m in sim.modalities)
    assert n_obs.min() >= 1
    for m in sim.modalities:
        assert np.isnan(sim.X[m][~sim.mask[m]]).all()
        assert np.isfinite(sim.X[m][sim.mask[m]]).all()


def test_missing_impossible_raises():
    with pytest.raises(ValidationError, match="one modality per row"):
        hierarchical(100, {"a": 2, "b": 2}, 1, missing={"a": 0.6, "b": 0.6}, random_state=0)


def test_logistic_outcome():
    sim = hierarchical(
        20000, DIMS, 2, random_state=4, outcome=dict(structures=["b+a", "c"], kind="logistic", strength=2.0)
    )
    assert sim.outcome_structures == ("a+b", "c")
    eta = sum(sim.z[s] @ sim.outcome_coef[s] for s in sim.outcome_structures)
    np.testing.assert_allclose(sim.y_prob, 1 / (1 + np.exp(-eta)))
    assert abs(np.std(eta) - 2.0) < 0.05
    # y is Bernoulli(y_prob): calibration in deciles
    bins = np.quantile(sim.y_prob, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(bins, sim.y_prob) - 1, 0, 9)
    for k in range(10):
        sel = idx == k
        assert abs(sim.y[sel].mean() - sim.y_prob[sel].mean()) < 0.04


def test_linear_outcome_and_errors():
    sim = hierarchical(
        5000, DIMS, 1, random_state=0, outcome=dict(structures=["a"], kind="linear", strength=1.0)
    )
    resid = sim.y - sim.z["a"] @ sim.outcome_coef["a"]
    assert abs(resid.var() - 1.0) < 0.08
    with pytest.raises(ValidationError, match="absent"):
        hierarchical(10, DIMS, {"a": 1}, outcome=dict(structures=["b"]))
    with pytest.raises(ValidationError, match="unknown modality|known modalities"):
        hierarchical(10, DIMS, {"a+q": 1})
    with pytest.raises(ValidationError, match="exceeds"):
        hierarchical(10, DIMS, {"a": 7})
    with pytest.raises(ValidationError, match="at least 2"):
        hierarchical(10, {"a": 3}, 1)


def test_tanh_nonlinearity_bounded_signal():
    sim = hierarchical(200, DIMS, 2, nonlinearity="tanh", noise=0.0, random_state=0)
    assert np.abs(sim.X["c"]).max() <= 1.0

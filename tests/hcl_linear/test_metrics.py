"""Recovery metrics against hand-computable cases."""

import numpy as np
import pytest

from hcl.metrics import (
    gram_errors,
    loading_matrix,
    procrustes_align,
    sin_theta,
    structure_recovery,
    variance_explained,
)
from hcl.simulate import hierarchical

MODS = ("a", "b", "c")


@pytest.fixture(scope="module")
def sim():
    return hierarchical(5, {"a": 5, "b": 6, "c": 7}, 2, random_state=0)


def test_truth_has_zero_error(sim):
    e = gram_errors(sim.loadings, sim.loadings, MODS)
    assert e.mean_block < 1e-10 and e.overall < 1e-10
    assert len(e.blocks) == 12  # 3 private + 6 pairwise + 3 global blocks


def test_rotation_of_whole_estimate_is_aligned_away(sim):
    W, _ = loading_matrix(sim.loadings, MODS)
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(W.shape[1], W.shape[1])))
    e = gram_errors(sim.loadings, W @ Q, MODS)
    assert e.mean_block < 1e-8 and e.overall < 1e-8
    assert np.allclose(procrustes_align(W @ Q, W), W)


def test_zero_estimate_equals_block_norms(sim):
    e = gram_errors(sim.loadings, np.zeros((18, 0)), MODS)
    blk = sim.loadings[("b", "a+c")] if ("b", "a+c") in sim.loadings else sim.loadings[("a", "a+b")]
    np.testing.assert_allclose(e.blocks["error"], e.blocks["norm"])
    row = e.blocks[(e.blocks.modality == "a") & (e.blocks.structure == "a+b")]
    assert row["error"].item() == pytest.approx(np.linalg.norm(blk @ blk.T))
    W, _ = loading_matrix(sim.loadings, MODS)
    assert e.overall == pytest.approx(np.linalg.norm(W @ W.T))


def test_scaled_block_error_known_value():
    A = np.eye(3)[:, :1] * 2.0  # one component, norm 2
    true = {("a", "a+b"): A, ("b", "a+b"): A}
    est = {("a", "a+b"): A / 2, ("b", "a+b"): A / 2}
    e = gram_errors(true, est, ("a", "b"), align=False)
    assert e.blocks["error"].tolist() == pytest.approx([3.0, 3.0])  # |4 - 1|


def test_sin_theta():
    u = np.array([[1.0], [0.0], [0.0], [0.0]])
    v = np.array([[0.0], [1.0], [0.0], [0.0]])
    true = {("a", "a+b"): u[:2], ("b", "a+b"): u[2:]}
    assert sin_theta(true, true, ("a", "b"))["a+b"] == pytest.approx(0.0, abs=1e-12)
    orth = {("a", "a+b"): v[:2], ("b", "a+b"): v[2:]}
    assert sin_theta(true, orth, ("a", "b"))["a+b"] == pytest.approx(1.0)
    c, s = np.cos(0.3), np.sin(0.3)
    tilt = {("a", "a+b"): np.array([[c], [s]]), ("b", "a+b"): np.zeros((2, 1))}
    assert sin_theta(true, tilt, ("a", "b"))["a+b"] == pytest.approx(s)


def test_structure_recovery():
    r = structure_recovery({"a+b": 2, "a": 1, "b": 1}, {"a+b": 3, "a": 1, "a+b+c": 1})
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["missed"] == ["b"] and r["spurious"] == ["a+b+c"] and r["rank_errors"] == {"a+b": (2, 3)}
    assert not r["exact"]
    assert structure_recovery({"a": 2}, {"a": 2, "b": 0})["exact"]


def test_variance_explained_hand_example():
    load = {
        ("a", "a+b"): np.full((2, 1), 1.0),
        ("a", "a"): np.full((2, 1), 2.0),
        ("b", "a+b"): np.ones((3, 1)),
    }
    ve = variance_explained(load, ("a", "b"), noise_variance=1.0)
    # modality a: shared 2, private 8, noise 2 -> 12
    assert ve.loc["a", "a+b"] == pytest.approx(2 / 12) and ve.loc["a", "a"] == pytest.approx(8 / 12)
    assert ve.loc["b", "a+b"] == pytest.approx(3 / 6) and ve.loc["b", "a"] == 0.0

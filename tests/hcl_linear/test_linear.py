"""LinearHCL: simulate from the model, fit, and check recovery against known truth."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone

from hcl.exceptions import ConvergenceWarning, NotFittedError, ValidationError
from hcl.linear import LinearHCL, mp_median, spike_shrinkage
from hcl.metrics import gram_errors, structure_recovery, variance_explained
from hcl.simulate import hierarchical

from .conftest import ABSENT_RANKS, RECOVERY_DIMS, SMALL_DIMS, SMALL_M4_DIMS, naive_loadings


def test_mp_median_matches_simulation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 500))
    eig = np.linalg.eigvalsh(X.T @ X / 2000)
    assert mp_median(0.25) == pytest.approx(np.median(eig), rel=0.01)


def test_spike_shrinkage_inverts_bbp():
    gamma = 0.2
    ell = np.array([0.2, 1.0, 3.0])  # first below sqrt(gamma) = 0.447
    lam = (1 + ell) * (1 + gamma / ell)  # asymptotic sample spike
    lam[0] = (1 + np.sqrt(gamma)) ** 2 * 0.99  # below the edge
    est, shrunk = spike_shrinkage(lam - 1, gamma)
    assert est[0] == 0 and shrunk[0] == 0
    np.testing.assert_allclose(est[1:], ell[1:])
    c2 = (1 - gamma / ell[1:] ** 2) / (1 + gamma / ell[1:])
    np.testing.assert_allclose(shrunk[1:], ell[1:] * c2)


@pytest.fixture(scope="module")
def small_fit():
    sim = hierarchical(4000, SMALL_DIMS, 2, noise=1.0, random_state=0)
    return sim, LinearHCL(ranks=2).fit(sim.X)


def test_recovery_beats_naive_small(small_fit):
    sim, est = small_fit
    e = gram_errors(sim.loadings, est.loadings_, sim.modalities)
    naive = gram_errors(sim.loadings, naive_loadings(sim.X, 14), sim.modalities)
    assert e.mean_block < 0.7 * naive.mean_block
    assert e.overall < naive.overall
    assert est.converged_ and est.n_iter_ > 5
    assert np.isfinite(est.objective_)
    for m in sim.modalities:
        assert est.noise_variance_[m] == pytest.approx(1.0, abs=0.05)


def test_error_falls_with_n():
    errs = []
    for n in (2000, 8000):
        e = []
        for seed in range(2):
            sim = hierarchical(n, SMALL_DIMS, 2, noise=1.0, random_state=seed)
            e.append(
                gram_errors(sim.loadings, LinearHCL(ranks=2).fit(sim.X).loadings_, sim.modalities).mean_block
            )
        errs.append(np.mean(e))
    slope = np.log(errs[1] / errs[0]) / np.log(4)
    assert -0.75 < slope < -0.35


def test_fitted_attributes_and_summary(small_fit, capsys):
    sim, est = small_fit
    assert est.modalities_ == ("a", "b", "c")
    assert est.structure_ == sim.structure
    assert est.loadings_[("b", "a+b")].shape == (60, 2)
    assert ("c", "a+b") not in est.loadings_
    summary = est.summary.set_index("structure")
    assert list(summary.index) == list(sim.structure)
    assert {"kind", "rank", "var_a", "var_b", "var_c", "near_detection_limit"} <= set(summary.columns)
    assert summary.loc["a+b+c", "kind"] == "global" and summary.loc["c", "var_a"] == 0.0
    ve = est.variance_explained_
    true_ve = variance_explained(sim.loadings, sim.modalities, noise_variance=sim.noise)
    assert ve.shape == (3, 7)
    assert np.abs(ve - true_ve.loc[ve.index, ve.columns]).to_numpy().max() < 0.03
    est.print_summary()
    assert "a+b+c" in capsys.readouterr().out


def _r2(Z, z):
    beta, *_ = np.linalg.lstsq(Z, z, rcond=None)
    return 1 - np.sum((z - Z @ beta) ** 2) / np.sum((z - z.mean(axis=0)) ** 2)


def test_transform_recovers_latents(small_fit):
    sim, est = small_fit
    Z = est.transform(sim.X)
    assert set(Z) == set(sim.structure) and Z["a+b"].shape == (4000, 2)
    # oracle posterior means with the true loadings and noise
    W, cols = sim.loading_matrix()
    Xc = np.hstack([sim.X[m] for m in sim.modalities])
    Zo = np.linalg.solve(np.eye(W.shape[1]) + W.T @ W / sim.noise, (Xc @ W / sim.noise).T).T
    for s in sim.structure:
        idx = [j for j, (cs, _) in enumerate(cols) if cs == s]
        r2_oracle = _r2(Zo[:, idx], sim.z[s])
        assert _r2(Z[s], sim.z[s]) > r2_oracle - 0.05, s
        assert r2_oracle > 0.3  # the design carries information about every block


def test_transform_with_missing_modality(small_fit):
    sim, est = small_fit
    X = {m: x[:200].copy() for m, x in sim.X.items()}
    X["c"][:100] = np.nan
    Z = est.transform(X)
    assert all(np.isfinite(z).all() for z in Z.values())
    np.testing.assert_allclose(Z["c"][:100], 0.0)  # no modality of "c" observed: prior mean
    # rows with every modality give the same answer as a full transform
    full = est.transform({m: x[:200] for m, x in sim.X.items()})
    np.testing.assert_allclose(Z["a+b"][100:], full["a+b"][100:])
    # the a+b block, seen through a and b only, still tracks the truth
    beta, *_ = np.linalg.lstsq(full["a+b"], sim.z["a+b"][:200], rcond=None)

    def r2(Zb):
        return 1 - np.sum((sim.z["a+b"][:100] - Zb[:100] @ beta) ** 2) / np.sum(sim.z["a+b"][:100] ** 2)

    assert r2(Z["a+b"]) > 0.5 and r2(full["a+b"]) - r2(Z["a+b"]) < 0.15


def test_fit_with_missing_rows():
    sim = hierarchical(4000, SMALL_DIMS, 2, random_state=3, missing={"a": 0.2, "c": 0.2})
    est = LinearHCL(ranks=2).fit(sim.X)
    full = hierarchical(4000, SMALL_DIMS, 2, random_state=3)
    naive = gram_errors(full.loadings, naive_loadings(full.X, 14), full.modalities).mean_block
    assert gram_errors(sim.loadings, est.loadings_, sim.modalities).mean_block < 0.8 * naive


def test_undetectable_components_shrunk_and_flagged():
    ranks = {"a+b+c": 2, "a": 2, "b": 2, "c": 2}
    sim = hierarchical(3000, SMALL_DIMS, ranks, noise=1.0, random_state=1)
    # make the private block of "b" far below the detection limit sigma^2 sqrt(d/n) = 0.14
    sim.loadings[("b", "b")] *= 0.05
    X = dict(sim.X)
    X["b"] = X["b"] - sim.z["b"] @ (sim.loadings[("b", "b")] / 0.05 * 0.95).T
    est = LinearHCL(ranks=ranks).fit(X)
    summary = est.summary.set_index("structure")
    assert summary.loc["b", "near_detection_limit"]
    assert not summary.loc["a+b+c", "near_detection_limit"]
    assert np.linalg.norm(est.loadings_[("b", "b")]) < 0.2  # shrunk (a noise fit would be ~0.5)
    e = gram_errors(sim.loadings, est.loadings_, sim.modalities)
    blk = e.blocks.set_index(["modality", "structure"])
    assert blk.loc[("b", "b"), "error"] <= 1.1 * blk.loc[("b", "b"), "norm"] + 0.05


def test_noisy_design_not_worse_than_zero():
    sim = hierarchical(3000, SMALL_DIMS, 2, noise=6.0, random_state=2)
    est = LinearHCL(ranks=2).fit(sim.X)
    e = gram_errors(sim.loadings, est.loadings_, sim.modalities)
    assert e.mean_block <= 1.1 * e.blocks["norm"].mean()
    assert est.summary["near_detection_limit"].any()


def test_auto_discovers_small_design():
    ranks = {"a+b+c": 2, "a+b": 1, "b+c": 2, "a": 1, "c": 2}
    sim = hierarchical(5000, SMALL_DIMS, ranks, loading_scale=(1, 2), random_state=0)
    est = LinearHCL().fit(sim.X)
    assert structure_recovery(sim.structure, est.structure_)["exact"], est.structure_
    assert list(est.transform(sim.X)) == list(est.structure_)


@pytest.mark.parametrize(
    "dims, ranks, seed",
    [(RECOVERY_DIMS, 3, 0), (RECOVERY_DIMS, ABSENT_RANKS, 1), (SMALL_M4_DIMS, 1, 2)],
    ids=["full-0", "absent-1", "M4small-2"],
)
def test_discovery_n5000(dims, ranks, seed):
    sim = hierarchical(5000, dims, ranks, noise=1.0, loading_scale=(1, 2), random_state=seed)
    est = LinearHCL(ranks="auto").fit(sim.X)
    rec = structure_recovery(sim.structure, est.structure_)
    assert rec["exact"], rec


def test_refine_options_and_convergence_warning():
    sim = hierarchical(2000, SMALL_DIMS, 1, random_state=0)
    peel = LinearHCL(ranks=1, refine=False).fit(sim.X)
    assert peel.n_iter_ == 0
    ls = LinearHCL(ranks=1, refine="ls").fit(sim.X)
    ml = LinearHCL(ranks=1).fit(sim.X)
    errs = [gram_errors(sim.loadings, m.loadings_, sim.modalities).mean_block for m in (peel, ls, ml)]
    assert errs[2] <= errs[0] * 1.05
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        LinearHCL(ranks=1, max_iter=2).fit(sim.X)


def test_sklearn_contract():
    est = LinearHCL(ranks={"a+b": 2}, refine="ls", tol=1e-6)
    c = clone(est)
    assert c.get_params() == est.get_params()
    c.set_params(ranks=3)
    assert c.ranks == 3 and est.ranks == {"a+b": 2}
    assert not hasattr(c, "structure_")
    sim = hierarchical(500, {"a": 5, "b": 6}, 1, random_state=0)
    assert LinearHCL(ranks=1).fit(sim.X) is not None
    with pytest.raises(NotFittedError):
        c.transform(sim.X)


def test_input_errors_name_modality_and_shape():
    sim = hierarchical(300, {"a": 5, "b": 6}, 1, random_state=0)
    est = LinearHCL(ranks=1).fit(sim.X)
    with pytest.raises(ValidationError, match=r"'b' has shape \(300x7\) but the model expects 6"):
        est.transform({"a": sim.X["a"], "b": np.hstack([sim.X["b"], sim.X["b"][:, :1]])})
    with pytest.raises(ValidationError, match=r"unknown \['c'\]"):
        est.transform({"a": sim.X["a"], "c": sim.X["b"]})
    with pytest.raises(ValidationError, match="unknown modality|known modalities"):
        LinearHCL(ranks={"a+z": 1}).fit(sim.X)
    with pytest.raises(ValidationError, match=r"total rank is 8"):
        LinearHCL(ranks={"a+b": 4, "a": 4}).fit({m: x[:6] for m, x in sim.X.items()})
    with pytest.raises(
        ValidationError, match=r"rank 9 of structure 'a' exceeds the 5 features of modality 'a'"
    ):
        LinearHCL(ranks={"a": 9}).fit(sim.X)
    with pytest.raises(ValidationError, match="at least 2 modalities"):
        LinearHCL(ranks=1).fit({"a": sim.X["a"]})
    with pytest.raises(ValidationError, match="refine"):
        LinearHCL(refine="em").fit(sim.X)
    X = dict(sim.X)
    X["a"] = X["a"].copy()
    X["a"][0, 0] = np.inf
    with pytest.raises(ValidationError, match=r"'a' \(shape 300x5\) contains infinite"):
        LinearHCL(ranks=1).fit(X)


def test_fit_time_scales_with_covariance_not_n():
    import time

    sim = hierarchical(30000, {"a": 30, "b": 60}, 2, random_state=0)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        LinearHCL(ranks=2).fit(sim.X)
    assert time.perf_counter() - t < 5.0


def test_rank_deficient_modality_gets_a_finite_noise_level():
    """A modality whose 60 columns span only 12 dimensions (as note embeddings of a few templated
    sentences do) has a zero-variance null space. Its noise level must come from the spanned part, not
    from the zero median eigenvalue, or every structure containing it looks infinitely strong."""
    sim = hierarchical(2000, {"a": 20, "b": 12}, {"a+b": 2, "a": 1, "b": 1}, noise=1.0, random_state=0)
    rng = np.random.default_rng(1)
    X = {"a": sim.X["a"], "b": sim.X["b"] @ rng.normal(size=(12, 60))}  # rank 12 in 60 columns
    model = LinearHCL(ranks="auto", refine=False).fit(X)
    assert 1e-3 < model.noise_variance_["b"] < 1e3, model.noise_variance_
    assert np.isfinite(model.summary["min_snr"]).all() and model.summary["min_snr"].max() < 1e6
    assert "a+b" in model.structure_

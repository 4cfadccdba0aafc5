"""Issue 17: the EM refinement, the streaming statistics pass, n_threads, persistence and parameter checks."""

import tracemalloc

import numpy as np
import pytest

from hcl.exceptions import ValidationError
from hcl.linear import LinearHCL
from hcl.linear.em import ml_em
from hcl.linear.moments import Moments
from hcl.simulate import hierarchical

from .conftest import SMALL_DIMS


def _chunks(X, sizes):
    out, start = [], 0
    for size in sizes:
        out.append({m: x[start : start + size] for m, x in X.items()})
        start += size
    return out


def _assert_same_fit(a, b, rtol=1e-8):
    assert a.structure_ == b.structure_
    for key, v in a.loadings_.items():
        np.testing.assert_allclose(b.loadings_[key], v, rtol=rtol, atol=rtol * np.abs(v).max())
    for m in a.modalities_:
        assert b.noise_variance_[m] == pytest.approx(a.noise_variance_[m], rel=rtol)
        np.testing.assert_allclose(b.mean_[m], a.mean_[m], rtol=rtol, atol=1e-12)
        assert b.n_samples_[m] == a.n_samples_[m]


@pytest.fixture(scope="module")
def missing_sim():
    sim = hierarchical(3000, SMALL_DIMS, 2, random_state=4, missing={"a": 0.2, "c": 0.1})
    X = {m: x + 5.0 for m, x in sim.X.items()}  # an offset: the shifted sums must not lose precision
    return sim, X


def test_partial_fit_over_chunks_equals_fit(missing_sim):
    _, X = missing_sim
    whole = LinearHCL(ranks=2).fit(X)
    chunked = LinearHCL(ranks=2)
    for chunk in _chunks(X, [700, 1, 1299, 1000]):
        chunked.partial_fit(chunk)
    _assert_same_fit(whole, chunked)
    streamed = LinearHCL(ranks=2).fit(iter(_chunks(X, [1500, 1500])))
    _assert_same_fit(whole, streamed)
    Z1, Z2 = whole.transform(X), chunked.transform(X)
    for s in Z1:
        np.testing.assert_allclose(Z2[s], Z1[s], rtol=1e-7, atol=1e-8)


def test_moments_match_the_pairwise_complete_covariance(missing_sim):
    _, X = missing_sim
    mom = Moments(tuple(X), {m: x.shape[1] for m, x in X.items()})
    for chunk in _chunks(X, [1000, 2000]):
        mom.update(chunk)
    S, mean, n_obs = mom.finalize()
    a, c = X["a"], X["c"]
    both = ~np.isnan(a[:, 0]) & ~np.isnan(c[:, 0])
    ma, mc = np.nanmean(a, axis=0), np.nanmean(c, axis=0)
    ref = (a[both] - ma).T @ (c[both] - mc) / both.sum()
    np.testing.assert_allclose(S[mom.slices["a"], mom.slices["c"]], ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mean["a"], ma, rtol=1e-12)
    assert n_obs["a"] == int((~np.isnan(a[:, 0])).sum()) and n_obs["b"] == 3000
    np.testing.assert_array_equal(S, S.T)


def test_em_reaches_a_stationary_point_of_the_likelihood():
    sim = hierarchical(4000, SMALL_DIMS, 2, noise=1.0, random_state=5)
    Xc = np.hstack([x - x.mean(axis=0) for x in sim.X.values()])
    S = Xc.T @ Xc / len(Xc)
    W_true, cols = sim.loading_matrix()
    mask = W_true != 0
    offs = np.cumsum([0] + list(SMALL_DIMS.values()))
    blocks = [slice(offs[i], offs[i + 1]) for i in range(3)]
    rng = np.random.default_rng(0)
    W0 = (W_true + 0.3 * rng.standard_normal(W_true.shape)) * mask
    res = ml_em(S, W0, mask, np.full(S.shape[0], 2.0), blocks, max_iter=20000, tol=1e-13)
    assert res.converged
    # gradient of f = 1/2 (log det Sigma + tr(Sigma^-1 S)) in W, written plainly
    Sigma = res.W @ res.W.T + np.diag(res.psi)
    Si = np.linalg.inv(Sigma)
    grad = (Si @ res.W - Si @ S @ Si @ res.W) * mask
    assert np.abs(grad).max() < 1e-4
    f = 0.5 * (np.linalg.slogdet(Sigma)[1] + np.trace(Si @ S))
    assert res.objective == pytest.approx(f, abs=1e-6)
    f0 = 0.5 * (
        np.linalg.slogdet(W0 @ W0.T + 2 * np.eye(len(S)))[1]
        + np.trace(np.linalg.solve(W0 @ W0.T + 2 * np.eye(len(S)), S))
    )
    assert res.objective < f0


def test_em_never_lowers_the_likelihood_and_stops_at_max_iter():
    sim = hierarchical(2000, SMALL_DIMS, 1, noise=4.0, random_state=6)
    Xc = np.hstack([x - x.mean(axis=0) for x in sim.X.values()])
    S = Xc.T @ Xc / len(Xc)
    W, _ = sim.loading_matrix()
    offs = np.cumsum([0] + list(SMALL_DIMS.values()))
    blocks = [slice(offs[i], offs[i + 1]) for i in range(3)]
    objs = []
    for it in (1, 3, 9, 30, 90):
        res = ml_em(S, W * 0.5, W != 0, np.full(len(S), 1.0), blocks, max_iter=it, tol=0.0)
        assert not res.converged and res.n_iter == it
        objs.append(res.objective)
    assert all(b <= a + 1e-10 for a, b in zip(objs, objs[1:], strict=False))


def test_chunked_fit_memory_is_a_fraction_of_the_dense_array():
    rng = np.random.default_rng(0)
    dims = {"a": 60, "b": 100, "c": 140}
    n, chunk = 40_000, 2_000
    A = {m: rng.standard_normal((d, 2)) for m, d in dims.items()}

    def stream():
        for _ in range(n // chunk):
            z = rng.standard_normal((chunk, 2))
            yield {m: z @ A[m].T + rng.standard_normal((chunk, d)) for m, d in dims.items()}

    tracemalloc.start()
    est = LinearHCL(ranks={"a+b+c": 2}).fit(stream())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert est.n_samples_ == {m: n for m in dims}
    assert peak < 0.25 * n * sum(dims.values()) * 8


def test_n_threads_limits_blas_during_fit(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    update = Moments.update

    def spy(self, X):
        seen.append(max(p["num_threads"] for p in threadpool_info()))
        return update(self, X)

    monkeypatch.setattr(Moments, "update", spy)
    sim = hierarchical(500, {"a": 5, "b": 6}, 1, random_state=0)
    with threadpool_limits(2):
        LinearHCL(ranks=1, n_threads=1).fit(sim.X)
        LinearHCL(ranks=1).fit(sim.X)
        after = max(p["num_threads"] for p in threadpool_info())
    assert seen[0] == 1 and after == seen[1]


def test_save_load_round_trip_reproduces_transform(tmp_path, missing_sim):
    _, X = missing_sim
    est = LinearHCL(ranks="auto", max_rank=3).fit(X)
    est.save(tmp_path / "m")
    back = LinearHCL.load(tmp_path / "m")
    assert back.get_params() == est.get_params()
    Z0, Z1 = est.transform(X), back.transform(X)
    assert list(Z0) == list(Z1)
    for s in Z0:
        np.testing.assert_array_equal(Z1[s], Z0[s])
    assert back.summary.equals(est.summary)
    assert back.variance_explained_.equals(est.variance_explained_)
    with pytest.raises(ValidationError, match="loaded without its statistics"):
        back.partial_fit(X)


def test_parameters_checked_by_sklearn_constraints():
    sim = hierarchical(300, {"a": 5, "b": 6}, 1, random_state=0)
    est = LinearHCL()
    assert set(est._parameter_constraints) == set(est.get_params())
    for bad in (dict(tol=-1.0), dict(max_iter=0), dict(ranks="all"), dict(n_threads=0), dict(refine="em")):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            LinearHCL(**bad).fit(sim.X)
    with pytest.raises(ValidationError, match="empty iterable"):
        LinearHCL(ranks=1).fit(iter([]))

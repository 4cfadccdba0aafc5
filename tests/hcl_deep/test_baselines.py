"""Baselines: same fit/transform API, block names, missing rows, and recovery where they should work."""

import numpy as np
import pytest

from hcl.baselines import CLIP, JIVE, PCA, Concat, SharedPrivate
from hcl.exceptions import NotFittedError, ValidationError
from hcl.simulate import hierarchical

from .conftest import r2_table

pytestmark = pytest.mark.filterwarnings("ignore::hcl.exceptions.ConvergenceWarning")
DEEP = dict(max_epochs=5, batch_size=128, hidden=(16,), embedding_dim=4, verbose=False, random_state=0)


@pytest.fixture(scope="module")
def linear_sim():
    ranks = {"a+b+c": 2, "a": 2, "b": 2, "c": 2}
    return hierarchical(
        1000,
        {"a": 15, "b": 20, "c": 25},
        ranks,
        noise=0.2,
        random_state=5,
        loading_scale=(2.0, 3.0),
        missing={"b": 0.2},
    )


def test_concat_standardises_and_zero_imputes(linear_sim):
    out = Concat().fit_transform(linear_sim.X)
    assert list(out) == ["concat"] and out["concat"].shape == (1000, 60)
    block = out["concat"]
    obs = linear_sim.mask["b"]
    np.testing.assert_allclose(block[obs, 15:35].mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(block[obs, 15:35].std(0), 1, atol=1e-10)
    np.testing.assert_array_equal(block[~obs, 15:35], 0.0)


def test_pca_matches_svd_of_concat(linear_sim):
    pca = PCA(n_components=5).fit(linear_sim.X)
    scores = pca.transform(linear_sim.X)["pca"]
    Z = Concat().fit_transform(linear_sim.X)["concat"]
    Z = Z - Z.mean(0)
    _u, s, _vt = np.linalg.svd(Z, full_matrices=False)
    np.testing.assert_allclose(np.linalg.norm(scores, axis=0), s[:5], rtol=1e-8)
    with pytest.raises(ValidationError, match="n_components"):
        PCA(n_components=0).fit(linear_sim.X)


def test_jive_recovers_global_and_private_on_linear_data(linear_sim):
    jive = JIVE(joint_rank=2, individual_rank=2).fit(linear_sim.X)
    out = jive.transform(linear_sim.X)
    assert set(out) == {"a+b+c", "a", "b", "c"} and jive.n_iter_ >= 2
    table = r2_table(out, linear_sim)
    assert table[("a+b+c", "a+b+c")] > 0.85
    for m in ("a", "c"):
        assert table[(m, m)] > 0.85 and table[(m, "a+b+c")] < 0.2
    assert table[("a+b+c", "a")] < 0.2


def test_jive_rejects_bad_rank(linear_sim):
    with pytest.raises(ValidationError, match="modality 'b'"):
        JIVE(individual_rank={"a": 1, "b": -1, "c": 1}).fit(linear_sim.X)


def test_clip_and_shared_private_blocks(linear_sim, tmp_path):
    clip = CLIP(**DEEP).fit(linear_sim.X)
    assert list(clip.transform(linear_sim.X)) == ["a+b+c"]
    assert clip.loss == "infonce" and "structures" not in clip.get_params()
    loaded = CLIP.load(clip.save(tmp_path / "clip"))
    np.testing.assert_array_equal(
        loaded.transform(linear_sim.X)["a+b+c"], clip.transform(linear_sim.X)["a+b+c"]
    )
    sp = SharedPrivate(**DEEP).fit(linear_sim.X)
    assert list(sp.candidates_) == ["a+b+c", "a", "b", "c"]
    out = sp.transform(linear_sim.X)
    assert all(np.isfinite(b).all() for b in out.values())


def test_not_fitted_and_wrong_modalities(linear_sim):
    with pytest.raises(NotFittedError):
        Concat().transform(linear_sim.X)
    model = Concat().fit(linear_sim.X)
    with pytest.raises(ValidationError, match="unknown"):
        model.transform({**linear_sim.X, "d": linear_sim.X["a"]})

"""Deep HCL: recovery on a small nonlinear simulation, determinism, persistence, resume, missing rows."""

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")

from hcl.deep import HCL  # noqa: E402
from hcl.exceptions import NotFittedError, ValidationError  # noqa: E402
from hcl.structures import all_structures  # noqa: E402

from .conftest import r2_table, simulate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::hcl.exceptions.ConvergenceWarning")

FAST = dict(max_epochs=8, batch_size=128, hidden=(16,), embedding_dim=4, verbose=False, random_state=3)


@pytest.fixture(scope="module")
def fitted_recovery():
    # every structure of rank 2 except the partially shared "a+c", which is absent
    ranks = {s: 2 for s in all_structures(["a", "b", "c"]) if s != "a+c"}
    sim = simulate(n=2000, seed=0, ranks=ranks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HCL(random_state=0, verbose=False, max_epochs=80, n_threads=1).fit(sim.X)
    return sim, model


def test_deep_recovers_shared_blocks(fitted_recovery):
    sim, model = fitted_recovery
    table = r2_table(model.transform(sim.X, structures=list(model.candidates_)), sim)
    shared = [s for s in sim.z if "+" in s]
    assert "a+c" not in shared
    for s in shared:
        assert table[(s, s)] >= 0.75, (s, table[(s, s)])
        for t in shared:
            if t != s:
                assert table[(s, t)] <= 0.25, (s, t, table[(s, t)])


def test_absent_shared_structure_is_pruned(fitted_recovery):
    sim, model = fitted_recovery
    summ = model.summary.set_index("structure")
    assert set(model.structure_) == set(model.candidates_) - {"a+c"}
    assert summ.loc["a+c", "alignment"] < 0.1 and not summ.loc["a+c", "kept"]
    for s in ("a+b+c", "a+b", "b+c"):
        assert summ.loc[s, "alignment"] > 0.5 and summ.loc[s, "kept"]
    # the group penalty shrinks the unsupported heads below every supported shared structure's
    assert summ.loc["a+c", "relative_norm"] < summ.loc[["a+b+c", "a+b", "b+c"], "relative_norm"].min()
    assert set(model.transform(sim.X)) == set(model.structure_)


def test_fitted_attributes_and_summary(fitted_recovery):
    sim, model = fitted_recovery
    assert model.modalities_ == ["a", "b", "c"]
    assert list(model.candidates_) == all_structures(["a", "b", "c"])
    assert len(model.history_) == model.n_epochs_ == len(model.val_history_)
    assert model.history_[-1] < model.history_[0]
    summ = model.summary
    assert list(summ["structure"]) == list(model.candidates_)
    assert {"kind", "dim", "head_norm_a", "head_norm_b", "head_norm_c", "alignment", "kept"} <= set(
        summ.columns
    )
    assert np.isnan(summ.loc[summ.structure == "a", "head_norm_b"]).all()
    assert summ.loc[summ.structure == "a+b+c", "kind"].item() == "global"


def test_same_seed_gives_identical_results(small_sim):
    def blocks(seed):
        model = HCL(**{**FAST, "random_state": seed}).fit(small_sim.X)
        # every trained block: a short fit may keep only the private ones, which are residual PCs
        return model.transform(small_sim.X, structures=list(model.candidates_))

    a, b, c = blocks(3), blocks(3), blocks(4)
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])
    assert any(not np.array_equal(a[s], c[s]) for s in a)


def test_save_load_round_trip(tmp_path, small_sim):
    model = HCL(**FAST).fit(small_sim.X)
    path = model.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.safetensors"]
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["modalities"] == ["a", "b", "c"]
    loaded = HCL.load(path)
    before, after = model.transform(small_sim.X), loaded.transform(small_sim.X)
    assert before.keys() == after.keys()
    for s in before:
        np.testing.assert_array_equal(before[s], after[s])
    assert loaded.structure_ == model.structure_ and loaded.history_ == model.history_
    model.save(path)  # overwriting an existing model folder works
    with pytest.raises(ValidationError, match="config.json"):
        HCL.load(tmp_path / "nowhere")


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, small_sim, monkeypatch):
    params = {**FAST, "patience": None, "max_epochs": 6}
    reference = HCL(**params).fit(small_sim.X)

    def interrupt(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt

    ckpt = tmp_path / "ckpt"
    monkeypatch.setattr(HCL, "_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        HCL(**params, checkpoint_dir=ckpt).fit(small_sim.X)
    monkeypatch.undo()
    assert (ckpt / "checkpoint.pt").is_file()
    resumed = HCL(**params, checkpoint_dir=ckpt).fit(small_sim.X)
    assert resumed.history_ == reference.history_
    a, b = reference.transform(small_sim.X), resumed.transform(small_sim.X)
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])


def test_checkpoint_from_other_data_is_refused(tmp_path, small_sim):
    ckpt = tmp_path / "ckpt"
    HCL(**FAST, checkpoint_dir=ckpt).fit(small_sim.X)
    other = {m: a + 1.0 for m, a in small_sim.X.items()}
    with pytest.raises(ValidationError, match="checkpoint"):
        HCL(**FAST, checkpoint_dir=ckpt).fit(other)


def test_missing_modality_rows():
    sim = simulate(n=400, missing={"a": 0.3, "c": 0.2}, seed=2)
    model = HCL(**FAST).fit(sim.X)
    out = model.transform(sim.X, structures=list(model.candidates_))
    for s, block in out.items():
        assert block.shape == (400, model.candidates_[s]) and np.isfinite(block).all()
    miss_a = ~sim.mask["a"]
    assert miss_a.sum() == 120
    np.testing.assert_array_equal(out["a"][miss_a], 0.0)  # no modality of "a": zeros
    assert np.abs(out["a+b"][miss_a]).sum() > 0  # b's encoder is used
    # a row's block for a+b uses only b when a is missing: equals b's head alone
    only_b = model.transform(
        {"a": np.full_like(sim.X["a"], np.nan), "b": sim.X["b"], "c": sim.X["c"]}, structures=["a+b"]
    )
    np.testing.assert_allclose(out["a+b"][miss_a], only_b["a+b"][miss_a], rtol=1e-6, atol=1e-7)


def test_errors_are_clear(small_sim):
    with pytest.raises(NotFittedError):
        HCL().transform(small_sim.X)
    with pytest.raises(ValidationError, match="loss"):
        HCL(loss="triplet").fit(small_sim.X)
    with pytest.raises(ValidationError, match="unknown modality|not a"):
        HCL(structures=["a+z"], **{k: v for k, v in FAST.items()}).fit(small_sim.X)
    model = HCL(**FAST).fit(small_sim.X)
    with pytest.raises(ValidationError, match="'b'"):
        model.transform({"a": small_sim.X["a"], "c": small_sim.X["c"]})
    with pytest.raises(ValidationError, match="columns"):
        model.transform({**small_sim.X, "b": small_sim.X["b"][:, :5]})


def test_structures_dict_and_params_contract(small_sim):
    model = HCL(structures={"a+b": 3, "c": 2}, **{k: v for k, v in FAST.items() if k != "embedding_dim"})
    assert model.get_params()["structures"] == {"a+b": 3, "c": 2}
    model.fit(small_sim.X)
    assert model.candidates_ == {"a+b": 3, "c": 2}
    out = model.transform(small_sim.X, structures=["a+b", "c"])
    assert out["a+b"].shape == (400, 3) and out["c"].shape == (400, 2)
    from sklearn.base import clone

    c = clone(model)
    assert c.get_params() == model.get_params() and not hasattr(c, "net_")


def test_verbose_false_is_silent(small_sim, capsys):
    HCL(**FAST).fit(small_sim.X)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_hitting_max_epochs_warns(small_sim):
    from hcl.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="max_epochs=8"):
        HCL(**FAST).fit(small_sim.X)


def test_fusion_that_does_not_converge_warns_naming_the_structure(small_sim, monkeypatch):
    import hcl.deep
    from hcl.exceptions import ConvergenceWarning

    monkeypatch.setattr(hcl.deep, "_FUSION_MAX_ITER", 2)
    with pytest.warns(ConvergenceWarning, match=r"factor model of a\+b did not converge in 2 EM"):
        HCL(**{**FAST, "prune": "threshold", "prune_threshold": 0.0}).fit(small_sim.X)


@pytest.mark.parametrize("extra", [{"loss": "infonce", "temperature": 0.2}, {"hidden": ()}, {"hidden": 8}])
def test_variants_train_and_decrease_the_objective(small_sim, extra):
    params = {**FAST, "patience": None, "max_epochs": 10, **extra}
    model = HCL(**params).fit(small_sim.X)
    assert model.history_[-1] < model.history_[0]
    out = model.transform(small_sim.X)
    assert all(np.isfinite(b).all() and b.shape[0] == 400 for b in out.values())


def test_strict_missing_drops_rows_whose_observed_part_is_a_smaller_candidate(small_sim):
    import torch

    model = HCL(**FAST).fit(small_sim.X)
    # rows: all observed | only b, c | only a, b | only c
    mask = torch.tensor([[True, False, True, False], [True, True, True, False], [True, True, False, True]])
    got = model._alignment_mask("a+b+c", ("a", "b", "c"), mask)
    assert got[:, 0].all() and not got[:, 1].any() and not got[:, 2].any()
    model.set_params(strict_missing=False)
    torch.testing.assert_close(model._alignment_mask("a+b+c", ("a", "b", "c"), mask), mask)
    # a pair has no smaller shared candidate: unchanged
    pair = mask[:2]
    model.set_params(strict_missing=True)
    torch.testing.assert_close(model._alignment_mask("a+b", ("a", "b"), pair), pair)


def test_factor_fusion_downweights_a_noisy_modality():
    """With one modality's features drowned in noise, fusing the heads through their factor model
    recovers the shared factors better than averaging the heads equally (known truth, fixed seed)."""
    sim = simulate(n=2000, seed=3, ranks={"a+b+c": 2})
    rng = np.random.default_rng(0)
    X = dict(sim.X)
    X["c"] = X["c"] + rng.normal(scale=3.0, size=X["c"].shape)
    r2 = {}
    for fusion in ("factor", "mean"):
        est = HCL(structures={"a+b+c": 2}, hidden=(), fusion=fusion, max_epochs=60, random_state=0, verbose=False)
        blocks = est.fit(X).transform(X)
        r2[fusion] = r2_table(blocks, sim)[("a+b+c", "a+b+c")]
    assert est.fusion_ == {} and r2["factor"] > 0.9
    # the unexplained variance of the shared factors drops by at least a quarter (measured: 0.057 vs 0.089)
    assert 1 - r2["factor"] < 0.75 * (1 - r2["mean"]), r2


def test_absent_triple_is_dropped_and_the_pair_it_starved_is_found():
    """Four modalities, truth = global + a+b + privates. Trained with every candidate, a block of a+b+c
    earns part of its reward from a and b agreeing alone; the weakest-pair test drops such triples and
    the refit recovers a+b."""
    ranks = {"a+b+c+d": 2, "a+b": 2, "a": 1, "b": 1, "c": 1, "d": 1}
    sim = simulate(n=2000, seed=5, dims={m: 15 for m in "abcd"}, ranks=ranks)
    model = HCL(hidden=(), embedding_dim=4, max_epochs=60, random_state=0, verbose=False, n_threads=1).fit(sim.X)
    summ = model.summary.set_index("structure")
    assert set(model.structure_) == set(ranks), model.summary[["structure", "weakest_pair_alignment", "kept"]]
    assert {"a+b+c", "a+b+d"} <= set(model.dropped_structures_)
    assert all(not summ.loc[s, "kept"] for s in model.dropped_structures_)
    table = r2_table(model.transform(sim.X), sim)
    assert table[("a+b", "a+b")] >= 0.8 and table[("a+b+c+d", "a+b+c+d")] >= 0.8, table


def test_residual_private_blocks_recover_the_private_factors():
    """A private block is what its modality carries beyond its shared blocks: it recovers the modality's
    own factors and none of the shared ones (known truth, fixed seed)."""
    ranks = {"a+b+c": 2, "a+b": 2, "a": 2, "b": 2, "c": 2}
    sim = simulate(n=2000, seed=2, ranks=ranks)
    r2 = {}
    for private in ("residual", "contrastive"):
        model = HCL(hidden=(), embedding_dim=2, private=private, max_epochs=60, random_state=0, verbose=False)
        r2[private] = r2_table(model.fit(sim.X).transform(sim.X), sim)
    table = r2["residual"]
    # measured (residual vs contrastive own R²): a 0.74 vs 0.39, b 0.83 vs 0.59, c 0.89 vs 0.35
    for m in "abc":
        assert table[(m, m)] >= 0.7 and table[(m, m)] >= r2["contrastive"][(m, m)] + 0.2, m
        assert max(table[(m, s)] for s in ("a+b+c", "a+b")) <= 0.1, m

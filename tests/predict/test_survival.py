"""Cause-specific Cox, concordance with subject bootstrap, KM and Aalen–Johansen curves."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.predict.survival import event_codes, fit_cox, risk_tertiles


def _sim(n, rng, beta=1.0):
    X = rng.normal(size=(n, 3))
    t_event = rng.exponential(10 / np.exp(beta * X[:, 0]))
    t_comp = rng.exponential(20, size=n)
    t = np.minimum.reduce([t_event, t_comp, np.full(n, 30.0)])
    et = np.where(t == t_event, "outcome", np.where(t == t_comp, "competing", "censored"))
    return X, t, et


def test_event_codes_and_tertiles():
    np.testing.assert_array_equal(event_codes(["outcome", "competing", "censored", None]), [1, 2, 0, 0])
    t = risk_tertiles(np.array([5.0, 1.0, 3.0, 2.0, 6.0, 4.0]))
    assert list(t) == ["high", "low", "middle", "low", "high", "middle"]


def test_cox_recovers_informative_risk_and_curves_are_ordered():
    rng = np.random.default_rng(0)
    Xtr, ttr, etr = _sim(400, rng)
    Xho, tho, eho = _sim(300, rng)
    res = fit_cox(Xtr, ttr, etr, Xho, tho, eho, np.arange(300), n_resamples=50, seed=0)
    assert res["c_index"] > 0.65
    assert res["c_index_lo"] < res["c_index"] < res["c_index_hi"]
    # a useless covariate gives c ≈ 0.5
    res0 = fit_cox(Xtr[:, 1:], ttr, etr, Xho[:, 1:], tho, eho, np.arange(300), n_resamples=0)
    assert abs(res0["c_index"] - 0.5) < 0.08
    # at 30 days, the high-risk tertile has lower survival and higher cumulative incidence than the low one
    last = {}
    for row in res["km"]:
        last[("km", row["group"])] = row["y"]
    for row in res["cif"]:
        last[("cif", row["group"])] = row["y"]
    assert last[("km", "high")] < last[("km", "low")]
    assert last[("cif", "high")] > last[("cif", "low")]
    cif_high = [r["y"] for r in res["cif"] if r["group"] == "high"]
    assert np.all(np.diff(cif_high) >= -1e-12) and cif_high[-1] <= 1.0


def test_no_events_in_train_is_reported_not_raised():
    rng = np.random.default_rng(1)
    X, t, _ = _sim(50, rng)
    res = fit_cox(X, t, np.array(["censored"] * 50), X, t, np.array(["censored"] * 50), np.arange(50))
    assert np.isnan(res["c_index"]) and res["n_events_train"] == 0


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_nonpositive_durations_are_clipped_and_counted(bad):
    rng = np.random.default_rng(2)
    X, t, e = _sim(120, rng)
    t[0] = bad
    res = fit_cox(X, t, e, X, t, e, np.arange(120), n_resamples=0)
    assert res["n_clipped_durations"] == 2  # counted once in train and once in held_out


def test_wide_representation_enters_through_principal_components_and_survives_wild_values():
    rng = np.random.default_rng(4)
    Xtr, ttr, etr = _sim(400, rng)
    Xho, tho, eho = _sim(300, rng)
    wide_tr = np.hstack(
        [Xtr[:, :1] * np.ones((1, 5)) + 0.1 * rng.normal(size=(400, 5)), rng.normal(size=(400, 55))]
    )
    wide_ho = np.hstack(
        [Xho[:, :1] * np.ones((1, 5)) + 0.1 * rng.normal(size=(300, 5)), rng.normal(size=(300, 55))]
    )
    wide_tr[0, 10] = 1e18  # a wild value (as an unscaled raw feature would give)
    res = fit_cox(wide_tr, ttr, etr, wide_ho, tho, eho, np.arange(300), n_resamples=0, max_columns=20)
    assert res["n_cox_columns"] == 20 and res["principal_components"]
    assert res["c_index"] > 0.6

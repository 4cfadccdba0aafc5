"""Metric functions against scikit-learn / plain references, calibration recovery, subject bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from pipeline.predict import metrics as M


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    n = 400
    y = rng.random(n) < 0.3
    p = np.clip(0.3 + 0.25 * (y - 0.3) + rng.normal(scale=0.2, size=n), 0.01, 0.99)
    p = np.round(p, 2)  # ties on purpose
    w = rng.integers(0, 4, size=n).astype(float)
    return y, p, w


def test_auroc_auprc_brier_match_sklearn(data):
    y, p, w = data
    assert M.auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert M.auroc(y, p, w) == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    assert M.auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert M.auprc(y, p, w) == pytest.approx(average_precision_score(y, p, sample_weight=w), abs=1e-12)
    assert M.brier(y, p, w) == pytest.approx(brier_score_loss(y, p, sample_weight=w), abs=1e-12)


def test_auroc_undefined_with_one_class():
    assert np.isnan(M.auroc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert np.isnan(M.auprc([0, 0], [0.1, 0.2]))


def test_calibration_slope_one_on_calibrated_data_and_detects_overconfidence():
    rng = np.random.default_rng(7)
    n = 20_000
    eta = rng.normal(-1, 1.2, size=n)
    p = 1 / (1 + np.exp(-eta))
    y = rng.random(n) < p
    intercept, slope = M.calibration_intercept_slope(y, p)
    assert slope == pytest.approx(1.0, abs=0.06)
    assert intercept == pytest.approx(0.0, abs=0.05)
    assert M.ece(y, p) < 0.02
    # over-confident predictions (logit doubled): slope ≈ 0.5
    p_over = 1 / (1 + np.exp(-2 * eta))
    _, slope_over = M.calibration_intercept_slope(y, p_over)
    assert slope_over == pytest.approx(0.5, abs=0.05)
    assert M.ece(y, p_over) > 0.05
    # systematic under-prediction: intercept ≈ +log(2)-ish shift recovered
    p_low = 1 / (1 + np.exp(-(eta - 1.0)))
    intercept_low, _ = M.calibration_intercept_slope(y, p_low)
    assert intercept_low == pytest.approx(1.0, abs=0.07)


def test_ece_plain_reference(data):
    y, p, _ = data
    bins = np.minimum((p * 10).astype(int), 9)
    ref = sum(abs(y[bins == b].sum() - p[bins == b].sum()) for b in range(10)) / len(y)
    assert M.ece(y, p) == pytest.approx(ref, abs=1e-12)


def test_subject_bootstrap_keeps_subject_rows_together():
    subjects = np.array([5, 5, 5, 9, 9, 11])
    w = M.subject_bootstrap_weights(subjects, 50, seed=0)
    assert w.shape == (50, 6)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 1] == w[:, 2]) and np.all(w[:, 3] == w[:, 4])
    assert np.all(w[:, [0, 3, 5]].sum(axis=1) == 3)  # 3 subjects drawn per resample


def test_bootstrap_ci_by_subject_does_not_shrink_when_rows_are_duplicated():
    """Duplicating every subject's row k times: row resampling narrows the CI ~sqrt(k), subject resampling does not."""
    rng = np.random.default_rng(3)
    n, k = 150, 25
    y = rng.random(n) < 0.4
    p = np.clip(0.4 + 0.2 * (y - 0.4) + rng.normal(scale=0.25, size=n), 0, 1)
    subjects = np.arange(n)
    base = M.bootstrap_metric(M.auroc, y, p, M.subject_bootstrap_weights(subjects, 400, 0))
    y_k, p_k, s_k = np.repeat(y, k), np.repeat(p, k), np.repeat(subjects, k)
    by_subject = M.bootstrap_metric(M.auroc, y_k, p_k, M.subject_bootstrap_weights(s_k, 400, 0))
    by_row = M.bootstrap_metric(M.auroc, y_k, p_k, M.row_bootstrap_weights(len(y_k), 400, 0))
    width = lambda e: e.hi - e.lo  # noqa: E731
    assert by_subject.value == pytest.approx(base.value)
    assert width(by_subject) == pytest.approx(width(base), rel=0.25)
    assert width(by_row) < 0.4 * width(by_subject)


def test_bootstrap_ci_covers_truth_and_paired_test():
    rng = np.random.default_rng(11)
    n = 600
    y = rng.random(n) < 0.3
    good = y + rng.normal(scale=0.6, size=n)
    bad = y + rng.normal(scale=2.0, size=n)
    w = M.subject_bootstrap_weights(np.arange(n), 300, 1)
    est = M.bootstrap_metric(M.auroc, y, good, w)
    assert est.lo < est.value < est.hi
    same = M.paired_bootstrap(M.auroc, y, good, good, w)
    assert same["diff"] == 0 and same["diff_lo"] == 0 and same["p_value"] == 1.0
    better = M.paired_bootstrap(M.auroc, y, good, bad, w)
    assert better["diff"] > 0 and better["diff_lo"] > 0 and better["p_value"] < 0.01
    worse = M.paired_bootstrap(M.auroc, y, bad, good, w)
    assert worse["diff_hi"] < 0


def test_roc_and_pr_bands_bracket_the_curve():
    rng = np.random.default_rng(2)
    y = rng.random(300) < 0.3
    p = y + rng.normal(size=300)
    grid = np.linspace(0, 1, 21)
    w = M.subject_bootstrap_weights(np.arange(300), 100, 0)
    roc = M.roc_band(y, p, w, grid)
    assert roc["y"][-1] == pytest.approx(1.0) and np.all(np.diff(roc["y"]) >= -1e-12)
    assert np.all(roc["y_lo"] <= roc["y"] + 1e-9) and np.all(roc["y"] <= roc["y_hi"] + 1e-9)
    area = np.trapezoid(roc["y"], grid)
    assert area == pytest.approx(M.auroc(y, p), abs=0.03)
    pr = M.pr_band(y, p, w, grid)
    assert np.all(np.diff(pr["y"]) <= 1e-12)  # interpolated precision is non-increasing in recall


def test_calibration_curve_bins():
    y = np.array([0, 0, 1, 1] * 25)
    p = np.linspace(0, 1, 100)
    bins = M.calibration_curve(y, p, n_bins=4)
    assert [b["n"] for b in bins] == [25, 25, 25, 25]
    assert bins[0]["x"] < bins[-1]["x"]

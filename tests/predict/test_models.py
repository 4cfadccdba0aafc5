"""Downstream models: tuning on the tuning split, determinism, safe JSON export of linear models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.predict.metrics import auroc
from pipeline.predict.models import (
    LinearProbabilityModel,
    _load_pyfunc,
    fit_model,
    linear_weights,
    structure_groups,
)


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    n = 600
    X = rng.normal(size=(n, 4)) * np.array([1.0, 3.0, 0.5, 1.0]) + 2.0
    eta = 1.2 * (X[:, 0] - 2.0) - 0.3 * (X[:, 1] - 2.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return X, y, ["a+b__0", "a+b__1", "a__0", "b__0"]


def test_structure_groups():
    assert structure_groups(["a+b__0", "a+b__1", "a__0", "plain"]) == ["a+b", "a+b", "a", "plain"]


@pytest.mark.parametrize("name", ["logistic", "hgb", "mlp"])
def test_models_learn_and_are_deterministic(xy, name):
    X, y, cols = xy
    m1 = fit_model(name, X[:300], y[:300], X[300:450], y[300:450], cols, seed=3)
    m2 = fit_model(name, X[:300], y[:300], X[300:450], y[300:450], cols, seed=3)
    p1, p2 = m1.predict_proba(X[450:]), m2.predict_proba(X[450:])
    np.testing.assert_array_equal(p1, p2)
    assert auroc(y[450:], p1) > 0.75
    assert m1.hyperparameters and np.isfinite(m1.tuning_log_loss)
    # the chosen grid point is the one with the lowest tuning log-loss
    assert m1.tuning_log_loss == pytest.approx(min(g["tuning_log_loss"] for g in m1.grid_scores))


def test_linear_export_reproduces_predictions_and_loads_from_json(xy, tmp_path):
    X, y, cols = xy
    m = fit_model("logistic", X[:300], y[:300], X[300:450], y[300:450], cols, seed=0)
    w = linear_weights(m)
    json.dumps(w)  # plain numbers only
    served = LinearProbabilityModel(w)
    np.testing.assert_allclose(served.predict(X[450:]), m.predict_proba(X[450:]), rtol=1e-9, atol=1e-12)
    (tmp_path / "weights.json").write_text(json.dumps(w))
    loaded = _load_pyfunc(str(tmp_path / "weights.json"))
    import pandas as pd

    df = pd.DataFrame(X[450:455], columns=cols)[list(reversed(cols))]  # column order does not matter
    np.testing.assert_allclose(loaded.predict(df), m.predict_proba(X[450:455]), rtol=1e-9)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not an ehr-hcl linear model"):
        _load_pyfunc(str(tmp_path / "bad.json"))


@pytest.mark.parametrize("name", ["logistic", "group_lasso"])
def test_column_constant_on_train_exports_as_strict_json(xy, name):
    """StandardScaler gives it scale 1 (it centres to 0 on train, so the model learns no weight for it); the
    JSON export stays standard JSON and predicts the same, and a held-out row where the column takes
    another value predicts as if it had not."""
    X, y, cols = xy
    X = np.column_stack([X, np.full(len(X), 0.1)])
    X[460, -1] = 9.0
    m = fit_model(name, X[:300], y[:300], X[300:450], y[300:450], [*cols, "c__0"], seed=0)
    assert m.scale_[-1] == 1.0
    w = linear_weights(m)
    served = LinearProbabilityModel(json.loads(json.dumps(w, allow_nan=False)))
    np.testing.assert_allclose(served.predict(X[450:]), m.predict_proba(X[450:]), rtol=1e-9, atol=1e-12)
    same_row = X[460:461].copy()
    same_row[0, -1] = 0.1
    assert m.predict_proba(X[460:461])[0] == pytest.approx(m.predict_proba(same_row)[0], abs=1e-9)


def test_non_linear_model_has_no_json_export(xy):
    X, y, cols = xy
    m = fit_model("hgb", X[:200], y[:200], X[200:300], y[200:300], cols, seed=0)
    with pytest.raises(ValueError, match="not linear"):
        linear_weights(m)


def test_single_class_tuning_falls_back_to_the_middle_grid_point(xy, caplog):
    X, y, cols = xy
    m = fit_model("logistic", X[:300], y[:300], X[300:320], np.zeros(20, int), cols, seed=0)
    assert m.hyperparameters == {"C": 0.1} and len(m.grid_scores) == 1
    assert "single class" in caplog.text


def test_group_lasso_keeps_the_outcome_relevant_structure_and_exports_json():
    pytest.importorskip("hcl.selection")
    rng = np.random.default_rng(8)
    n = 900
    blocks = {"a+b": rng.normal(size=(n, 2)), "a": rng.normal(size=(n, 2)), "b": rng.normal(size=(n, 3))}
    X = np.hstack(list(blocks.values())) * 3.0 + 1.0
    cols = [f"{g}__{k}" for g, b in blocks.items() for k in range(b.shape[1])]
    eta = 1.5 * blocks["a+b"][:, 0] - 1.0 * blocks["a+b"][:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    m = fit_model("group_lasso", X[:600], y[:600], X[600:750], y[600:750], cols, seed=0)
    assert m.selected_structures == ["a+b"]
    p = m.predict_proba(X[750:])
    assert auroc(y[750:], p) > 0.8
    served = LinearProbabilityModel(linear_weights(m))
    np.testing.assert_allclose(served.predict(X[750:]), p, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["hgb", "mlp"])
def test_served_pipeline_reads_columns_by_name_and_loads_from_skops(xy, tmp_path, name):
    """The logged scikit-learn model: columns by name in any order, scikit-learn types only in its file."""
    import pandas as pd
    import skops.io as sio

    from pipeline.predict.run import summary_rows
    from pipeline.predict.track import served_pipeline
    from pipeline.tracking import SKOPS_TRUSTED_TYPES

    X, y, cols = xy
    m = fit_model(name, X[:300], y[:300], X[300:450], y[300:450], cols, seed=0)
    served = served_pipeline(m, summary_rows(X[:300], cols))
    df = pd.DataFrame(X[450:], columns=cols)[list(reversed(cols))]
    np.testing.assert_allclose(served.predict_proba(df)[:, 1], m.predict_proba(X[450:]), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError):
        served.predict_proba(df.drop(columns=[cols[0]]))
    sio.dump(served, tmp_path / "model.skops")
    untrusted = sio.get_untrusted_types(file=tmp_path / "model.skops")
    assert set(untrusted) <= set(SKOPS_TRUSTED_TYPES), untrusted
    loaded = sio.load(tmp_path / "model.skops", trusted=SKOPS_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.predict_proba(df), served.predict_proba(df))

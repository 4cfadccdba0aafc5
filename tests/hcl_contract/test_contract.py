"""One estimator contract for every estimator of ``hcl``: scikit-learn's checks, save/load round trips.

The group lasso takes a plain matrix, so it runs scikit-learn's ``check_estimator`` whole, with the checks
it fails listed in ``GROUP_LASSO_SKIPS`` and justified there.

The multi-block transformers (HCL, CLIP, SharedPrivate, JIVE, PCA, Concat, LinearHCL) take ``X`` as a
mapping ``{modality: array (n, d_m)}``, so scikit-learn's generic checks, which feed plain 2-D arrays,
mostly cannot apply. We run the individual checks that test the API itself (``API_CHECKS``: get/set
params, clone, repr, nothing done in ``__init__``, default-constructible, parameter validation, mixin
order, tags), the unfitted checks (``transform`` checks fittedness before it looks at ``X``), and our own
versions on mapping data of the data checks whose intent still applies (``OWN_VERSIONS``). Every other
check scikit-learn would run is in ``MAPPING_SKIPS`` with a one-line reason;
``test_every_sklearn_check_is_run_or_justified`` fails if a new scikit-learn adds a check we have not
placed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils import estimator_checks as ec
from sklearn.utils.validation import check_is_fitted

pytest.importorskip("torch")

from hcl.baselines import CLIP, JIVE, PCA, Concat, SharedPrivate  # noqa: E402
from hcl.deep import HCL  # noqa: E402
from hcl.exceptions import InvalidParameterError, NotFittedError, ValidationError  # noqa: E402
from hcl.linear import LinearHCL  # noqa: E402
from hcl.persistence import PersistenceMixin  # noqa: E402
from hcl.selection import GroupLassoClassifier, GroupLassoRegressor  # noqa: E402
from hcl.simulate import hierarchical  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::hcl.exceptions.ConvergenceWarning")

DEEP = dict(max_epochs=3, batch_size=32, hidden=(8,), embedding_dim=2, verbose=False, random_state=0, n_threads=1)


def _transformers():
    return {
        "HCL": HCL(**DEEP),
        "CLIP": CLIP(**DEEP),
        "SharedPrivate": SharedPrivate(**DEEP),
        "JIVE": JIVE(joint_rank=2, individual_rank=1),
        "PCA": PCA(n_components=3),
        "Concat": Concat(),
        "LinearHCL": LinearHCL(),
    }


def _predictors():
    return {
        "GroupLassoClassifier": GroupLassoClassifier(cv=3, n_alphas=5, random_state=0),
        "GroupLassoRegressor": GroupLassoRegressor(cv=3, n_alphas=5, random_state=0),
    }


ALL = {**_transformers(), **_predictors()}
TRANSFORMERS = list(_transformers())

_ARRAY = "fits on a plain 2-D array; X is a mapping of modalities (input checks: tests/hcl_linear/test_validation.py)"
_ONE_MATRIX = "one feature count / feature names per estimator; a multi-block transformer has one per modality (dims_)"
MAPPING_SKIPS = {
    "check_estimators_dtypes": _ARRAY,
    "check_dtype_object": _ARRAY,
    "check_complex_data": _ARRAY,
    "check_fit1d": _ARRAY,
    "check_fit2d_1sample": _ARRAY,
    "check_fit2d_1feature": _ARRAY,
    "check_fit2d_predict1d": _ARRAY,
    "check_estimators_empty_data_messages": _ARRAY,
    "check_estimators_nan_inf": _ARRAY + "; NaN rows mean a missing modality here",
    "check_f_contiguous_array_estimator": _ARRAY,
    "check_readonly_memmap_input": _ARRAY,
    "check_pipeline_consistency": _ARRAY,
    "check_transformer_data_not_an_array": _ARRAY,
    "check_transformer_general": _ARRAY,
    "check_transformer_preserve_dtypes": _ARRAY + "; blocks are float64 whatever the input",
    "check_methods_subset_invariance": _ARRAY,
    "check_methods_sample_order_invariance": _ARRAY,
    "check_dict_unchanged": _ARRAY,
    "check_positive_only_tag_during_fit": _ARRAY,
    "check_estimator_sparse_array": "dense inputs only: sparse matrices are not a modality mapping",
    "check_estimator_sparse_matrix": "dense inputs only: sparse matrices are not a modality mapping",
    "check_estimator_sparse_tag": "dense inputs only: sparse matrices are not a modality mapping",
    "check_array_api_input": "numpy (and torch inside HCL) only; the array API is not claimed",
    "check_estimators_fit_returns_self": "rewritten on mapping data: test_fit_returns_self_keeps_params_and_is_idempotent",
    "check_estimators_overwrite_params": "rewritten on mapping data: test_fit_returns_self_keeps_params_and_is_idempotent",
    "check_dont_overwrite_parameters": "rewritten on mapping data: test_fit_returns_self_keeps_params_and_is_idempotent",
    "check_fit_idempotent": "rewritten on mapping data: test_fit_returns_self_keeps_params_and_is_idempotent",
    "check_fit_check_is_fitted": "rewritten on mapping data: test_unfitted_estimator_refuses_to_transform_or_predict",
    "check_fit_score_takes_y": "fit(X, y=None) takes and ignores y: test_fit_returns_self_keeps_params_and_is_idempotent",
    "check_n_features_in": _ONE_MATRIX,
    "check_n_features_in_after_fitting": _ONE_MATRIX,
    "check_estimators_pickle": "persistence is save/load without pickles: test_save_load_reproduces_the_output_exactly",
    "check_transformer_n_iter": "JIVE's n_iter_ is tested in tests/hcl_deep/test_baselines.py; HCL counts n_epochs_",
}

GROUP_LASSO_SKIPS = {
    "check_n_features_in_after_fitting": "a wrong column count is refused with hcl's own one-line message",
    "check_estimators_empty_data_messages": "empty X is refused with hcl's own one-line message",
    "check_estimator_sparse_array": "dense inputs only",
    "check_estimator_sparse_matrix": "dense inputs only",
    "check_estimator_sparse_tag": "dense inputs only",
    "check_array_api_input": "numpy only; the array API is not claimed",
    "check_supervised_y_2d": "a column-vector y is refused (one label per row) rather than raveled with a warning",
    "check_fit2d_1sample": "cross-validation needs 2 * cv rows; the error says so in hcl's words",
    "check_fit2d_predict1d": "a 1-D X is refused with hcl's own message (a matrix or a dict of blocks)",
    "check_requires_y_none": "fit without y is refused with hcl's own message",
}

API_CHECKS = [
    ec.check_estimator_cloneable,
    ec.check_estimator_repr,
    ec.check_no_attributes_set_in_init,
    ec.check_parameters_default_constructible,
    ec.check_get_params_invariance,
    ec.check_set_params,
    ec.check_do_not_raise_errors_in_init_or_set_params,
    ec.check_mixin_order,
    ec.check_valid_tag_types,
    ec.check_estimator_tags_renamed,
    ec.check_param_validation,
]


OWN_VERSIONS = {"check_transformers_unfitted", "check_estimators_unfitted"}


def test_every_sklearn_check_is_run_or_justified():
    import functools

    placed = {c.__name__ for c in API_CHECKS} | OWN_VERSIONS | set(MAPPING_SKIPS)
    for name in TRANSFORMERS:
        for _est, check in ec.estimator_checks_generator(ALL[name], legacy=True):
            func = check.func if isinstance(check, functools.partial) else check
            assert func.__name__ in placed, f"{name}: {func.__name__} is neither run nor listed with a reason"


@pytest.mark.parametrize("name", list(_predictors()))
def test_group_lasso_passes_check_estimator(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ec.check_estimator(ALL[name], expected_failed_checks=GROUP_LASSO_SKIPS, on_skip=None)


@pytest.fixture(scope="module")
def sim():
    return hierarchical(
        160,
        {"a": 8, "b": 7, "c": 6},
        {"a+b+c": 2, "a+b": 1, "a": 1, "b": 1, "c": 1},
        noise=0.2,
        random_state=0,
        loading_scale=(1.5, 2.5),
        missing={"c": 0.1},
        outcome={"structures": ["a+b"], "kind": "logistic", "strength": 2.0},
    )


def _fit_input(name, sim):
    """The mapping a transformer fits on (LinearHCL: complete rows), or blocks + y for the group lasso."""
    if name.startswith("GroupLasso"):
        y = sim.y if name.endswith("Classifier") else sim.z["a+b"][:, 0]
        return {s: z for s, z in sim.z.items()}, y
    if name == "LinearHCL":
        rows = np.all([sim.mask[m] for m in sim.modalities], axis=0)
        return {m: a[rows] for m, a in sim.X.items()}, None
    return sim.X, None


def _output(est, X):
    if hasattr(est, "transform"):
        return est.transform(X)
    if hasattr(est, "predict_proba"):
        return {"proba": est.predict_proba(X)}
    return {"predict": est.predict(X)}


@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", list(ALL))
def test_sklearn_api_checks(name, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(name, clone(ALL[name]))


@pytest.mark.parametrize("name", list(ALL))
def test_unfitted_estimator_refuses_to_transform_or_predict(name):
    est = clone(ALL[name])
    if hasattr(est, "transform"):
        ec.check_transformers_unfitted(name, est)
    else:
        ec.check_estimators_unfitted(name, est)
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(est)
    with pytest.raises(NotFittedError):  # hcl's own error, a subclass of scikit-learn's
        est.summary  # noqa: B018 - a property that needs a fitted model


@pytest.mark.parametrize("name", list(ALL))
def test_fit_returns_self_keeps_params_and_is_idempotent(name, sim):
    est = clone(ALL[name])
    before = est.get_params()
    X, y = _fit_input(name, sim)
    assert est.fit(X, y) is est
    after = est.get_params()
    assert before.keys() == after.keys() and all(before[k] is after[k] for k in before)
    check_is_fitted(est)
    first = _output(est, X)
    second = _output(est.fit(X, y), X)
    assert first.keys() == second.keys()
    for s in first:
        np.testing.assert_array_equal(first[s], second[s])
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not fresh.__sklearn_is_fitted__()


@pytest.mark.parametrize("name", list(ALL))
def test_summary_is_one_row_per_block(name, sim):
    est = clone(ALL[name])
    X, y = _fit_input(name, sim)
    est.fit(X, y)
    summary = est.summary
    import pandas as pd

    assert isinstance(summary, pd.DataFrame) and "structure" in summary.columns
    if hasattr(est, "structure_") and not isinstance(est, HCL):
        assert list(summary["structure"]) == list(est.structure_)
    if isinstance(est, HCL):  # one row per candidate, the kept ones flagged
        assert set(summary.loc[summary["kept"], "structure"]) == set(est.structure_)
    if name.startswith("GroupLasso"):
        assert list(summary["structure"]) == est.groups_
        assert set(summary.loc[summary["selected"], "structure"]) == set(est.selected_)


@pytest.mark.parametrize("name", list(ALL))
def test_save_load_reproduces_the_output_exactly(name, sim, tmp_path):
    est = clone(ALL[name])
    assert isinstance(est, PersistenceMixin)
    X, y = _fit_input(name, sim)
    est.fit(X, y)
    path = est.save(tmp_path / name)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.safetensors"]
    loaded = type(est).load(path)
    assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
    before, after = _output(est, X), _output(loaded, X)
    assert before.keys() == after.keys()
    for s in before:
        assert before[s].dtype == after[s].dtype
        np.testing.assert_array_equal(before[s], after[s])
    pd_testing = pytest.importorskip("pandas").testing
    pd_testing.assert_frame_equal(est.summary, loaded.summary)
    with pytest.raises(ValidationError, match="holds a"):
        (PCA if name != "PCA" else JIVE).load(path)


def test_unsaved_estimator_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        PCA().save(tmp_path / "pca")


@pytest.mark.parametrize(
    "est, param",
    [
        (HCL(loss="triplet"), "loss"),
        (HCL(embedding_dim=0), "embedding_dim"),
        (CLIP(batch_size=1), "batch_size"),
        (SharedPrivate(private_augment=1.0), "private_augment"),
        (PCA(n_components=0), "n_components"),
        (JIVE(tol=-1.0), "tol"),
        (GroupLassoClassifier(selection_rule="max"), "selection_rule"),
    ],
)
def test_invalid_parameter_is_one_error_for_hcl_and_sklearn(est, param, sim):
    X = sim.X if not isinstance(est, GroupLassoClassifier) else sim.z
    with pytest.raises(InvalidParameterError, match=rf"The '{param}' parameter of {type(est).__name__} must be"):
        est.fit(X, sim.y)
    # the same error is hcl's ValidationError and scikit-learn's InvalidParameterError
    from sklearn.utils._param_validation import InvalidParameterError as SklearnInvalidParameterError

    assert issubclass(InvalidParameterError, ValidationError)
    assert issubclass(InvalidParameterError, SklearnInvalidParameterError)


def test_presets_expose_only_their_free_parameters():
    hcl_params = set(HCL().get_params())
    clip = CLIP(lr=0.01)
    assert set(clip.get_params()) == hcl_params - set(CLIP._preset)
    assert clip.loss == "infonce" and clip.lr == 0.01 and clip.decorrelation == 0.0
    assert set(SharedPrivate().get_params()) == hcl_params - {"structures", "strict_missing"}
    assert SharedPrivate().prune_threshold == 0.0 and HCL().prune_threshold == 0.3
    with pytest.raises(TypeError):
        CLIP(loss="spectral")  # fixed by the preset
    with pytest.raises(ValueError, match="Invalid parameter"):
        CLIP().set_params(structures="all")
    assert set(CLIP._parameter_constraints) == set(clip.get_params())

"""Input checks: every error names the modality and its shape."""

import numpy as np
import pytest

from hcl._validation import check_modalities, check_X
from hcl.exceptions import ValidationError


def good():
    rng = np.random.default_rng(0)
    return {"codes": rng.normal(size=(10, 3)), "labs": rng.normal(size=(10, 4))}


def test_returns_float64_in_given_order():
    X = good()
    X["codes"] = X["codes"].astype(np.float32)
    out = check_X(X, modalities=["labs", "codes"])
    assert list(out) == ["labs", "codes"]
    assert out["codes"].dtype == np.float64


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda X: X["labs"].__setitem__((2, 1), np.nan), r"'labs' \(shape 10x4\) contains NaN"),
        (lambda X: X["codes"].__setitem__((0, 0), np.inf), r"'codes' \(shape 10x3\) contains infinite"),
        (lambda X: X.__setitem__("labs", X["labs"][:7]), r"'labs' has 7 rows \(shape 7x4\)"),
        (lambda X: X.__setitem__("labs", X["labs"][:, 0]), r"'labs' has shape \(10\)"),
    ],
)
def test_errors_name_modality_and_shape(mutate, pattern):
    X = good()
    mutate(X)
    with pytest.raises(ValidationError, match=pattern):
        check_X(X)


def test_dimension_mismatch_and_names():
    with pytest.raises(ValidationError, match=r"'labs' has shape \(10x4\) but the model expects 5"):
        check_modalities(good(), fitted_modalities=["codes", "labs"], fitted_dims={"codes": 3, "labs": 5})
    with pytest.raises(ValidationError, match=r"missing \['notes'\]; unknown \['labs'\]"):
        check_X(good(), modalities=["codes", "notes"])
    with pytest.raises(ValidationError, match="mapping"):
        check_X([np.zeros((3, 2))])
    with pytest.raises(ValidationError, match="at least 20"):
        check_X(good(), min_rows=20)


def test_nan_rows_allowed_only_whole():
    X = good()
    X["labs"][3] = np.nan
    out = check_X(X, allow_nan_rows=True)
    assert np.isnan(out["labs"][3]).all()
    X["labs"][4, 0] = np.nan
    with pytest.raises(ValidationError, match=r"'labs' \(shape 10x4\) has 1 rows partly NaN"):
        check_X(X, allow_nan_rows=True)
    X = good()
    X["labs"][5] = np.nan
    X["codes"][5] = np.nan
    with pytest.raises(ValidationError, match="no observed modality"):
        check_X(X, allow_nan_rows=True)

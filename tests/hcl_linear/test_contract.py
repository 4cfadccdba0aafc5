"""LinearHCL's estimator contract (issue 13): scikit-learn checks that apply, layering, summary property.

Skipped scikit-learn checks: every check that calls ``fit`` on a 2-D array (fit, transform, pickling with
data, dtype and sample-weight checks, ``check_param_validation``). LinearHCL takes a mapping
``{modality: array}`` of at least two modalities, which those checks cannot build; the same properties
are tested on mappings in ``test_linear.py`` and ``test_em_streaming.py``.
"""

import subprocess
import sys

import pandas as pd
import pytest
from sklearn.utils import estimator_checks

from hcl.linear import LinearHCL
from hcl.simulate import hierarchical

APPLICABLE = [
    "check_parameters_default_constructible",
    "check_no_attributes_set_in_init",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_repr",
    "check_estimator_cloneable",
    "check_do_not_raise_errors_in_init_or_set_params",
]


@pytest.mark.parametrize("check", APPLICABLE)
def test_sklearn_checks_that_apply(check):
    getattr(estimator_checks, check)("LinearHCL", LinearHCL())


def test_linear_does_not_import_the_simulator():
    code = "import sys, hcl.linear; print('hcl.simulate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from hcl.simulate import normalize_ranks  # the simulator's public name still works
    from hcl.structures import normalize_ranks as moved

    assert normalize_ranks is moved


def test_summary_is_a_dataframe_property():
    assert isinstance(LinearHCL.__dict__["summary"], property)
    assert not hasattr(LinearHCL(), "summary")  # NotFittedError is an AttributeError
    sim = hierarchical(500, {"a": 5, "b": 6}, 1, random_state=0)
    est = LinearHCL(ranks=1).fit(sim.X)
    assert isinstance(est.summary, pd.DataFrame) and "summary" not in vars(est)
    assert list(est.summary["structure"]) == ["a+b", "a", "b"]

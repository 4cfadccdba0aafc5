"""Errors raised by the :mod:`hcl` library.

Every error a caller can provoke with bad input derives from :class:`HCLError`, so an application can
catch the library's complaints in one place and show them as one-line messages. The errors also derive
from scikit-learn's own classes where one exists, so scikit-learn's tools (``check_is_fitted``, its
estimator checks) recognise them.
"""

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils._param_validation import InvalidParameterError as _SklearnInvalidParameterError


class HCLError(Exception):
    """Base class for every error raised on purpose by :mod:`hcl`."""


class ValidationError(HCLError, ValueError):
    """Input arrays or parameters are unusable (wrong shape, NaN/inf, unknown modality, bad rank)."""


class InvalidParameterError(ValidationError, _SklearnInvalidParameterError):
    """A constructor parameter has a type or value outside the estimator's ``_parameter_constraints``."""


class NotFittedError(HCLError, _SklearnNotFittedError):
    """A method that needs a fitted estimator was called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped at ``max_iter`` before meeting its tolerance."""

"""Errors raised by the :mod:`hcl` library.

Every error a caller can provoke with bad input derives from :class:`HCLError`, so an application can
catch the library's complaints in one place and show them as one-line messages.
"""


class HCLError(Exception):
    """Base class for every error raised on purpose by :mod:`hcl`."""


class ValidationError(HCLError, ValueError):
    """Input arrays or parameters are unusable (wrong shape, NaN/inf, unknown modality, bad rank)."""


class NotFittedError(HCLError, AttributeError):
    """A method that needs a fitted estimator was called before ``fit``."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped at ``max_iter`` before meeting its tolerance."""

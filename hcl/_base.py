"""The one estimator contract of :mod:`hcl`.

Every estimator derives from :class:`HCLEstimator`, which is scikit-learn's ``BaseEstimator`` (so
``get_params``, ``set_params``, ``clone`` and the repr are scikit-learn's own) plus:

- ``_parameter_constraints``, declared on the class and checked when ``fit`` runs by scikit-learn's own
  validation (decorate ``fit`` with :func:`fit_context`); a violation raises
  :class:`hcl.exceptions.InvalidParameterError`, which is both an :class:`hcl.exceptions.ValidationError`
  and scikit-learn's ``InvalidParameterError``;
- ``_check_fitted()`` raising :class:`hcl.exceptions.NotFittedError`, and ``__sklearn_is_fitted__`` so
  scikit-learn's ``check_is_fitted`` agrees;
- ``save(path)`` / ``load(path)`` from :class:`hcl.persistence.PersistenceMixin`;
- ``summary``: a pandas DataFrame with one row per structure block (or per group, for the group lasso).

``__init__`` only stores its arguments.
"""

from __future__ import annotations

from typing import ClassVar

from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import InvalidParameterError as _SklearnInvalidParameterError

from hcl.exceptions import InvalidParameterError, NotFittedError
from hcl.persistence import PersistenceMixin

__all__ = ["HCLEstimator", "fit_context"]


def fit_context(fit_method):
    """Validate the constructor parameters before ``fit`` runs (scikit-learn's ``_fit_context``).

    Nested scikit-learn estimators and functions called during ``fit`` skip their own validation, as in
    scikit-learn with ``prefer_skip_nested_validation=True``.

    Parameters
    ----------
    fit_method : callable
        The estimator's ``fit``.

    Returns
    -------
    callable
        ``fit``, checking ``_parameter_constraints`` first.
    """
    return _fit_context(prefer_skip_nested_validation=True)(fit_method)


class HCLEstimator(PersistenceMixin, BaseEstimator):
    """Base class of every :mod:`hcl` estimator (see the module docstring for the contract).

    Subclasses declare ``_parameter_constraints`` and ``_fitted_attribute`` (a learned attribute that
    exists only after ``fit``), implement ``_get_state`` / ``_set_state`` for persistence and a ``summary``
    property.
    """

    _parameter_constraints: ClassVar[dict] = {}
    _fitted_attribute: ClassVar[str] = "modalities_"

    def _validate_params(self) -> None:
        try:
            super()._validate_params()
        except _SklearnInvalidParameterError as exc:
            raise InvalidParameterError(str(exc)) from None

    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` has run (scikit-learn's ``check_is_fitted`` protocol).

        Returns
        -------
        bool
        """
        return hasattr(self, self._fitted_attribute)

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

"""Errors the pipeline raises on purpose.

:class:`UserError` and its subclasses are problems with the user's input or configuration. The CLI turns
them into one line on stderr and exit code 2, with no traceback. Anything else is a bug (exit code 1).
Messages name the file, the field/column/key, the offending value, and what to do about it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad input file, bad configuration, impossible request."""


class InputSchemaError(UserError):
    """An input table is missing, unreadable, or has a missing/mistyped column."""


class RowQualityError(UserError):
    """Row-level problems found while ``--strict`` is on (otherwise such rows are quarantined)."""


class ConfigError(UserError):
    """``params.yaml``, a cohort YAML or a command-line option is invalid."""


class CohortError(UserError):
    """A cohort cannot be built (empty after criteria, single-class label, …)."""


class LeakageError(UserError):
    """The leakage audit found information from after the prediction time, or a subject in two splits."""


class MissingInputError(UserError):
    """A stage's input (written by an earlier stage) is absent: run the earlier stage first."""

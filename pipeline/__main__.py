"""``python -m pipeline`` is the same as ``ehr-hcl``."""

from pipeline.cli import entry

entry()

"""Where each stage reads and writes, relative to a workspace root (the project root by default).

The synthetic demo lives in the project root (the DVC pipeline); other datasets get their own workspace
folder (e.g. ``workspaces/mimic-iv-demo``) so their outputs never overwrite the demo's.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.exceptions import ConfigError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


#: the folder name the pretraining population's features and models use; no cohort may take it
PRETRAINING = "pretraining"


def check_name(name: str, what: str = "cohort name") -> str:
    """Reject names that could escape the project folder once used in a path (``../../x``, ``a/b``)."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ConfigError(
            f"{what} {name!r} is not allowed: use letters, digits, '_', '-' or '.', starting with a letter or "
            "digit (it becomes part of output paths)"
        )
    if what == "cohort name" and name == PRETRAINING:
        raise ConfigError(
            f"cohort name {name!r} is reserved for the pretraining population's folders; rename the cohort YAML"
        )
    return name


def _git(args: list[str], cwd: str | Path | None) -> str | None:
    """Run ``git <args>`` in ``cwd``; its stripped output, or None outside a repository or without git."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=False, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def git_commit(cwd: str | Path | None = None) -> str | None:
    """Return the commit checked out at ``cwd`` (the current folder by default), or None outside git.

    The one place that asks git (with :func:`git_toplevel`); runs tag themselves with it so a result can be
    traced to its code.
    """
    return _git(["rev-parse", "HEAD"], cwd)


def git_toplevel(cwd: str | Path | None = None) -> Path | None:
    """Return the top folder of the git checkout holding ``cwd``, or None outside git."""
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    return Path(top).resolve() if top else None


@dataclass(frozen=True)
class Workspace:
    """The folder layout of one pipeline run (see the data contracts in ARCHITECTURE.md)."""

    root: Path = Path(".")

    @property
    def raw(self) -> Path:
        """The synthetic MIMIC-IV-shaped tables (``data/raw/synthetic``)."""
        return self.root / "data" / "raw" / "synthetic"

    @property
    def events(self) -> Path:
        """The MEDS events folder (``data/events``)."""
        return self.root / "data" / "events"

    def cohort(self, name: str) -> Path:
        """Return the cohort folder of ``name`` (``data/cohorts/<name>``)."""
        return self.root / "data" / "cohorts" / check_name(name)

    def labels(self, name: str) -> Path:
        """Return the labels file of cohort ``name``."""
        return self.cohort(name) / "labels.parquet"

    def features(self, name: str) -> Path:
        """Return the features folder of cohort ``name``."""
        return self.root / "data" / "features" / check_name(name)

    def embeddings(self, name: str) -> Path:
        """Return the embeddings folder of cohort ``name``."""
        return self.root / "data" / "embeddings" / check_name(name)

    def models(self, name: str) -> Path:
        """Return the fitted representation models of cohort ``name``."""
        return self.root / "models" / check_name(name)

    def metrics(self, name: str) -> Path:
        """Return the metrics JSON of cohort ``name``."""
        return self.root / "metrics" / f"{check_name(name)}.json"

    def plots(self, name: str) -> Path:
        """Return the plots folder of cohort ``name``."""
        return self.root / "plots" / check_name(name)

    def fewshot_metrics(self, name: str) -> Path:
        """``metrics/fewshot/<name>.json``: the few-shot (label-efficiency) metrics of a cohort."""
        return self.root / "metrics" / "fewshot" / f"{check_name(name)}.json"

    def fewshot_plots(self, name: str) -> Path:
        """``plots/fewshot/<name>/``: the few-shot AUROC-against-k table and figure of a cohort."""
        return self.root / "plots" / "fewshot" / check_name(name)

    def report(self, name: str) -> Path:
        """Return the HTML report of cohort ``name``."""
        return self.root / "reports" / f"{check_name(name)}.html"

    @property
    def pretraining(self) -> Path:
        """The pretraining population folder (``data/pretraining``)."""
        return self.root / "data" / PRETRAINING

    @property
    def population(self) -> Path:
        """The pretraining population's rows (``data/pretraining/population.parquet``)."""
        return self.pretraining / "population.parquet"

    @property
    def pretraining_features(self) -> Path:
        """The pretraining population's features, whose fitted state every cohort applies."""
        return self.root / "data" / "features" / PRETRAINING

    @property
    def pretrained_models(self) -> Path:
        """The representations fitted once on the pretraining population (``models/pretraining``)."""
        return self.root / "models" / PRETRAINING

    @property
    def truth(self) -> Path:
        """The synthetic generator's per-admission truth (oracle probabilities)."""
        return self.raw / "truth" / "admissions.parquet"

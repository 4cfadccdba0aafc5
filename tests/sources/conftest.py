"""Fixtures for the source/ingest tests: small synthetic MIMIC-shaped folders and the real demo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.sources.synthetic import SynthConfig, synthesize

MIMIC_DEMO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mimic-iv-demo-2.2"


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """A 60-patient synthetic MIMIC-IV folder (read-only for tests: copy before corrupting)."""
    out = tmp_path_factory.mktemp("synth") / "raw"
    synthesize(SynthConfig(patients=60, seed=3, chunk_patients=100), out, progress=False)
    return out


@pytest.fixture()
def raw_copy(synth_small, tmp_path) -> Path:
    dst = tmp_path / "raw"
    shutil.copytree(synth_small, dst)
    return dst


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    if not (MIMIC_DEMO / "hosp" / "admissions.csv.gz").exists():
        pytest.skip("MIMIC-IV demo not found at ../shared/data/mimic-iv-demo-2.2")
    return MIMIC_DEMO

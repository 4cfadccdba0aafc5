"""Every cohort field is documented (README, CLI help) and the exported JSON Schema is current."""

from __future__ import annotations

import json

from pydantic import BaseModel

from pipeline.cohort import CLI_HELP, json_schema
from pipeline.cohort.spec import CohortSpec

from .conftest import COHORTS


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        for cand in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                out += _fields(cand, prefix + name + ".")
    return out


FIELDS = sorted(set(_fields(CohortSpec)))


def test_fields_found():
    assert "outcome.competing_death" in FIELDS and "population.exclusions.lookback" in FIELDS
    assert len(FIELDS) >= 30


def test_readme_documents_every_field():
    readme = (COHORTS / "README.md").read_text()
    missing = [f for f in FIELDS if f"`{f.split('.')[-1]}" not in readme]
    assert not missing


def test_cli_help_documents_every_field():
    missing = [f for f in FIELDS if f"{f.split('.')[-1]}:" not in CLI_HELP]
    assert not missing
    assert max(len(line) for line in CLI_HELP.splitlines()) <= 120


def test_schema_file_is_current():
    on_disk = json.loads((COHORTS / "cohort.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schema())), "regenerate cohorts/cohort.schema.json"

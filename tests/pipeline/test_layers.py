"""Imports run downward: the layers of the house, stated once, and every import in pipeline/ and hcl/ checked.

Lazy imports inside functions count too. Lowest first:

- base: schema, io, exceptions, params, workspace, splits (no stage, no MLflow);
- contracts: results (the metrics JSON), serving (the logged model and its loader);
- tracking (the one module that talks to MLflow);
- stages, in pipeline order: sources → ingest → cohort → features → audit → embed → predict → report, compare;
- the shell: commands, cli, __main__.

A module may import its own room or any room below it, never one above. ``hcl`` imports no ``pipeline``,
mlflow or dvc.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS: list[tuple[str, ...]] = [
    ("schema", "io", "exceptions", "params", "workspace", "splits"),
    ("results", "serving"),
    ("tracking",),
    ("sources",),
    ("ingest",),
    ("cohort",),
    ("features",),
    ("audit",),
    ("embed",),
    ("predict",),
    ("report", "compare"),
    ("commands", "cli", "__main__"),
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _room(module: str) -> str:
    """``pipeline.predict.run`` → ``predict``; ``pipeline`` itself has no room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            if mod == "pipeline":  # from pipeline import tracking
                out += [(node.lineno, f"pipeline.{a.name}") for a in node.names]
    return out


def _modules(top: str):
    for path in sorted((ROOT / top).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        yield path, name.removesuffix(".__init__"), package


def test_every_pipeline_room_is_in_a_layer():
    rooms = {_room(name) for _, name, _ in _modules("pipeline")} - {""}
    assert rooms <= set(RANK), f"rooms without a layer: {sorted(rooms - set(RANK))}"


@pytest.mark.parametrize("path,name,package", list(_modules("pipeline")), ids=lambda v: str(v))
def test_pipeline_imports_run_downward(path, name, package):
    own = _room(name)
    if not own:
        return
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {mod} ({_room(mod)} is above {own})"
        for line, mod in _imports(path, package)
        if mod.startswith("pipeline.") and RANK.get(_room(mod), -1) > RANK[own]
    ]
    assert not upward, "\n".join(upward)


def test_only_tracking_imports_mlflow():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path, name, package in _modules("pipeline")
        if _room(name) != "tracking"
        for line, mod in _imports(path, package)
        if mod.split(".")[0] == "mlflow"
    ]
    assert not offenders, offenders


def test_hcl_imports_no_pipeline_mlflow_or_dvc():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {mod}"
        for path, _, package in _modules("hcl")
        for line, mod in _imports(path, package)
        if mod.split(".")[0] in ("pipeline", "mlflow", "dvc")
    ]
    assert not offenders, offenders

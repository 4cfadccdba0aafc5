"""Read ``params.yaml``: every tunable knob lives there, one top-level section per stage.

Each stage owns a pydantic model for its section (``extra="forbid"``, defaults for every field);
:func:`load_section` validates that section once, at the edge, and returns the typed object.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.exceptions import ConfigError

DEFAULT_PARAMS = Path("params.yaml")
Section = TypeVar("Section", bound=BaseModel)


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file with the safe loader; errors name the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        # safe_load: never constructs Python objects from tags like !!python/object (untrusted files).
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where} invalid YAML: {problem}") from None


def read_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read the whole params file as a dict (empty if the file does not exist and no path was forced)."""
    if path is None:
        path = DEFAULT_PARAMS
        if not Path(path).exists():
            return {}
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def load_section(
    name: str, model: type[Section], path: str | os.PathLike | None = None, overrides: dict | None = None
) -> Section:
    """Validate section ``name`` of the params file against ``model``; ``overrides`` win over the file."""
    params = read_params(path)
    section = params.get(name) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path or DEFAULT_PARAMS}: {name} = {section!r}: expected a mapping of settings")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    raw = {**section, **given}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]["loc"][:1]
        if first and first[0] in given:  # the bad value came from the command line, not the file
            key = str(first[0])
            raise ConfigError(
                f"command-line option --{key.replace('_', '-')} = {given[key]!r}: {exc.errors()[0]['msg']}"
            ) from None
        raise ConfigError(format_validation_error(exc, f"{path or DEFAULT_PARAMS}", prefix=name, model=model)) from None


def format_validation_error(
    exc: ValidationError, source: str, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """One line from a pydantic error: file, key path, offending value, what was expected."""
    err = exc.errors()[0]
    if err["type"] == "extra_forbidden" and model is not None and len(err["loc"]) == 1:
        key = str(err["loc"][0])
        hint = difflib.get_close_matches(key, list(model.model_fields), n=1)
        loc = ".".join((prefix, key)) if prefix else key
        suggestion = f"did you mean {hint[0]!r}?" if hint else f"valid keys: {sorted(model.model_fields)}"
        return f"{source}: {loc} is not a known setting; {suggestion}"
    loc = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"]))
    value = err.get("input")
    value_txt = repr(value) if not isinstance(value, dict) else "{...}"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"{source}: {loc} = {value_txt}: {err['msg']}{more}"

"""``shopfloor.yaml``: what Shopfloor adds to an Agent Skill, in a file the spec leaves alone.

The Agent Skills format allows any extra file in the skill directory, so the entry point,
runtime, JSON Schemas, dependencies and sandbox needs live here and the skill stays valid for
every other Agent Skills client. Unknown keys are errors with file:line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import Field, ValidationError, field_validator

from shopfloor.errors import SkillDependencyError, SkillFormatError, SourceLocation, SpecError
from shopfloor.skills._depfiles import confined_file
from shopfloor.spec import Number, StrictModel, format_path, load_yaml_file

__all__ = ["SIDECAR", "SkillConfig", "SkillDependencies", "SkillSandboxNeeds", "load_sidecar"]

SIDECAR = "shopfloor.yaml"


class SkillDependencies(StrictModel):
    python: str | None = Field(None, description="a requirements.txt in the skill, installed from PyPI")
    node: str | None = Field(None, description="a package.json in the skill, installed with npm")


class SkillSandboxNeeds(StrictModel):
    network: list[str] | Literal["none"] = "none"
    memory: str | None = Field(None, description="at least this much memory, e.g. 512M")
    workspace: Literal["read-write", "read-only"] = "read-write"


class SkillConfig(StrictModel):
    entry: str = Field(description="the entry point, relative to the skill directory")
    runtime: Literal["python", "node", "shell"] = "python"
    timeout: Number = Field(30.0, gt=0, description="seconds one call may take")
    staged: bool = Field(
        False,
        description="the entry point run with the argument `schema` gives each stage's argument schema",
    )
    input_schema: dict[str, Any] | str = Field(
        default_factory=lambda: {"type": "object"}, description="a JSON Schema, inline or a JSON file"
    )
    output_schema: dict[str, Any] | str | None = None
    dependencies: SkillDependencies = Field(default_factory=SkillDependencies)  # type: ignore[arg-type]
    sandbox: SkillSandboxNeeds = Field(default_factory=SkillSandboxNeeds)  # type: ignore[arg-type]

    @field_validator("entry")
    @classmethod
    def _relative(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError("must be a path inside the skill directory")
        return value


def _load_schema(value: dict[str, Any] | str | None, skill_dir: Path, where: SourceLocation) -> Any:
    if value is None:
        return None
    schema: Any = value
    if isinstance(value, str):
        path = skill_dir / value
        if Path(value).is_absolute() or ".." in Path(value).parts or not path.is_file():
            raise SkillFormatError(f"{where}: schema file {value!r} does not exist in the skill")
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SkillFormatError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SkillFormatError(f"{where}: not a valid JSON Schema: {exc.message}") from exc
    return schema


def load_sidecar(skill_dir: Path) -> tuple[SkillConfig, dict[str, Any], dict[str, Any] | None] | None:
    """Read shopfloor.yaml: (config, input schema, output schema), or None when the skill has none."""
    file = skill_dir / SIDECAR
    if not file.is_file():
        return None
    try:
        doc = load_yaml_file(file)
    except SpecError as exc:
        raise SkillFormatError(str(exc)) from exc
    if doc.problems:
        raise SkillFormatError("\n".join(f"{loc}: {msg}" for loc, msg in doc.problems))
    try:
        config = SkillConfig.model_validate(doc.data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # pydantic adds the union member ("str", "dict[str,any]") to the path; the user never wrote it
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and (p == "str" or "[" in p)))
            hint = " (check the spelling)" if err["type"] == "extra_forbidden" else ""
            where = doc.location(loc, at_key=err["type"] == "extra_forbidden")
            problems.append(f"{where}: {format_path(loc) or SIDECAR}: {err['msg']}{hint}")
        raise SkillFormatError("\n".join(dict.fromkeys(problems))) from exc

    def at(*path: str) -> SourceLocation:
        return doc.location(path)

    entry = skill_dir / config.entry
    if not entry.is_file():
        where = at("entry")
        raise SkillFormatError(f"{where}: entry point {config.entry!r} does not exist in the skill")
    for kind in ("python", "node"):
        dep = getattr(config.dependencies, kind)
        if dep is not None:
            try:
                confined_file(skill_dir, dep, at("dependencies", kind))
            except SkillDependencyError as exc:
                raise SkillFormatError(str(exc)) from None
    inputs = _load_schema(config.input_schema, skill_dir, at("input_schema"))
    outputs = _load_schema(config.output_schema, skill_dir, at("output_schema"))
    return config, inputs, outputs

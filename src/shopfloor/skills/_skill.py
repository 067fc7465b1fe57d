"""A loaded skill and the loader, in strict or compatibility mode."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shopfloor.errors import SkillFormatError
from shopfloor.skills._frontmatter import Problem, read_front_matter
from shopfloor.skills._manifest import Manifest, build_manifest
from shopfloor.skills._sidecar import SkillConfig, load_sidecar

__all__ = ["Skill", "load_skill"]

logger = logging.getLogger("shopfloor.skills")


@dataclass(frozen=True, kw_only=True)
class Skill:
    """A skill directory, parsed and checked. ``body`` is only shown once the agent chooses it."""

    path: Path
    name: str
    description: str
    front_matter: dict[str, Any]
    body: str
    manifest: Manifest
    config: SkillConfig | None = None
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    output_schema: dict[str, Any] | None = None
    warnings: tuple[Problem, ...] = ()

    @property
    def version(self) -> str | None:
        metadata = self.front_matter.get("metadata")
        version = metadata.get("version") if isinstance(metadata, dict) else None
        return version if isinstance(version, str) else None

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def executable(self) -> bool:
        return self.config is not None

    def references(self) -> list[str]:
        """Files the model may read on demand (``references/``, ``assets/``), relative paths."""
        return [
            f.path
            for f in self.manifest.files
            if f.path.startswith(("references/", "assets/"))
            or (f.path.endswith(".md") and f.path != "SKILL.md")
        ]

    def read_reference(self, relative: str) -> str:
        """One reference file's text; only files listed in the manifest can be read."""
        if relative not in self.references():
            raise SkillFormatError(
                f"{self.name}: no reference file {relative!r}; "
                f"available: {', '.join(self.references()) or 'none'}"
            )
        return (self.path / relative).read_text(encoding="utf-8", errors="replace")


def load_skill(skill_dir: Path | str, *, strict: bool = True) -> Skill:
    """Load a skill directory.

    Strict mode refuses whatever the Agent Skills reference validator refuses. Compatibility
    mode loads a skill that breaks a limit (say a 1,068-character description) and records a
    warning naming the rule; it still refuses what cannot be loaded at all (no name, bad YAML).
    """
    path = Path(skill_dir).resolve()
    if not path.is_dir():
        raise SkillFormatError(f"{path}: not a skill directory")
    fm = read_front_matter(path)
    refused = [p for p in fm.problems if p.fatal or (strict and not p.spec_only)]
    if refused:
        hint = ""
        if strict and not any(p.fatal for p in refused):
            hint = "\n(set trust.strict_skills = false to load it in compatibility mode, with warnings)"
        raise SkillFormatError("\n".join(str(p) for p in refused) + hint)
    warnings = tuple(p for p in fm.problems if p not in refused)
    for problem in warnings:
        logger.warning("skill %s: %s", path.name, problem)
    sidecar = load_sidecar(path)
    config, inputs, outputs = sidecar if sidecar is not None else (None, {"type": "object"}, None)
    return Skill(
        path=path,
        name=str(fm.data["name"]).strip(),
        description=str(fm.data["description"]).strip(),
        front_matter=fm.data,
        body=fm.body,
        manifest=build_manifest(path, fm.data),
        config=config,
        input_schema=inputs,
        output_schema=outputs,
        warnings=warnings,
    )

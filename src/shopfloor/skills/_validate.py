"""What the skills layer adds to the spec layer: ``shopfloor validate DIR`` for skills, and skill
digests in agent digests. The composition root (``shopfloor.runtime.compose``) hands both to it."""

from __future__ import annotations

from pathlib import Path

from shopfloor.skills._builtin import builtin_skill_dir
from shopfloor.skills._skill import load_skill
from shopfloor.spec import RefResolver, ValidationReport, Validator, is_skill_dir

__all__ = ["skill_ref_resolvers", "skill_validator", "validate_skill_dir"]


def validate_skill_dir(path: Path) -> ValidationReport:
    """Strict validation (what the Agent Skills reference validator checks, plus shopfloor.yaml)."""
    skill = load_skill(path, strict=True)
    return ValidationReport(
        kind="skill", name=skill.name, version=skill.version or "", digest=skill.digest, path=skill.path
    )


def _skill_path_digest(ref: str, base_dir: Path) -> str:
    path = base_dir / ref
    builtin = builtin_skill_dir(ref)
    if builtin is not None and not path.is_dir():
        path = builtin
    if not (path.is_dir() and (path / "SKILL.md").is_file()):
        raise ValueError(
            f"skill {ref!r} is not a skill directory (looked for {path / 'SKILL.md'}) nor a built-in skill "
            "(data-analysis, python)"
        )
    # The manifest digest, the same one the signature covers and the registry stores.
    return load_skill(path, strict=False).digest


def skill_ref_resolvers() -> dict[str, RefResolver]:
    """The skills layer's resolvers, to put over ``spec_resolvers()``: a skill path (or a built-in
    skill's name) digests as its manifest."""
    return {"skill-path": _skill_path_digest}


#: ``shopfloor validate`` for skill directories
skill_validator = Validator(kind="skill", accepts=is_skill_dir, validate=validate_skill_dir)

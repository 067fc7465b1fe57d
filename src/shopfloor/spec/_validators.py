"""What ``shopfloor validate PATH`` can check: validators, each a predicate and a function.

Agent specs are built in (``agent_validator``). Other layers bring their own kinds of
file without this package importing them: the skills layer has ``skill_validator``,
and the composition root (``shopfloor.runtime.compose``) hands both to ``validate_path``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shopfloor.errors import SourceLocation, SpecError
from shopfloor.spec._digest import RefResolvers
from shopfloor.spec._loader import SPEC_FILENAMES, load_spec

__all__ = [
    "ValidateFn",
    "ValidationReport",
    "Validator",
    "agent_validator",
    "is_agent_spec",
    "is_skill_dir",
    "validate_path",
]


@dataclass(frozen=True, kw_only=True)
class ValidationReport:
    """What a successful validation found."""

    #: ``agent``, ``skill``, ...
    kind: str
    name: str
    version: str
    digest: str
    path: Path


#: validates the file or directory; raises SpecError (or another ShopfloorError) on problems
ValidateFn = Callable[[Path], ValidationReport]
Predicate = Callable[[Path], bool]


@dataclass(frozen=True, kw_only=True)
class Validator:
    """Validates the paths ``accepts`` is true for."""

    kind: str
    accepts: Predicate
    validate: ValidateFn


def is_agent_spec(path: Path) -> bool:
    if path.is_dir():
        return any((path / name).is_file() for name in SPEC_FILENAMES)
    return path.suffix in {".yaml", ".yml"}


def is_skill_dir(path: Path) -> bool:
    return path.is_dir() and (path / "SKILL.md").is_file()


def agent_validator(resolvers: RefResolvers) -> Validator:
    """Agent specs, their references resolved by ``resolvers``."""

    def validate(path: Path) -> ValidationReport:
        loaded = load_spec(path, resolvers=resolvers)
        return ValidationReport(
            kind="agent",
            name=loaded.spec.name,
            version=loaded.spec.version,
            digest=loaded.digest,
            path=loaded.path,
        )

    return Validator(kind="agent", accepts=is_agent_spec, validate=validate)


def validate_path(path: Path | str, validators: Sequence[Validator]) -> ValidationReport:
    """Validate whatever ``path`` is with the first of ``validators`` that accepts it."""
    path = Path(path)
    if not path.exists():
        raise SpecError([(SourceLocation(file=str(path)), "no such file or directory")])
    for validator in validators:
        if validator.accepts(path):
            return validator.validate(path)
    if is_skill_dir(path):
        message = "a skill directory, but no skill validator was given (it comes with shopfloor.skills)"
    else:
        message = "not something shopfloor can validate: expected an agent.yaml or a directory containing one"
    raise SpecError([(SourceLocation(file=str(path)), message)])

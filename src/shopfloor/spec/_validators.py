"""What ``shopfloor validate PATH`` can check: a registry of (predicate, validator) pairs.

Agent specs are built in. Other layers add their own kinds of file without this
package importing them: the skills layer, for example, calls
``register_validator(is_skill_dir, validate_skill)`` in its ``_validate`` hook module,
which ``validate_path`` imports (see ``shopfloor._layer_hooks``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shopfloor._layer_hooks import import_layer_hooks
from shopfloor.errors import SourceLocation, SpecError
from shopfloor.spec._loader import SPEC_FILENAMES, load_spec

__all__ = [
    "ValidateFn",
    "ValidationReport",
    "is_agent_spec",
    "is_skill_dir",
    "register_validator",
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

_VALIDATORS: list[tuple[Predicate, ValidateFn]] = []


def register_validator(predicate: Predicate, validate_fn: ValidateFn) -> None:
    """Validate paths for which ``predicate`` is true with ``validate_fn``; later registrations win."""
    _VALIDATORS.insert(0, (predicate, validate_fn))


def is_agent_spec(path: Path) -> bool:
    if path.is_dir():
        return any((path / name).is_file() for name in SPEC_FILENAMES)
    return path.suffix in {".yaml", ".yml"}


def is_skill_dir(path: Path) -> bool:
    return path.is_dir() and (path / "SKILL.md").is_file()


def _validate_agent(path: Path) -> ValidationReport:
    loaded = load_spec(path)
    return ValidationReport(
        kind="agent",
        name=loaded.spec.name,
        version=loaded.spec.version,
        digest=loaded.digest,
        path=loaded.path,
    )


def validate_path(path: Path | str) -> ValidationReport:
    """Validate whatever ``path`` is with the validator registered for its kind."""
    import_layer_hooks("_validate")
    path = Path(path)
    if not path.exists():
        raise SpecError([(SourceLocation(file=str(path)), "no such file or directory")])
    for predicate, validate_fn in _VALIDATORS:
        if predicate(path):
            return validate_fn(path)
    if is_skill_dir(path):
        message = "a skill directory, but no skill validator is registered (it comes with shopfloor.skills)"
    else:
        message = "not something shopfloor can validate: expected an agent.yaml or a directory containing one"
    raise SpecError([(SourceLocation(file=str(path)), message)])


register_validator(is_agent_spec, _validate_agent)

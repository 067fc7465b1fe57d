"""SKILL.md front matter, read and checked exactly as the Agent Skills reference validator does.

The reference (PyPI ``skills-ref``) parses the front matter with StrictYAML (every scalar is a
string; flow style, anchors, tags and duplicate keys are refused) after splitting the file on the
first two ``---``. We reproduce that so that strict mode accepts and rejects exactly what
``agentskills validate`` does; tests/skills/test_conformance.py runs both over a corpus.

Each broken rule is a :class:`Problem` naming the rule, so that compatibility mode can load a
skill from the wild that breaks a limit and say which rule it breaks.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import strictyaml  # type: ignore[import-untyped]

from shopfloor.errors import SkillFormatError, SourceLocation, SpecError
from shopfloor.spec import YamlLimits, check_yaml, compose_yaml

__all__ = ["FrontMatter", "Problem", "find_skill_md", "read_front_matter", "unsafe_name"]

MAX_NAME = 64
MAX_DESCRIPTION = 1024
MAX_COMPATIBILITY = 500
_TOP_KEY = re.compile(r"""^(?P<q>["']?)(?P<key>[^\s"':#][^"':]*?)(?P=q)\s*:""")
#: A few short fields (the description is at most 1,024 characters); more is an attack, not a skill.
#: StrictYAML's time grows with the square of the values (2,000 keys: 3 s; 6,500: 21 s), so they
#: are counted before it runs: 256 take it about 0.1 s.
FRONT_MATTER_LIMITS = YamlLimits(max_bytes=64 << 10, max_values=256)
ALLOWED_FIELDS = frozenset({"name", "description", "license", "allowed-tools", "metadata", "compatibility"})


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One broken rule: ``fatal`` problems stop even compatibility mode (nothing sensible to load)."""

    rule: str
    location: SourceLocation
    message: str
    fatal: bool = False
    #: the reference validator does not check this rule; the spec states it. Never a strict refusal.
    spec_only: bool = False

    def __str__(self) -> str:
        return f"{self.location}: {self.message} [rule {self.rule}]"


@dataclass(frozen=True, kw_only=True)
class FrontMatter:
    """The parsed front matter: raw data (strings, maps, lists), the body, the line of each key."""

    data: dict[str, Any]
    body: str
    lines: dict[str, int]
    file: Path
    problems: tuple[Problem, ...]


def find_skill_md(skill_dir: Path) -> Path | None:
    for name in ("SKILL.md", "skill.md"):
        if (skill_dir / name).exists():
            return skill_dir / name
    return None


def _fatal(file: Path, rule: str, message: str, line: int | None = None) -> SkillFormatError:
    return SkillFormatError(f"{SourceLocation(file=str(file), line=line)}: {message} [rule {rule}]")


def _yaml_fatal(file: Path, error: SpecError) -> SkillFormatError:
    where, message = error.problems[0]
    return _fatal(file, "yaml", f"front matter: {message}", where.line)


def _parse_yaml(text: str, file: Path) -> tuple[Any, dict[str, int], list[Problem]]:
    """StrictYAML first (the reference's parser); the bounded YAML loader as a compatibility fallback.

    The size, depth and alias limits are checked before either parser sees the text, and the
    fallback bounds what aliases and merge keys expand to, so no front matter costs more than
    a few milliseconds (StrictYAML refuses anchors and flow style, but only after parsing them).
    """
    try:
        whole = check_yaml(text, str(file), FRONT_MATTER_LIMITS)
    except SpecError as error:
        raise _yaml_fatal(file, error) from None
    lines = text.count("\n")
    if not whole and lines > FRONT_MATTER_LIMITS.max_values:
        # libyaml stopped at a syntax error, so the values after it were not counted; a line holds
        # a value or two in the block style StrictYAML accepts: bound the lines instead.
        message = f"not YAML that can be checked, and over {FRONT_MATTER_LIMITS.max_values} lines long"
        raise _fatal(file, "yaml", f"front matter: {message}", 1)
    try:
        doc = strictyaml.load(text)
    except strictyaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        try:
            loose = compose_yaml(text, str(file), FRONT_MATTER_LIMITS)
        except SpecError as error:
            raise _yaml_fatal(file, error) from exc
        problem = Problem(
            rule="strict-yaml",
            location=SourceLocation(file=str(file), line=line),
            message=f"front matter is not StrictYAML ({reason}); quote the value or use block style",
        )
        return _stringify(loose.data), _key_lines(text), [problem]
    return doc.data, _key_lines(text), []


def _key_lines(text: str) -> dict[str, int]:
    """File line of each top-level key (StrictYAML's own line numbers skip leading blank lines)."""
    lines: dict[str, int] = {}
    # The front matter text starts right after the opening "---", on line 1 of the file.
    for number, line in enumerate(text.split("\n"), start=1):
        match = _TOP_KEY.match(line)
        if match:
            lines.setdefault(match["key"], number)
    return lines


def _stringify(value: Any) -> Any:
    """Make plain-YAML data look like StrictYAML's: every scalar a string."""
    if isinstance(value, dict):
        return {str(k): _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_front_matter(skill_dir: Path) -> FrontMatter:
    """Parse and check SKILL.md; raise only for what makes the file unreadable, list the rest."""
    skill_md = find_skill_md(skill_dir)
    if skill_md is None:
        raise _fatal(skill_dir / "SKILL.md", "skill-md", "missing required file SKILL.md")
    try:
        content = skill_md.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _fatal(skill_md, "utf-8", f"SKILL.md is not UTF-8 text ({exc.reason})") from exc
    if not content.startswith("---"):
        raise _fatal(skill_md, "front-matter", "SKILL.md must start with YAML front matter (---)", 1)
    parts = content.split("---", 2)
    if len(parts) < 3:
        raise _fatal(skill_md, "front-matter", "front matter is not closed with ---", 1)
    data, lines, problems = _parse_yaml(parts[1], skill_md)
    if not isinstance(data, dict):
        raise _fatal(skill_md, "front-matter", "front matter must be a YAML mapping", 1)
    problems += _check(data, lines, skill_dir, skill_md)
    if isinstance(data.get("metadata"), dict):
        data["metadata"] = {str(k): v if isinstance(v, str) else str(v) for k, v in data["metadata"].items()}
    return FrontMatter(data=data, body=parts[2].strip(), lines=lines, file=skill_md, problems=tuple(problems))


def _check(data: dict[str, Any], lines: dict[str, int], skill_dir: Path, file: Path) -> list[Problem]:
    problems: list[Problem] = []

    def add(
        rule: str, key: str | None, message: str, *, fatal: bool = False, spec_only: bool = False
    ) -> None:
        loc = SourceLocation(file=str(file), line=lines.get(key) if key else 1)
        problems.append(Problem(rule=rule, location=loc, message=message, fatal=fatal, spec_only=spec_only))

    extra = sorted(set(data) - ALLOWED_FIELDS)
    for key in extra:
        add("unexpected-field", key, f"unexpected field {key!r}; only {sorted(ALLOWED_FIELDS)} are allowed")
    _check_name(data, skill_dir, add)
    description = data.get("description")
    if "description" not in data:
        add("description-required", None, "missing required field 'description'", fatal=True)
    elif not isinstance(description, str) or not description.strip():
        add("description-required", "description", "'description' must be a non-empty string", fatal=True)
    elif len(description) > MAX_DESCRIPTION:
        add(
            "description-length",
            "description",
            f"description is {len(description)} characters, over the {MAX_DESCRIPTION} limit",
        )
    if "compatibility" in data:
        compatibility = data["compatibility"]
        if not isinstance(compatibility, str):
            add("compatibility-string", "compatibility", "'compatibility' must be a string")
        elif len(compatibility) > MAX_COMPATIBILITY:
            add(
                "compatibility-length",
                "compatibility",
                f"compatibility is {len(compatibility)} characters, over the {MAX_COMPATIBILITY} limit",
            )
    # The spec types these fields but the reference does not check them: warn, never refuse.
    metadata = data.get("metadata")
    if "metadata" in data and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        add("metadata-map", "metadata", "'metadata' should map strings to strings", spec_only=True)
    for key in ("license", "allowed-tools"):
        if key in data and not isinstance(data[key], str):
            add(f"{key}-string", key, f"{key!r} should be a string", spec_only=True)
    return problems


def unsafe_name(name: str) -> str | None:
    """Why ``name`` cannot be one directory name (letters, digits, ``-``, ``_``), or None when it can."""
    if not name or len(name.encode()) > 255 or not all(c.isalnum() or c in "-_" for c in name):
        return (
            f"name {name[:80]!r} cannot be used as a directory name: use only letters, digits, hyphens "
            "and underscores (no '/', '.', spaces or other characters)"
        )
    return None


def _check_name(data: dict[str, Any], skill_dir: Path, add: Any) -> None:
    if "name" not in data:
        add("name-required", None, "missing required field 'name'", fatal=True)
        return
    raw = data["name"]
    if not raw or not isinstance(raw, str) or not raw.strip():
        add("name-required", "name", "'name' must be a non-empty string", fatal=True)
        return
    unsafe = unsafe_name(raw.strip())
    if unsafe:
        # Fatal in every mode: the name becomes a directory in the registry's cache.
        add("name-path", "name", unsafe, fatal=True)
        return
    name = unicodedata.normalize("NFKC", raw.strip())
    if len(name) > MAX_NAME:
        add("name-length", "name", f"name {name!r} is {len(name)} characters, over the {MAX_NAME} limit")
    if name != name.lower():
        add("name-lowercase", "name", f"name {name!r} must be lowercase")
    if name.startswith("-") or name.endswith("-"):
        add("name-hyphen-ends", "name", f"name {name!r} must not start or end with a hyphen")
    if "--" in name:
        add("name-consecutive-hyphens", "name", f"name {name!r} must not contain consecutive hyphens")
    if not all(c.isalnum() or c == "-" for c in name):
        add("name-characters", "name", f"name {name!r} may contain only letters, digits and hyphens")
    if unicodedata.normalize("NFKC", skill_dir.name) != name:
        add(
            "name-matches-directory",
            "name",
            f"name {name!r} must equal the directory name {skill_dir.name!r}; rename one of them",
        )

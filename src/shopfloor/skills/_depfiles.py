"""A skill's dependency files, read as data: what may be installed, never how.

``requirements.txt`` holds PEP 508 requirement specifiers (name, extras, version specifiers,
environment markers) and optionally ``--hash=ALG:HEX``; every other option line (``-r``, ``-e``,
``--index-url``, ``--no-binary``, ...), URL, local path or VCS reference is refused with file:line.
``package.json`` dependencies are registry names with semver ranges or dist-tags; ``git``, URL,
``file:``, ``link:``, alias and GitHub-shorthand specs are refused. The installer decides the index,
the formats (wheels only) and the flags; these files only name packages. Errors name the line and
the kind of problem, never the line's text: the file may not be what the skill claims it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from shopfloor.errors import SkillDependencyError, SourceLocation

__all__ = [
    "NodeDependencies",
    "PythonRequirements",
    "confined_file",
    "read_package_json",
    "read_requirements",
]

MAX_FILE = 256 << 10
_HASH = re.compile(r"^--hash[=\s]\s*(sha256|sha384|sha512):([0-9a-fA-F]+)$")
_OPTION_NAME = re.compile(r"^--?[A-Za-z][A-Za-z-]*")
_COMMENT = re.compile(r"(^|\s+)#.*$")
_ARCHIVE = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".egg")
_VCS = ("git+", "hg+", "svn+", "bzr+")
_NPM_NAME = re.compile(r"^(@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]{0,213}\Z")
# A semver range (1.2.3, ^1.2, ~1, >=1 <2, 1.x || 2, 1.0.0 - 2.0.0, *, prerelease and build tags) ...
_NPM_RANGE = re.compile(r"^[0-9xX*^~<>=v][0-9A-Za-z.*^~<>=|+ -]*$|^$")
# ... or a dist-tag such as ``latest``.
_NPM_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}\Z")
_NPM_USED = ("dependencies", "optionalDependencies", "peerDependencies")
_NPM_REFUSED = ("overrides", "resolutions", "workspaces", "bundleDependencies", "bundledDependencies")


@dataclass(frozen=True, kw_only=True)
class PythonRequirements:
    """Requirement lines as the installer writes them for pip (normalised, hashes kept)."""

    lines: tuple[str, ...]

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


@dataclass(frozen=True, kw_only=True)
class NodeDependencies:
    """The package.json the installer writes for npm: only the fields that name packages."""

    name: str
    dependencies: dict[str, dict[str, str]]

    def text(self) -> str:
        doc: dict[str, Any] = {"name": self.name, "version": "0.0.0", "private": True, **self.dependencies}
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def confined_file(skill_dir: Path, relative: str, where: SourceLocation | str) -> Path:
    """``skill_dir/relative`` when it is a regular file inside the skill, reached through no symlink.

    The message never quotes the target's content; it says where the reference is and why it is refused.
    """
    rel = Path(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts:
        raise SkillDependencyError(
            f"{where}: dependency file {relative!r} must be a relative path inside the skill directory"
        )
    root = skill_dir.resolve()
    path = root / rel
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise SkillDependencyError(
                f"{where}: dependency file {relative!r} goes through the symbolic link "
                f"{current.relative_to(root)}; a skill's files must be inside it"
            )
    if not path.resolve().is_relative_to(root) or not path.is_file():
        raise SkillDependencyError(f"{where}: dependency file {relative!r} is not a file in the skill")
    return path


def _read(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_FILE:
        raise SkillDependencyError(
            f"{path}: {size} bytes, over the {MAX_FILE >> 10} KiB limit of a dependency file"
        )
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SkillDependencyError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with ``\\`` continuations joined and comments removed, as pip reads it."""
    lines: list[tuple[int, str]] = []
    start, parts = 0, list[str]()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not parts:
            start = number
        if raw.endswith("\\"):
            parts.append(raw[:-1])
            continue
        parts.append(raw)
        line = _COMMENT.sub("", " ".join(parts)).strip()
        parts = []
        if line:
            lines.append((start, line))
    if parts and (line := _COMMENT.sub("", " ".join(parts)).strip()):
        lines.append((start, line))
    return lines


def _refuse(path: Path, line: int, message: str) -> SkillDependencyError:
    return SkillDependencyError(
        f"{path}:{line}: {message}; a dependency file lists requirement specifiers only "
        "(name, extras, versions, markers, --hash), the installer chooses the index and installs wheels only"
    )


def _option_name(token: str) -> str:
    match = _OPTION_NAME.match(token)
    return match.group(0) if match else "an option"


def _requirement(path: Path, number: int, spec: str) -> Requirement:
    lowered = spec.lower()
    if "://" in spec or lowered.startswith(_VCS) or lowered.startswith("git@"):
        raise _refuse(path, number, "a URL or VCS reference is not allowed")
    if spec.startswith((".", "/", "~")) or "/" in spec or "\\" in spec or lowered.endswith(_ARCHIVE):
        raise _refuse(path, number, "a local path or archive is not allowed")
    try:
        requirement = Requirement(spec)
    except InvalidRequirement:
        raise _refuse(path, number, "not a PEP 508 requirement specifier") from None
    if requirement.url is not None:
        raise _refuse(path, number, "a direct reference (name @ URL) is not allowed")
    return requirement


def read_requirements(path: Path) -> PythonRequirements:
    """Parse a requirements.txt of requirement specifiers; anything else is an error with file:line."""
    lines = []
    for number, line in _logical_lines(_read(path)):
        spec, *options = re.split(r"\s+(?=-)", line)
        if spec.startswith("-"):
            raise _refuse(path, number, f"the option {_option_name(spec)} is not allowed")
        requirement = _requirement(path, number, spec)
        hashes = []
        for option in options:
            match = _HASH.match(option)
            if match is None:
                raise _refuse(path, number, f"the option {_option_name(option)} is not allowed")
            hashes.append(f"--hash={match[1]}:{match[2].lower()}")
        lines.append(" ".join([str(requirement), *hashes]))
    return PythonRequirements(lines=tuple(lines))


def _line_of(text: str, key: str, after: int = 0) -> int:
    pattern = re.compile(r'"' + re.escape(key) + r'"\s*:')
    for number, line in enumerate(text.splitlines(), start=1):
        if number > after and pattern.search(line):
            return number
    return after or 1


def read_package_json(path: Path) -> NodeDependencies:
    """Parse a package.json down to its registry dependencies; any other spec is an error with file:line."""
    text = _read(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SkillDependencyError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise SkillDependencyError(f"{path}:1: package.json must be a JSON object")
    for key in _NPM_REFUSED:
        if key in doc:
            raise SkillDependencyError(
                f"{path}:{_line_of(text, key)}: {key!r} is not supported in a skill's package.json; "
                f"list registry packages under {', '.join(_NPM_USED)}"
            )
    used: dict[str, dict[str, str]] = {}
    for section in _NPM_USED:
        entries = doc.get(section, {})
        at = _line_of(text, section)
        if not isinstance(entries, dict):
            raise SkillDependencyError(f"{path}:{at}: {section!r} must map package names to versions")
        for name, spec in entries.items():
            where = f"{path}:{_line_of(text, name, at)}"
            if not isinstance(name, str) or not _NPM_NAME.match(name):
                raise SkillDependencyError(f"{where}: {section}: not an npm package name")
            if (
                not isinstance(spec, str)
                or spec.strip().lower().endswith(_ARCHIVE)
                or not (_NPM_RANGE.match(spec.strip()) or _NPM_TAG.match(spec))
            ):
                raise SkillDependencyError(
                    f"{where}: {section}.{name}: only a registry version range (1.2.3, ^1.2, >=1 <2) or a "
                    "dist-tag is allowed; git, URL, file:, link:, npm: alias and user/repo specs are refused"
                )
            used.setdefault(section, {})[name] = spec.strip()
    return NodeDependencies(name="shopfloor-skill-environment", dependencies=used)

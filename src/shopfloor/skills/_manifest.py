"""The canonical manifest of a skill: what a signature covers and what the digest names.

Every regular file (relative path, size, sha256) except the signature itself, plus the parsed
front matter, serialised as sorted, compact JSON. Any changed, added or removed byte changes it.
Nothing else may be in a skill: a symbolic link or a special file (FIFO, socket, device) makes it
unloadable, and an empty directory, which no signature covers, fails verification as an addition.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopfloor.errors import SkillFormatError

__all__ = ["SIGNATURE_FILE", "FileEntry", "Manifest", "build_manifest", "sha256_file"]

SIGNATURE_FILE = "shopfloor.sig"
_FORMAT = "shopfloor-skill-manifest/1"


@dataclass(frozen=True, kw_only=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Manifest:
    files: tuple[FileEntry, ...]
    front_matter: dict[str, Any]
    #: empty directories: on disk, not covered by the canonical form, so never part of a signed skill
    unsigned: tuple[str, ...] = ()

    def canonical(self) -> bytes:
        doc = {
            "format": _FORMAT,
            "front_matter": self.front_matter,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return json.loads(self.canonical())  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ValueError(f"not a {_FORMAT} manifest")
        files = tuple(
            FileEntry(path=f["path"], size=int(f["size"]), sha256=f["sha256"]) for f in doc["files"]
        )
        return cls(files=files, front_matter=doc["front_matter"])

    def diff(self, other: Manifest) -> list[str]:
        """What changed from ``self`` (signed) to ``other`` (on disk), one line per file."""
        before = {f.path: f for f in self.files}
        after = {f.path: f for f in other.files}
        lines = [f"changed: {p}" for p in sorted(before.keys() & after.keys()) if before[p] != after[p]]
        lines += [f"added: {p}" for p in sorted(after.keys() - before.keys())]
        lines += [f"removed: {p}" for p in sorted(before.keys() - after.keys())]
        lines += [f"added: {p}/ (an empty directory; a signature covers files only)" for p in other.unsigned]
        if not lines and self.front_matter != other.front_matter:
            lines.append("changed: SKILL.md front matter")
        return lines


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_SPECIAL = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


def build_manifest(skill_dir: Path, front_matter: dict[str, Any]) -> Manifest:
    entries = []
    empty = []
    for path in sorted(skill_dir.rglob("*")):
        rel = path.relative_to(skill_dir).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            # A link could point anywhere on the host; a signed skill is self-contained.
            raise SkillFormatError(f"{path}: symbolic links are not allowed in a skill")
        if stat.S_ISDIR(mode):
            if next(path.iterdir(), None) is None:
                empty.append(rel)
        elif not stat.S_ISREG(mode):
            kind = _SPECIAL.get(stat.S_IFMT(mode), "not a regular file")
            raise SkillFormatError(f"{path}: {kind} is not allowed in a skill (only files and directories)")
        elif rel != SIGNATURE_FILE:
            entries.append(FileEntry(path=rel, size=path.stat().st_size, sha256=sha256_file(path)))
    return Manifest(files=tuple(entries), front_matter=front_matter, unsigned=tuple(empty))

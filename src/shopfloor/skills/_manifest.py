"""The canonical manifest of a skill: what a signature covers and what the digest names.

Every regular file (relative path, size, sha256) except the signature itself, plus the parsed
front matter, serialised as sorted, compact JSON. Any changed, added or removed byte changes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopfloor.errors import SkillFormatError

__all__ = ["SIGNATURE_FILE", "FileEntry", "Manifest", "build_manifest"]

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
        if not lines and self.front_matter != other.front_matter:
            lines.append("changed: SKILL.md front matter")
        return lines


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(skill_dir: Path, front_matter: dict[str, Any]) -> Manifest:
    entries = []
    for path in sorted(skill_dir.rglob("*")):
        rel = path.relative_to(skill_dir).as_posix()
        if path.is_symlink():
            # A link could point anywhere on the host; a signed skill is self-contained.
            raise SkillFormatError(f"{path}: symbolic links are not allowed in a skill")
        if not path.is_file() or rel == SIGNATURE_FILE:
            continue
        entries.append(FileEntry(path=rel, size=path.stat().st_size, sha256=_sha256(path)))
    return Manifest(files=tuple(entries), front_matter=front_matter)

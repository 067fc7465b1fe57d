"""Values that describe history: file listings, diffs, retention, and the ws:// address form."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shopfloor.errors import WorkspacePathError
from shopfloor.workspace._objects import Entry
from shopfloor.workspace._paths import normalize

__all__ = [
    "Address",
    "Change",
    "FileInfo",
    "GrepMatch",
    "Retention",
    "compute_diff",
    "parse_address",
    "text_diff",
    "validate_name",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


def validate_name(name: str, what: str = "workspace") -> str:
    if not _NAME.match(name):
        raise WorkspacePathError(
            f"{what} name {name!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, kw_only=True)
class FileInfo:
    path: str
    kind: Literal["file", "dir"]
    size: int = 0
    executable: bool = False
    blob: str | None = None
    mount: str | None = None

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "executable": self.executable,
            "blob": self.blob,
            "mount": self.mount,
        }


@dataclass(frozen=True, kw_only=True)
class GrepMatch:
    path: str
    line: int
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "text": self.text}


@dataclass(frozen=True, kw_only=True)
class Change:
    path: str
    status: Literal["added", "changed", "deleted"]
    old: Entry | None
    new: Entry | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "old_blob": self.old.blob if self.old else None,
            "new_blob": self.new.blob if self.new else None,
            "old_size": self.old.size if self.old else None,
            "new_size": self.new.size if self.new else None,
        }


def compute_diff(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> list[Change]:
    changes: list[Change] = []
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        status: Literal["added", "changed", "deleted"] = (
            "added" if a is None else "deleted" if b is None else "changed"
        )
        changes.append(Change(path=path, status=status, old=a, new=b))
    return changes


def text_diff(path: str, old: bytes | None, new: bytes | None, *, context: int = 3) -> str:
    """A unified diff of two versions of a text file; a one-line note for binary files."""
    if b"\x00" in (old or b"")[:8192] or b"\x00" in (new or b"")[:8192]:
        return f"Binary file {path} differs\n"
    try:
        a = (old or b"").decode().splitlines(keepends=True)
        b = (new or b"").decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"Binary file {path} differs\n"
    lines = difflib.unified_diff(
        a,
        b,
        "/dev/null" if old is None else f"a/{path}",
        "/dev/null" if new is None else f"b/{path}",
        n=context,
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


@dataclass(frozen=True, kw_only=True)
class Retention:
    """Which commits of a workspace survive gc: the last ``keep_last`` of each ref, or those newer
    than ``keep_days``, whichever keeps more; pinned commits always. Both None: keep everything."""

    keep_last: int | None = None
    keep_days: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"keep_last": self.keep_last, "keep_days": self.keep_days}


@dataclass(frozen=True, kw_only=True)
class Address:
    """``ws://NAME@REV/path`` or ``NAME:path`` (REV defaults to ``main``)."""

    workspace: str
    rev: str
    path: str


def parse_address(text: str) -> Address:
    if text.startswith("ws://"):
        rest = text[len("ws://") :]
        head, _, path = rest.partition("/")
        name, _, rev = head.partition("@")
    elif ":" in text:
        head, _, path = text.partition(":")
        name, _, rev = head.partition("@")
    else:
        raise WorkspacePathError(f"address {text!r}: expected ws://NAME@COMMIT/path or NAME:path")
    validate_name(name)
    return Address(workspace=name, rev=rev or "main", path=normalize(path))

"""The immutable objects of a workspace and their byte encodings.

Three kinds, each stored under ``KIND/SHA256`` where the hash is of the stored bytes,
so an object is verified by hashing what was read and identical content is stored once:

- a **blob** is a file's raw content;
- a **tree** maps every path of a workspace state to an entry; it is stored either
  *full* or as a *delta* (paths set and deleted) against a base tree, with the chain
  length capped, so a commit that changes one file of 10,000 writes a few hundred
  bytes of tree, not the whole listing (see ``_trees.py``);
- a **commit** names a tree, its parents and who made it, when, in which run and step.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

from shopfloor.errors import WorkspaceError

__all__ = [
    "Commit",
    "Entry",
    "TreeObject",
    "decode_commit",
    "decode_tree",
    "encode_commit",
    "encode_tree",
    "object_key",
    "sha256",
]

ObjectKind = Literal["blobs", "trees", "commits"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def object_key(kind: ObjectKind, object_id: str) -> str:
    return f"{kind}/{object_id}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One path of a tree: a file (blob, size, executable bit) or an explicitly made directory."""

    kind: Literal["file", "dir"]
    blob: str = ""
    size: int = 0
    executable: bool = False

    def encode(self) -> str:
        if self.kind == "dir":
            return "/"
        return f"{self.blob}:{self.size}{':x' if self.executable else ''}"

    @staticmethod
    def decode(code: str) -> Entry:
        if code == "/":
            return _DIR
        blob, size, *rest = code.split(":")
        return Entry(kind="file", blob=blob, size=int(size), executable=bool(rest))


_DIR = Entry(kind="dir")


@dataclass(frozen=True, kw_only=True)
class TreeObject:
    """A stored tree: full (``base`` is None) or a delta against ``base``."""

    base: str | None
    depth: int
    set: dict[str, Entry]
    deleted: tuple[str, ...] = ()


def encode_tree(tree: TreeObject) -> bytes:
    body: dict[str, Any] = {"set": {p: e.encode() for p, e in sorted(tree.set.items())}}
    if tree.base is not None:
        body.update(base=tree.base, depth=tree.depth, deleted=sorted(tree.deleted))
    return zlib.compress(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), 6)


def decode_tree(data: bytes, tree_id: str) -> TreeObject:
    try:
        body = json.loads(zlib.decompress(data))
        return TreeObject(
            base=body.get("base"),
            depth=int(body.get("depth", 0)),
            set={p: Entry.decode(c) for p, c in body["set"].items()},
            deleted=tuple(body.get("deleted", ())),
        )
    except (zlib.error, ValueError, KeyError, TypeError) as exc:
        raise WorkspaceError(f"tree {tree_id} is corrupt: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class Commit:
    id: str = ""
    tree: str
    parents: tuple[str, ...] = ()
    workspace: str
    message: str = ""
    time: float
    run_id: str | None = None
    step: int | None = None
    identity: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tree": self.tree,
            "parents": list(self.parents),
            "workspace": self.workspace,
            "message": self.message,
            "time": self.time,
            "run_id": self.run_id,
            "step": self.step,
            "identity": self.identity,
            "extra": self.extra,
        }


def encode_commit(commit: Commit) -> bytes:
    body = commit.to_json()
    del body["id"]
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_commit(data: bytes, commit_id: str) -> Commit:
    try:
        body = json.loads(data)
        return Commit(
            id=commit_id,
            tree=body["tree"],
            parents=tuple(body["parents"]),
            workspace=body["workspace"],
            message=body.get("message", ""),
            time=float(body["time"]),
            run_id=body.get("run_id"),
            step=body.get("step"),
            identity=body.get("identity"),
            extra=dict(body.get("extra") or {}),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WorkspaceError(f"commit {commit_id} is corrupt: {exc}") from exc

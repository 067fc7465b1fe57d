"""Capture: turn what changed in a materialised directory into the next commit.

Only files whose ``lstat`` differs from the record made when the directory was
materialised are read and hashed. Everything captured is checked first: names must
be valid UTF-8 workspace paths, symlinks and hard links must not point outside the
directory, and devices, sockets and pipes are refused; the workspace's quota is checked
on the sizes ``lstat`` reports before any file is read, so a refused capture reads,
stores and commits nothing. Files are hashed and stored in chunks (``store_file``), so
capturing a file of any size takes a few MiB of memory.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from shopfloor.errors import WorkspaceError, WorkspacePathError, WorkspaceReadOnlyError
from shopfloor.workspace._history import compute_diff
from shopfloor.workspace._materialize import (
    Record,
    is_clean,
    is_empty,
    load_state,
    make_record,
    save_state,
    scan_directory,
)
from shopfloor.workspace._objects import Entry, object_key
from shopfloor.workspace._paths import normalize
from shopfloor.workspace._store import CHUNK, ObjectStore

if TYPE_CHECKING:
    from shopfloor.workspace._workspace import Workspace

__all__ = ["capture_sync"]


def _safe_rel(rel: str) -> str:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise WorkspacePathError(
            f"file name {rel.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8"
        ) from None
    return normalize(rel, allow_root=False)


class _Slice:
    """The first ``size`` bytes of an open file, read in chunks and hashed as they go.

    At the end it checks that the file held exactly ``size`` bytes and, when ``expect`` is
    given, that they hash to it: a file that changed since it was checked is an error,
    never a blob under the wrong key. ``seek(0)`` starts over (an S3 client rereads a body).
    """

    def __init__(self, handle: BinaryIO, size: int, name: str, expect: str | None = None) -> None:
        self._handle = handle
        self._size = size
        self._name = name
        self._expect = expect
        self.seek(0)

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        if (offset, whence) != (0, os.SEEK_SET):
            raise ValueError("a captured file is read from its start only")
        self._handle.seek(0)
        self._done = 0
        self._hash = hashlib.sha256()
        return 0

    def tell(self) -> int:
        return self._done

    def read(self, size: int = -1, /) -> bytes:
        if size == 0:
            return b""
        left = self._size - self._done
        want = left if size < 0 else min(size, left)
        data = self._handle.read(min(want, CHUNK)) if want else b""
        if not data:
            self._finish()
            return b""
        self._done += len(data)
        self._hash.update(data)
        return data

    def _finish(self) -> None:
        if self._done != self._size or self._handle.read(1):
            raise WorkspaceError(
                f"{self._name!r} changed size while it was captured ({self._size} bytes when checked)"
            )
        if self._expect is not None and self._hash.hexdigest() != self._expect:
            raise WorkspaceError(f"{self._name!r} changed while it was captured")

    def digest(self) -> str:
        while self.read(CHUNK):
            pass
        return self._hash.hexdigest()


def store_file(store: ObjectStore, path: str, size: int, name: str) -> str:
    """Hash the file at ``path`` and store it as a blob in chunks; returns the blob id.

    Memory stays at a chunk or two whatever the size: a small file is read once, a larger
    one twice (hashed, then streamed to the store under its hash and checked again).
    """
    with open(path, "rb") as handle:
        if size <= CHUNK:
            data = handle.read(size + 1)
            if len(data) != size:
                raise WorkspaceError(
                    f"{name!r} changed size while it was captured ({size} bytes when checked)"
                )
            blob = hashlib.sha256(data).hexdigest()
            store.put(object_key("blobs", blob), data)
            return blob
        blob = _Slice(handle, size, name).digest()
        key = object_key("blobs", blob)
        if not store.exists(key):
            store.put_file(key, _Slice(handle, size, name, expect=blob), size)
        return blob


def capture_sync(
    ws: Workspace,
    directory: Path,
    *,
    ref: str,
    base: str | None,
    message: str,
    run_id: str | None,
    step: int | None,
    identity: str | None,
) -> str:
    real = os.path.realpath(directory)
    state = load_state(ws, real)
    if state is not None and state.get("read_only"):
        raise WorkspaceReadOnlyError(f"{real} was materialised read-only; there is nothing to capture")
    base_commit = base or (state["commit"] if state else ws.head_sync(ref))
    records: dict[str, Record] = state["files"] if state and state["commit"] == base_commit else {}
    base_entries = ws.repo.entries_sync(base_commit)
    files, dirs, other = scan_directory(real)
    by_inode: dict[tuple[int, int], int] = {}
    for st in files.values():
        by_inode[(st.st_dev, st.st_ino)] = by_inode.get((st.st_dev, st.st_ino), 0) + 1
    for rel, st in files.items():
        if st.st_nlink > by_inode[(st.st_dev, st.st_ino)]:
            raise WorkspacePathError(
                f"{rel!r} in {real} is a hard link to a file outside the workspace; copy the file instead"
            )
    reads: dict[str, str] = {}  # relative path -> file to read (differs for links)
    stats: dict[str, os.stat_result] = dict(files)
    for rel in other:
        path = os.path.join(real, rel)
        target = os.path.realpath(path)
        if not os.path.islink(path):
            raise WorkspacePathError(
                f"{rel!r} in {real} is not a regular file or directory (a device, socket or pipe)"
            )
        if target != real and not target.startswith(real + os.sep):
            raise WorkspacePathError(
                f"{rel!r} in {real} is a symbolic link to {target}, outside the workspace"
            )
        if not os.path.isfile(target):
            raise WorkspacePathError(
                f"{rel!r} in {real} is a symbolic link to a directory; links to files only"
            )
        stats[rel] = os.stat(target)
        reads[rel] = target
    entries: dict[str, Entry] = {}
    todo: list[str] = []
    for rel, st in stats.items():
        record = records.get(rel)
        if rel not in reads and is_clean(record, st) and record is not None:
            # Unchanged since materialised: the committed entry (its path already validated) stands.
            executable = bool(st.st_mode & 0o100)
            known = base_entries.get(rel)
            if known is not None and known.blob == record[0] and known.executable == executable:
                entries[rel] = known
            else:
                entries[_safe_rel(rel)] = Entry(
                    kind="file", blob=record[0], size=st.st_size, executable=executable
                )
        else:
            todo.append(rel)
    for rel in dirs:
        if is_empty(os.path.join(real, rel)):
            entries[_safe_rel(rel)] = Entry(kind="dir")
    names = {rel: _safe_rel(rel) for rel in todo}
    # The quota is checked on the sizes lstat gave, before a byte is read: a sparse file counts
    # at its apparent size, which is what it would take in the store.
    planned = dict(entries)
    notes: dict[str, str] = {}
    for rel in todo:
        st = stats[rel]
        planned[names[rel]] = Entry(kind="file", size=st.st_size)
        if st.st_blocks * 512 < st.st_size:
            notes[names[rel]] = f" (sparse: {st.st_blocks * 512} bytes on disk)"
    ws.check_quota(planned, base=base_commit, changed=names.values(), note=notes)

    def capture_file(rel: str) -> None:
        st = stats[rel]
        blob = store_file(ws.store, reads.get(rel, os.path.join(real, rel)), st.st_size, names[rel])
        entries[names[rel]] = Entry(
            kind="file", blob=blob, size=st.st_size, executable=bool(st.st_mode & 0o100)
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(capture_file, todo))
    changes = compute_diff(base_entries, entries)
    commit_id = base_commit
    if changes or base_commit is None:
        commit_id = ws.commit_entries_sync(
            ref=ref,
            expected_head=base_commit,
            entries=entries,
            changed=[c.path for c in changes if c.new is not None],
            deleted=[c.path for c in changes if c.new is None],
            message=message,
            run_id=run_id,
            step=step,
            identity=identity,
        )
    kept = {rel: make_record(entries[rel].blob, st) for rel, st in files.items()}
    save_state(
        ws,
        real,
        {"directory": real, "workspace": ws.name, "commit": commit_id, "read_only": False, "files": kept},
    )
    assert commit_id is not None
    return commit_id

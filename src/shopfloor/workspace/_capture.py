"""Capture: turn what changed in a materialised directory into the next commit.

Only files whose ``lstat`` differs from the record made when the directory was
materialised are read and hashed. Everything captured is checked first: names must
be valid UTF-8 workspace paths, symlinks and hard links must not point outside the
directory, and devices, sockets and pipes are refused; quotas are checked before any
blob is stored, so a refused capture commits nothing.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from shopfloor.errors import WorkspacePathError, WorkspaceQuotaError, WorkspaceReadOnlyError
from shopfloor.workspace._history import Quota, compute_diff
from shopfloor.workspace._materialize import (
    Record,
    is_clean,
    is_empty,
    load_state,
    make_record,
    save_state,
    scan_directory,
)
from shopfloor.workspace._objects import Entry, object_key, sha256
from shopfloor.workspace._paths import normalize

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
    quota: Quota | None,
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
    limits = quota or Quota()
    total = sum(st.st_size for st in stats.values())
    biggest = max(stats, key=lambda r: stats[r].st_size, default=None)
    if limits.max_bytes is not None and total > limits.max_bytes:
        raise WorkspaceQuotaError(
            f"{real} holds {total} bytes, over the workspace limit of {limits.max_bytes}"
        )
    if limits.max_files is not None and len(stats) > limits.max_files:
        raise WorkspaceQuotaError(
            f"{real} holds {len(stats)} files, over the workspace limit of {limits.max_files}"
        )
    if (
        limits.max_file_bytes is not None
        and biggest is not None
        and stats[biggest].st_size > limits.max_file_bytes
    ):
        raise WorkspaceQuotaError(
            f"{biggest!r} in {real} is {stats[biggest].st_size} bytes, "
            f"over the file limit of {limits.max_file_bytes}"
        )

    def put_file(rel: str) -> None:
        with open(reads.get(rel, os.path.join(real, rel)), "rb") as handle:
            data = handle.read()
        blob = sha256(data)
        ws.store.put(object_key("blobs", blob), data)
        entries[_safe_rel(rel)] = Entry(
            kind="file", blob=blob, size=len(data), executable=bool(stats[rel].st_mode & 0o100)
        )

    for rel in todo:
        _safe_rel(rel)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put_file, todo))
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

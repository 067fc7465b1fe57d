"""Materialise a commit into a real directory (for the sandbox); ``_capture.py`` brings it back.

Both cost O(changed files) in reads, writes and hashing: a record of each file's
``lstat`` (size, mtime, ctime, inode) as materialised is kept under the cache dir, so
re-materialising another commit into the same directory rewrites only files whose
blob differs or whose stat changed, and ``capture`` hashes only files whose stat
changed. Both still stat every file, which is cheap next to reading it.

Writable materialisations get **copies** (an in-kernel copy, a reflink where the file
system supports it), never hard links: a program in the sandbox that opens a file for
writing would otherwise write into the shared inode and corrupt every other
materialisation and the cache. ``read_only=True`` materialisations, which the sandbox
binds read-only, hard-link from a separate blob cache (never from the store), so the
store cannot be damaged even if the caller forgets the read-only bind.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat as stat_mod
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopfloor.errors import WorkspaceError
from shopfloor.workspace._objects import object_key, sha256

if TYPE_CHECKING:
    from shopfloor.workspace._workspace import Workspace

__all__ = [
    "Record",
    "is_clean",
    "is_empty",
    "load_state",
    "make_record",
    "materialize_sync",
    "prune_records",
    "release_sync",
    "save_state",
    "scan_directory",
]

Record = list[Any]  # [blob, size, mtime_ns, ctime_ns, ino, executable]

#: threads placing files, and the number of files from which they are used
_WORKERS = 4
_PARALLEL_FROM = 256


def make_record(blob: str, st: os.stat_result) -> Record:
    return [blob, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, bool(st.st_mode & 0o100)]


def is_clean(record: Record | None, st: os.stat_result) -> bool:
    return record is not None and record[1:5] == [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _state_path(ws: Workspace, real: str) -> Path:
    return ws.repo.cache_dir / "materialized" / f"{sha256(real.encode())[:40]}.json"


def release_sync(ws: Workspace, directory: Path) -> bool:
    """Forget the record of a materialised directory (call it when the directory is deleted)."""
    try:
        _state_path(ws, os.path.realpath(directory)).unlink()
    except FileNotFoundError:
        return False
    return True


def prune_records(cache_dir: Path) -> int:
    """Delete the records of materialised directories that no longer exist; return how many."""
    count = 0
    for record in (cache_dir / "materialized").glob("*.json"):
        try:
            directory = json.loads(record.read_text()).get("directory")
        except (OSError, ValueError):
            directory = None
        if not directory or not os.path.isdir(directory):
            record.unlink(missing_ok=True)
            count += 1
    return count


def load_state(ws: Workspace, real: str) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(_state_path(ws, real).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if state.get("directory") == real and state.get("workspace") == ws.name else None


def save_state(ws: Workspace, real: str, state: dict[str, Any]) -> None:
    path = _state_path(ws, real)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, separators=(",", ":")))
    os.replace(tmp, path)


def is_empty(directory: str) -> bool:
    with os.scandir(directory) as listing:
        return next(listing, None) is None


def scan_directory(root: str) -> tuple[dict[str, os.stat_result], list[str], list[str]]:
    """Regular files (by relative path, with lstat), directories, and anything else, under ``root``."""
    files: dict[str, os.stat_result] = {}
    dirs: list[str] = []
    other: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as listing:
            items = list(listing)
        for item in items:
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            st = item.stat(follow_symlinks=False)
            if stat_mod.S_ISDIR(st.st_mode):
                dirs.append(rel)
                stack.append(rel)
            elif stat_mod.S_ISREG(st.st_mode):
                files[rel] = st
            else:
                other.append(rel)
    return files, dirs, other


def _blob_sources(ws: Workspace, blobs: set[str], *, for_links: bool) -> dict[str, str]:
    """A local file for each blob: the store's own file when it has one (unless hard links will be
    made to it), else the blob cache, filled from the store in parallel.

    Cache files carry an mtime of 0: one written in place through a hard link (by a root
    process ignoring the read-only bind) gets a new mtime and is fetched again, so one
    damaged materialisation never spreads to the next.
    """
    sources: dict[str, str] = {}
    missing: list[str] = []
    cache = ws.repo.cache_dir / "blobs"
    for blob in blobs:
        local = None if for_links else ws.store.local_path(object_key("blobs", blob))
        if local is not None:
            sources[blob] = str(local)
            continue
        cached = cache / blob[:2] / blob[2:]
        sources[blob] = str(cached)
        try:
            intact = cached.stat().st_mtime_ns == 0
        except FileNotFoundError:
            intact = False
        if not intact:
            missing.append(blob)

    def fetch(chunk: list[str]) -> None:
        made: set[str] = set()
        suffix = f"{os.getpid()}-{threading.get_ident()}"
        for blob in chunk:
            data = ws.repo.blob_sync(blob)
            target = sources[blob]
            parent = os.path.dirname(target)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            tmp = f"{parent}/.tmp-{suffix}-{blob[:16]}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # left by a crash: it may be read-only already
            # Read-only from its creation and its mtime set on the open file: a chmod and a utime
            # by path cost more than the write on this kind of disk (58 vs 39 us a file).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.utime(fd, ns=(0, 0))
            finally:
                os.close(fd)
            os.replace(tmp, target)

    _in_slices(fetch, missing)
    return sources


def _in_slices(work: Callable[[list[str]], Any], items: list[str]) -> list[Any]:
    """``work`` over ``items``: at once below ``_PARALLEL_FROM``, else over ``_WORKERS`` threads
    with a slice each (a future per item costs more than a small file)."""
    if len(items) < _PARALLEL_FROM:
        return [work(items)]
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        return list(pool.map(work, [items[i::_WORKERS] for i in range(_WORKERS)]))


def _missing(ws: Workspace, blob: str) -> WorkspaceError:
    return WorkspaceError(f"blob {blob[:12]} is missing from {ws.store.url}: the store is damaged")


def _link(ws: Workspace, blob: str, source: str, target: str) -> bool:
    """Hard-link ``target`` to the cached blob; False where links cannot be made (then copy)."""
    try:
        os.link(source, target)
    except FileNotFoundError:
        raise _missing(ws, blob) from None
    except OSError:  # another file system, or the inode's link limit
        return False
    return True


def _copy(ws: Workspace, blob: str, source: str, target: str, mode: int) -> os.stat_result:
    """Copy in the kernel (a reflink where the file system can) and return the copy's stat."""
    try:
        fin = os.open(source, os.O_RDONLY)
    except FileNotFoundError:
        raise _missing(ws, blob) from None
    try:
        fout = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            remaining = os.fstat(fin).st_size
            try:
                while remaining > 0:
                    done = os.copy_file_range(fin, fout, remaining)
                    if done == 0:
                        break
                    remaining -= done
            except OSError:  # no in-kernel copy between these file systems: copy through memory
                os.lseek(fin, 0, os.SEEK_SET)
                os.ftruncate(fout, 0)
                os.lseek(fout, 0, os.SEEK_SET)
                while chunk := os.read(fin, 1 << 20):
                    os.write(fout, chunk)
            os.fchmod(fout, mode)  # the umask must not change what was committed
            return os.fstat(fout)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _make_writable(root: str) -> None:
    for dirpath, dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, name), 0o755)


def materialize_sync(ws: Workspace, commit_id: str, directory: Path, *, read_only: bool = False) -> Path:
    entries = ws.repo.entries_sync(commit_id)
    directory.mkdir(parents=True, exist_ok=True)
    real = os.path.realpath(directory)
    state = load_state(ws, real)
    if state is None and not is_empty(real):
        raise WorkspaceError(f"cannot materialise into {real}: it is not empty and was not materialised here")
    if state is not None and state.get("read_only"):
        _make_writable(real)
    records: dict[str, Record] = (
        {} if state is None or state.get("read_only") != read_only else state["files"]
    )
    files, dirs, other = scan_directory(real)
    for rel in other:
        os.unlink(os.path.join(real, rel))
    kept: dict[str, Record] = {}
    for rel, st in files.items():
        entry = entries.get(rel)
        record = records.get(rel)
        if (
            entry is not None
            and entry.kind == "file"
            and is_clean(record, st)
            and record is not None
            and record[0] == entry.blob
            and record[5] == entry.executable
        ):
            kept[rel] = record
        else:
            os.unlink(os.path.join(real, rel))
    wanted = {p: e for p, e in entries.items() if e.kind == "file" and p not in kept}
    # Directories the commit does not have go before any file is placed: their files are gone already,
    # and a file of the commit may take the place of one (a directory in the last commit, a file now).
    explicit = {p for p, e in entries.items() if e.kind == "dir"}
    needed = explicit | {
        a for p, e in entries.items() if e.kind == "file" for a in _ancestors(p.rpartition("/")[0])
    }
    for rel in sorted(set(dirs) - needed, key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(real, rel))
    link = {p for p, e in wanted.items() if read_only and not e.executable}
    link_sources = _blob_sources(ws, {e.blob for p, e in wanted.items() if p in link}, for_links=True)
    copy_sources = _blob_sources(ws, {e.blob for p, e in wanted.items() if p not in link}, for_links=False)
    made: set[str] = set(dirs) & needed
    for rel in sorted(wanted):
        parent = rel.rpartition("/")[0]
        if parent and parent not in made:
            os.makedirs(os.path.join(real, parent), exist_ok=True)
            made.update(_ancestors(parent))

    def place(rel: str) -> tuple[str, Record]:
        entry = wanted[rel]
        target = os.path.join(real, rel)
        if rel in link and _link(ws, entry.blob, link_sources[entry.blob], target):
            return rel, make_record(entry.blob, os.lstat(target))
        source = copy_sources.get(entry.blob) or link_sources[entry.blob]
        mode = (0o755 if entry.executable else 0o644) & (~0o222 if read_only else ~0)
        return rel, make_record(entry.blob, _copy(ws, entry.blob, source, target, mode))

    # File creation is system calls that release the GIL: a few threads overlap them (1.7x
    # on 2 cores for 10,000 small files); below a few hundred files the pool costs more.
    def place_all(paths: list[str]) -> list[tuple[str, Record]]:
        return [place(rel) for rel in paths]

    for placed in _in_slices(place_all, list(wanted)):
        kept.update(placed)
    for rel in explicit - made:
        os.makedirs(os.path.join(real, rel), exist_ok=True)
    if read_only:
        for dirpath, _dirs, _files in os.walk(real, topdown=False):
            os.chmod(dirpath, 0o555)
    save_state(
        ws,
        real,
        {"directory": real, "workspace": ws.name, "commit": commit_id, "read_only": read_only, "files": kept},
    )
    return Path(real)


def _ancestors(path: str) -> list[str]:
    parts = path.split("/") if path else []
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]

"""A view of a workspace: the file operations agents and skills use, and ``commit``.

A view starts from a commit (or nothing, for a new workspace) and keeps the full
path map in memory; file contents live in the store from the moment they are written,
so a view's memory does not grow with the data. ``commit`` writes only what changed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shopfloor.errors import (
    WorkspaceConflictError,
    WorkspaceEditError,
    WorkspaceError,
    WorkspaceNotFoundError,
    WorkspacePathError,
    WorkspaceQuotaError,
    WorkspaceReadOnlyError,
)
from shopfloor.workspace._history import FileInfo, GrepMatch, Quota, compute_diff
from shopfloor.workspace._objects import Entry, object_key, sha256
from shopfloor.workspace._paths import glob_regex, is_under, normalize, parent_dirs

if TYPE_CHECKING:
    from shopfloor.workspace._mounts import MountSource
    from shopfloor.workspace._repo import Workspace

__all__ = ["WorkspaceView"]

_DIR = Entry(kind="dir")


class WorkspaceView:
    def __init__(
        self,
        workspace: Workspace,
        *,
        base: str | None,
        entries: Mapping[str, Entry],
        ref: str | None,
        read_only: bool,
        quota: Quota | None = None,
        mounts: Mapping[str, MountSource] | None = None,
    ) -> None:
        self.workspace = workspace
        self.base = base
        self.ref = ref
        self.read_only = read_only or ref is None
        self.quota = quota or Quota()
        self.mounts = {normalize(point, allow_root=False): src for point, src in (mounts or {}).items()}
        self._reset(entries)

    def _reset(self, entries: Mapping[str, Entry]) -> None:
        self._entries = dict(entries)
        self._changed: set[str] = set()
        self._deleted: set[str] = set()
        self._bytes = sum(e.size for e in self._entries.values())
        self._files = sum(1 for e in self._entries.values() if e.kind == "file")
        self._dirs: dict[str, int] | None = None  # implied directory -> entries below it, built on demand

    # bookkeeping ---------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(self._changed or self._deleted)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    @property
    def file_count(self) -> int:
        return self._files

    def _dir_index(self) -> dict[str, int]:
        if self._dirs is None:
            dirs: dict[str, int] = {}
            for path in self._entries:
                for parent in parent_dirs(path):
                    dirs[parent] = dirs.get(parent, 0) + 1
            self._dirs = dirs
        return self._dirs

    def _set(self, path: str, entry: Entry) -> None:
        old = self._entries.get(path)
        if old is None and self._dirs is not None:
            for parent in parent_dirs(path):
                self._dirs[parent] = self._dirs.get(parent, 0) + 1
        self._bytes += entry.size - (old.size if old else 0)
        self._files += (entry.kind == "file") - (old is not None and old.kind == "file")
        self._entries[path] = entry
        self._changed.add(path)
        self._deleted.discard(path)

    def _unset(self, path: str) -> None:
        old = self._entries.pop(path)
        if self._dirs is not None:
            for parent in parent_dirs(path):
                self._dirs[parent] -= 1
                if not self._dirs[parent]:
                    del self._dirs[parent]
        self._bytes -= old.size
        self._files -= old.kind == "file"
        self._deleted.add(path)
        self._changed.discard(path)

    def _is_dir(self, path: str) -> bool:
        entry = self._entries.get(path)
        return (entry is not None and entry.kind == "dir") or path in self._dir_index() or not path

    def _under(self, path: str) -> list[str]:
        prefix = path + "/" if path else ""
        return [p for p in self._entries if p.startswith(prefix)]

    def _mount(self, path: str) -> tuple[str, MountSource, str] | None:
        for point, source in self.mounts.items():
            if is_under(path, point):
                return point, source, path[len(point) + 1 :]
        return None

    def _writable(self, path: str, *, allow_root: bool = False) -> str:
        path = normalize(path, allow_root=allow_root)
        if self.read_only:
            raise WorkspaceReadOnlyError(
                f"this view of workspace {self.workspace.name} is read-only; {path!r} cannot be changed"
            )
        hit = self._mount(path)
        if hit is not None or any(is_under(point, path) for point in self.mounts):
            point = hit[0] if hit else path
            raise WorkspaceReadOnlyError(f"{path!r} is in the read-only mount at {point!r}")
        for parent in parent_dirs(path):
            entry = self._entries.get(parent)
            if entry is not None and entry.kind == "file":
                raise WorkspacePathError(f"cannot use {path!r}: {parent!r} is a file, not a directory")
        return path

    def _file(self, path: str) -> Entry:
        entry = self._entries.get(path)
        if entry is None or entry.kind != "file":
            what = "a directory" if entry is not None or (path and path in self._dir_index()) else "not found"
            raise WorkspaceNotFoundError(f"{path!r} in workspace {self.workspace.name}: {what}, not a file")
        return entry

    # reading ------------------------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        path = normalize(path)
        hit = self._mount(path)
        if hit is not None:
            point, source, rel = hit
            info = await asyncio.to_thread(source.stat, rel)
            if info is None:
                raise WorkspaceNotFoundError(f"{path!r} is not in the mount at {point!r}")
            return FileInfo(
                path=path, kind=info.kind, size=info.size, executable=info.executable, mount=point
            )
        entry = self._entries.get(path)
        if entry is not None and entry.kind == "file":
            return FileInfo(
                path=path, kind="file", size=entry.size, executable=entry.executable, blob=entry.blob
            )
        if self._is_dir(path) or any(is_under(point, path) for point in self.mounts):
            return FileInfo(path=path, kind="dir")
        raise WorkspaceNotFoundError(f"{path!r} does not exist in workspace {self.workspace.name}")

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except WorkspaceNotFoundError:
            return False
        return True

    async def ls(self, path: str = "") -> list[FileInfo]:
        """The entries directly inside directory ``path`` (or the file itself), sorted by name."""
        path = normalize(path)
        hit = self._mount(path)
        if hit is not None:
            point, source, rel = hit
            infos = await asyncio.to_thread(source.list_dir, rel)
            return sorted(
                (
                    FileInfo(
                        path=f"{point}/{i.path}",
                        kind=i.kind,
                        size=i.size,
                        executable=i.executable,
                        mount=point,
                    )
                    for i in infos
                ),
                key=lambda i: i.path,
            )
        info = await self.stat(path)
        if info.kind == "file":
            return [info]
        prefix = path + "/" if path else ""
        children: dict[str, FileInfo] = {}
        for candidate in [*self._under(path), *self.mounts]:
            if not candidate.startswith(prefix):
                continue
            name, _, rest = candidate[len(prefix) :].partition("/")
            child = prefix + name
            entry = self._entries.get(child)
            if rest or entry is None or entry.kind == "dir":
                children[name] = FileInfo(
                    path=child, kind="dir", mount=child if child in self.mounts else None
                )
            else:
                children[name] = FileInfo(
                    path=child, kind="file", size=entry.size, executable=entry.executable, blob=entry.blob
                )
        return [children[name] for name in sorted(children)]

    async def read(self, path: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """The bytes of a file, or of ``length`` bytes from ``offset``."""
        path = normalize(path, allow_root=False)
        hit = self._mount(path)
        if hit is not None:
            data = await asyncio.to_thread(hit[1].read, hit[2])
        else:
            entry = self._file(path)
            data = await asyncio.to_thread(self.workspace.repo.blob_sync, entry.blob)
        if offset or length is not None:
            data = data[offset : None if length is None else offset + length]
        return data

    async def read_text(
        self, path: str, *, offset: int = 0, length: int | None = None, encoding: str = "utf-8"
    ) -> str:
        data = await self.read(path, offset=offset, length=length)
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise WorkspaceError(
                f"{path!r} is not {encoding} text ({exc.reason} at byte {exc.start})"
            ) from None

    async def glob(self, pattern: str) -> list[str]:
        """File paths matching ``pattern`` (``*``, ``?``, ``[...]`` in a name; ``**`` across directories)."""
        regex = glob_regex(pattern)
        found = [p for p, e in self._entries.items() if e.kind == "file" and regex.match(p)]
        for point, source in self.mounts.items():
            files = await asyncio.to_thread(_walk, source)
            found.extend(f"{point}/{i.path}" for i in files if regex.match(f"{point}/{i.path}"))
        return sorted(found)

    async def grep(
        self,
        pattern: str,
        *,
        path: str = "",
        glob: str | None = None,
        ignore_case: bool = False,
        max_matches: int = 200,
    ) -> list[GrepMatch]:
        """Lines matching the regular expression ``pattern`` in the text files under ``path``."""
        try:
            regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        except re.error as exc:
            raise WorkspaceError(
                f"grep pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from None
        root = normalize(path)
        candidates = [p for p in await self.glob(glob or "**") if is_under(p, root)]
        matches: list[GrepMatch] = []
        for candidate in candidates:
            data = await self.read(candidate)
            if b"\x00" in data[:8192]:
                continue
            for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                if regex.search(line):
                    matches.append(GrepMatch(path=candidate, line=number, text=line[:500]))
                    if len(matches) >= max_matches:
                        return matches
        return matches

    # writing ----------------------------------------------------------------------------------------

    def _check_quota(self, path: str, new_size: int) -> None:
        old = self._entries.get(path)
        quota = self.quota
        if quota.max_file_bytes is not None and new_size > quota.max_file_bytes:
            raise WorkspaceQuotaError(
                f"writing {new_size} bytes to {path!r} exceeds the file size limit of {quota.max_file_bytes}"
            )
        total = self._bytes - (old.size if old else 0) + new_size
        if quota.max_bytes is not None and total > quota.max_bytes:
            raise WorkspaceQuotaError(
                f"writing {path!r} would bring workspace {self.workspace.name} to {total} bytes, over its "
                f"limit of {quota.max_bytes}; delete files or raise workspace.max_bytes"
            )
        files = self._files + (old is None or old.kind != "file")
        if quota.max_files is not None and files > quota.max_files:
            raise WorkspaceQuotaError(
                f"creating {path!r} would bring workspace {self.workspace.name} to {files} files, over its "
                f"limit of {quota.max_files}"
            )

    async def write(self, path: str, data: bytes | str, *, executable: bool = False) -> FileInfo:
        """Create or replace a file; all of it is written or, on any error, none of it."""
        path = self._writable(path)
        if self._is_dir(path):
            raise WorkspacePathError(f"cannot write {path!r}: it is a directory")
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self._check_quota(path, len(raw))
        blob = sha256(raw)
        await asyncio.to_thread(self.workspace.store.put, object_key("blobs", blob), raw)
        # Re-check after the await: another task may have filled the quota meanwhile.
        self._check_quota(path, len(raw))
        for parent in parent_dirs(path):
            if self._entries.get(parent) == _DIR:
                self._unset(parent)
        self._set(path, Entry(kind="file", blob=blob, size=len(raw), executable=executable))
        return FileInfo(path=path, kind="file", size=len(raw), executable=executable, blob=blob)

    async def edit(self, path: str, old: str, new: str, *, replace_all: bool = False) -> int:
        """Replace the exact text ``old`` by ``new``; returns how many places changed."""
        path = self._writable(path)
        if not old:
            raise WorkspaceEditError(f"edit of {path!r}: the text to replace is empty")
        text = await self.read_text(path)
        count = text.count(old)
        if count == 0:
            raise WorkspaceEditError(
                f"edit of {path!r}: the text to replace was not found; read the file and copy it exactly"
            )
        if count > 1 and not replace_all:
            raise WorkspaceEditError(
                f"edit of {path!r}: the text to replace appears {count} times; include more surrounding "
                "text so it is unique, or replace all occurrences"
            )
        await self.write(path, text.replace(old, new), executable=self._file(path).executable)
        return count

    async def mkdir(self, path: str) -> None:
        path = self._writable(path)
        entry = self._entries.get(path)
        if entry is not None and entry.kind == "file":
            raise WorkspacePathError(f"cannot make directory {path!r}: a file has that name")
        if not self._is_dir(path):
            self._set(path, _DIR)

    async def delete(self, path: str, *, recursive: bool = False) -> int:
        """Delete a file, or a directory (non-empty only with ``recursive``); returns paths removed."""
        path = self._writable(path)
        under = self._under(path)
        entry = self._entries.get(path)
        if entry is None and not under:
            raise WorkspaceNotFoundError(f"cannot delete {path!r}: it does not exist")
        if under and not recursive:
            raise WorkspacePathError(
                f"cannot delete {path!r}: the directory is not empty (delete recursively)"
            )
        for item in [*under, *([path] if entry is not None else [])]:
            self._unset(item)
        return len(under) + (entry is not None)

    async def move(self, src: str, dst: str, *, overwrite: bool = False) -> str:
        """Move a file or directory; into ``dst`` when it is an existing directory. Returns the new path."""
        src = self._writable(src)
        dst = self._writable(dst)
        if src not in self._entries and not self._under(src):
            raise WorkspaceNotFoundError(f"cannot move {src!r}: it does not exist")
        if self._is_dir(dst) and dst != src:
            dst = self._writable(f"{dst}/{src.rpartition('/')[2]}" if dst else src.rpartition("/")[2])
        if is_under(dst, src):
            raise WorkspacePathError(f"cannot move {src!r} into itself ({dst!r})")
        target = self._entries.get(dst)
        if target is not None or self._under(dst):
            if not overwrite or target is None or target.kind != "file" or self._is_dir(src):
                raise WorkspacePathError(f"cannot move {src!r} to {dst!r}: the destination exists")
            self._unset(dst)
        moves = [
            (p, dst + p[len(src) :]) for p in [*([src] if src in self._entries else []), *self._under(src)]
        ]
        for old_path, new_path in moves:
            entry = self._entries[old_path]
            self._unset(old_path)
            self._set(new_path, entry)
        return dst

    # committing ----------------------------------------------------------------------------------------

    async def commit(
        self,
        message: str = "",
        *,
        run_id: str | None = None,
        step: int | None = None,
        identity: str | None = None,
        retries: int = 0,
        allow_empty: bool = False,
    ) -> str:
        """Commit the changes to the view's ref; returns the new commit id (the base when nothing changed).

        Raises WorkspaceConflictError when the ref moved since the view's base; with
        ``retries`` the view rebases onto the new head and tries again while no path
        was changed on both sides.
        """
        if self.read_only or self.ref is None:
            raise WorkspaceReadOnlyError(f"this view of workspace {self.workspace.name} is read-only")
        if not self.dirty and self.base is not None and not allow_empty:
            return self.base
        ref = self.ref
        for attempt in range(retries + 1):
            try:
                commit_id = await asyncio.to_thread(
                    self.workspace.commit_entries_sync,
                    ref=ref,
                    expected_head=self.base,
                    entries=self._entries,
                    changed=set(self._changed),
                    deleted=set(self._deleted),
                    message=message,
                    run_id=run_id,
                    step=step,
                    identity=identity,
                )
            except WorkspaceConflictError:
                if attempt == retries:
                    raise
                await self.rebase()
                continue
            self.base = commit_id
            self._changed.clear()
            self._deleted.clear()
            return commit_id
        raise AssertionError("unreachable")

    async def rebase(self) -> str | None:
        """Move the view onto the current head of its ref, keeping its uncommitted changes.

        Raises WorkspaceConflictError naming the paths that both this view and the new
        commits changed.
        """
        if self.ref is None:
            raise WorkspaceReadOnlyError("a checkout has no ref to rebase onto")
        ref = self.ref
        repo = self.workspace.repo

        def run() -> tuple[str | None, dict[str, Entry], set[str]]:
            head = self.workspace.head_sync(ref)
            theirs = {c.path for c in compute_diff(repo.entries_sync(self.base), repo.entries_sync(head))}
            return head, repo.entries_sync(head), theirs

        head, entries, theirs = await asyncio.to_thread(run)
        both = theirs & (self._changed | self._deleted)
        if both:
            raise WorkspaceConflictError(
                f"workspace {self.workspace.name}: {', '.join(sorted(both)[:5])} changed both here and in "
                f"{str(head)[:12]}; reopen the view and redo these changes"
            )
        changed, deleted = set(self._changed), set(self._deleted)
        mine = {p: self._entries[p] for p in changed}
        self._reset(entries)
        for path in deleted:
            if path in self._entries:
                self._unset(path)
        for path, entry in mine.items():
            self._set(path, entry)
        self.base = head
        return head


def _walk(source: MountSource) -> list[FileInfo]:
    return list(source.walk())

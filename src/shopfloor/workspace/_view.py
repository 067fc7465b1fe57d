"""A working view of a workspace: the write operations agents and skills use, and ``commit``.

Every write stores its blob at once and changes only the in-memory path map, so a
write is all or nothing; ``commit`` then writes one tree (usually a small delta)
and one commit and moves the ref by compare-and-swap. ``materialize`` writes the
view's files, its uncommitted changes included, into a directory for a sandboxed
program, and ``capture`` commits what the program left there, those changes with it:
one commit per step. The view owns every commit made to its ref, and each is traced
as a ``workspace.commit`` span.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.trace import Span

from shopfloor.errors import (
    WorkspaceConflictError,
    WorkspaceEditError,
    WorkspaceNotFoundError,
    WorkspacePathError,
    WorkspaceReadOnlyError,
)
from shopfloor.telemetry import span
from shopfloor.workspace._history import FileInfo, compute_diff
from shopfloor.workspace._objects import Entry, object_key, sha256
from shopfloor.workspace._paths import is_under, normalize, parent_dirs
from shopfloor.workspace._quota import Usage
from shopfloor.workspace._view_base import ViewBase

__all__ = ["WorkspaceView"]

_DIR = Entry(kind="dir")


class WorkspaceView(ViewBase):
    """A view that can change files and commit them to its ref (read-only for a checkout)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the directory ``materialize`` last wrote (as given) and the uncommitted changes it wrote there
        #: (None: a deletion)
        self._handed: tuple[str, dict[str, Entry | None]] | None = None

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

    # writing ----------------------------------------------------------------------------------------

    def _check_quota(self, path: str, new_size: int) -> None:
        """The workspace's quota, checked at the write so that a refused write stores nothing."""
        old = self._entries.get(path)
        before = Usage(bytes=self._bytes, files=self._files)
        after = Usage(
            bytes=self._bytes - (old.size if old else 0) + new_size,
            files=self._files + (old is None or old.kind != "file"),
        )
        self.workspace.quota.check(self.workspace.name, new=after, old=before, written=[(path, new_size)])

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
        self._writable_ref()
        if not self.dirty and self.base is not None and not allow_empty:
            return self.base
        with self._commit_span(changed=len(self._changed) + len(self._deleted)) as current:
            commit_id = await self._commit(message, run_id, step, identity, retries)
            current.set_attribute("shopfloor.workspace.commit", commit_id)
        return commit_id

    async def capture(
        self,
        directory: Path,
        *,
        message: str = "",
        run_id: str | None = None,
        step: int | None = None,
        identity: str | None = None,
    ) -> str:
        """Commit what changed in ``directory`` (materialised from this view's base) to the view's ref,
        within the workspace's quota, and move the view onto that commit (its own uncommitted changes stay).
        Returns the commit id (the base when nothing changed)."""
        ref = self._writable_ref()
        handed = self._handed[1] if self._handed and self._handed[0] == str(directory) else {}
        self._handed = None
        with self._commit_span(source="capture") as current:
            commit_id = await self.workspace.capture(
                directory,
                ref=ref,
                base=self.base,
                message=message,
                run_id=run_id,
                step=step,
                identity=identity,
            )
            current.set_attribute("shopfloor.workspace.commit", commit_id)
        # Changes the directory was given are in that commit (or the program changed them further).
        for path, entry in handed.items():
            if entry is None and path in self._deleted:
                self._deleted.discard(path)
            elif entry is not None and self._entries.get(path) == entry:
                self._changed.discard(path)
        await self.rebase()
        return commit_id

    async def materialize(self, directory: Path) -> Path:
        """Write the view's files into ``directory``: its base commit, then its uncommitted changes
        on top (nothing is committed); ``capture`` of that directory commits them with the rest."""
        if self.base is not None:
            await self.workspace.materialize(self.base, directory)
        handed: dict[str, Entry | None] = {path: None for path in self._deleted}
        for path in self._changed:
            entry = self._entries[path]
            handed[path] = entry
            target = directory / path
            await asyncio.to_thread(_clear, target)
            if entry.kind == "dir":
                await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
                continue
            data = await self.read(path)
            await asyncio.to_thread(_write, target, data, entry.executable)
        for path in self._deleted:
            await asyncio.to_thread(_clear, directory / path)
        self._handed = (str(directory), handed)
        return directory

    def _writable_ref(self) -> str:
        if self.read_only or self.ref is None:
            raise WorkspaceReadOnlyError(f"this view of workspace {self.workspace.name} is read-only")
        return self.ref

    @contextmanager
    def _commit_span(self, *, changed: int | None = None, source: str = "view") -> Iterator[Span]:
        attributes: dict[str, str | int] = {
            "shopfloor.workspace.name": self.workspace.name,
            "shopfloor.workspace.ref": str(self.ref),
            "shopfloor.workspace.source": source,
        }
        if changed is not None:
            attributes["shopfloor.workspace.changed"] = changed
        with span("workspace.commit", component="workspace", attributes=attributes) as current:
            yield current

    async def _commit(
        self, message: str, run_id: str | None, step: int | None, identity: str | None, retries: int
    ) -> str:
        ref = self.ref
        assert ref is not None
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


def _clear(path: Path) -> None:
    """Remove what is at ``path`` (a materialised file is replaced, never written through)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write(path: Path, data: bytes, executable: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if executable else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)

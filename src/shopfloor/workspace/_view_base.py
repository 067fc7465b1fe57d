"""The state of a workspace view and the read operations (ls, stat, read, glob, grep).

A view keeps the full path map of its commit in memory (plus its own changes);
file contents stay in the store, so a view's memory does not grow with the data.
Read-only mounts are routed here: a path under a mount point reads the outside source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shopfloor.errors import WorkspaceError, WorkspaceNotFoundError
from shopfloor.workspace._history import FileInfo, GrepMatch
from shopfloor.workspace._linear import LinearPattern, compile_linear
from shopfloor.workspace._objects import Entry
from shopfloor.workspace._paths import glob_regex, is_under, normalize, parent_dirs

if TYPE_CHECKING:
    from shopfloor.workspace._mounts import MountSource
    from shopfloor.workspace._workspace import Workspace

__all__ = ["ViewBase"]


class ViewBase:
    """Read access to one state of a workspace; ``WorkspaceView`` adds writing and committing."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        base: str | None,
        entries: Mapping[str, Entry],
        ref: str | None,
        read_only: bool,
        mounts: Mapping[str, MountSource] | None = None,
    ) -> None:
        self.workspace = workspace
        self.base = base
        self.ref = ref
        self.read_only = read_only or ref is None
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
        # Directory entries stand only for empty directories: one that gains content
        # is implied by its files from then on.
        for parent in parent_dirs(path):
            held = self._entries.get(parent)
            if held is not None and held.kind == "dir":
                self._unset(parent)
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
        # Matching is linear per path, but a workspace may hold a million of them: off the loop.
        entries = [p for p, e in self._entries.items() if e.kind == "file"]
        found = await asyncio.to_thread(lambda: [p for p in entries if regex.fullmatch(p)])
        for point, source in self.mounts.items():
            files = await asyncio.to_thread(_walk, source)
            found.extend(f"{point}/{i.path}" for i in files if regex.fullmatch(f"{point}/{i.path}"))
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
        """Lines matching the regular expression ``pattern`` (RE2 syntax, linear time) in the text
        files under ``path``."""
        regex = compile_linear(pattern, ignore_case=ignore_case, what="grep pattern")
        root = normalize(path)
        candidates = [p for p in await self.glob(glob or "**") if is_under(p, root)]
        matches: list[GrepMatch] = []
        for candidate in candidates:
            data = await self.read(candidate)
            if b"\x00" in data[:8192]:
                continue
            left = max_matches - len(matches)
            matches += await asyncio.to_thread(_grep_lines, candidate, data, regex, left)
            if len(matches) >= max_matches:
                return matches
        return matches


def _grep_lines(path: str, data: bytes, regex: LinearPattern, limit: int) -> list[GrepMatch]:
    found: list[GrepMatch] = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if regex.search(line):
            found.append(GrepMatch(path=path, line=number, text=line[:500]))
            if len(found) >= limit:
                break
    return found


def _walk(source: MountSource) -> list[FileInfo]:
    return list(source.walk())

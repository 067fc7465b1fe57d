"""``file://DIR``: objects as read-only files, refs as small files swapped under a lock.

Every write goes to a temporary file in the same directory and is renamed into place,
so a process killed mid-write leaves the previous state plus, at worst, a temporary
file that garbage collection removes. ``?fsync=true`` also flushes each object and
ref to the disk before it becomes visible, which survives power loss at ~3 ms a file
here; without it (the default, as in git) a killed process loses nothing, because the
kernel still holds every write that returned.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shopfloor.errors import ConfigError, WorkspaceConflictError, WorkspaceNotFoundError
from shopfloor.workspace._store import CHUNK, Exactly, ObjectStore, Readable, RefValue, StoredObject, flag

__all__ = ["FileStore"]

_TMP = ".tmp-"


class FileStore(ObjectStore):
    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = root
        self.fsync = fsync
        self.url = f"file://{root}"
        self._objects = root / "objects"
        self._refs = root / "refs"
        self._objects.mkdir(parents=True, exist_ok=True)
        self._refs.mkdir(parents=True, exist_ok=True)
        self._lock_path = root / "refs.lock"

    @classmethod
    def from_url(cls, url: str, options: dict[str, str]) -> FileStore:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"workspace store URL {url!r}: write file:///absolute/path (three slashes)")
        path = unquote(parts.path)
        if not path:
            raise ConfigError(f"workspace store URL {url!r} names no directory")
        return cls(Path(path).expanduser(), fsync=flag(options, "fsync", False))

    def _path(self, key: str) -> Path:
        kind, _, name = key.partition("/")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad object key {key!r}")
        return self._objects / kind / name[:2] / name[2:]

    def _write_atomic(self, path: Path, chunks: Iterable[bytes], mode: int) -> int:
        """Write ``chunks`` to a temporary file and rename it to ``path``; returns the bytes written.
        On any error the temporary file is removed and ``path`` is untouched."""
        tmp = path.parent / f"{_TMP}{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        written = 0
        try:
            try:
                for data in chunks:
                    view = memoryview(data)
                    written += len(view)
                    while view:
                        view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.replace(tmp, path)
        if self.fsync:
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return written

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if not path.exists():
            self._write_atomic(path, (data,), 0o444)

    def put_file(self, key: str, source: Readable, size: int) -> None:
        path = self._path(key)
        if path.exists():
            return
        exact = Exactly(source, size, key)
        self._write_atomic(path, iter(lambda: exact.read(CHUNK), b""), 0o444)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise WorkspaceNotFoundError(f"object {key} is not in {self.url}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        kind, _, rest = prefix.partition("/")
        kinds = [kind] if rest or prefix.endswith("/") else [p.name for p in self._objects.iterdir()]
        for k in kinds:
            base = self._objects / k
            if not base.is_dir():
                continue
            with os.scandir(base) as listing:
                shards = list(listing)
            for shard in shards:
                if not shard.is_dir() or (rest and not _shard_matches(shard.name, rest)):
                    continue
                with os.scandir(shard.path) as listing:
                    items = list(listing)
                for item in items:
                    if item.name.startswith(_TMP):
                        continue
                    key = f"{k}/{shard.name}{item.name}"
                    if key.startswith(prefix):
                        st = item.stat()
                        yield StoredObject(key=key, size=st.st_size, mtime=st.st_mtime)

    def delete(self, keys: Iterable[str]) -> int:
        count = 0
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()
                count += 1
        return count

    def collect_garbage(self, older_than: float) -> int:
        count = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(_TMP):
                    path = Path(dirpath) / name
                    with contextlib.suppress(FileNotFoundError):
                        if path.stat().st_mtime < older_than:
                            path.unlink()
                            count += 1
        return count

    # refs ---------------------------------------------------------------------------

    def _ref_path(self, name: str) -> Path:
        if not name or any(part in ("", ".", "..") or part.startswith(_TMP) for part in name.split("/")):
            raise ValueError(f"bad ref name {name!r}")
        return self._refs / name

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # One lock for all refs: the critical section is a read and a rename, and flock is
        # released by the kernel when a holder is killed, so a crash never wedges writers.
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def get_ref(self, name: str) -> RefValue | None:
        try:
            value = self._ref_path(name).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return RefValue(value=value, token=value)

    def set_ref(self, name: str, value: str, *, expected: RefValue | None) -> RefValue:
        path = self._ref_path(name)
        with self._locked():
            current = self.get_ref(name)
            if (current.token if current else None) != (expected.token if expected else None):
                raise WorkspaceConflictError(
                    f"ref {name} moved to {current.value[:12] if current else 'nothing'} meanwhile; "
                    "reload the head and retry"
                )
            self._write_atomic(path, (value.encode(),), 0o644)
        return RefValue(value=value, token=value)

    def delete_ref(self, name: str) -> None:
        with self._locked(), contextlib.suppress(FileNotFoundError):
            self._ref_path(name).unlink()

    def list_refs(self, prefix: str) -> dict[str, str]:
        refs: dict[str, str] = {}
        for dirpath, _dirs, files in os.walk(self._refs):
            for fname in files:
                if fname.startswith(_TMP):
                    continue
                name = str(Path(dirpath, fname).relative_to(self._refs))
                if name.startswith(prefix):
                    ref = self.get_ref(name)
                    if ref is not None:
                        refs[name] = ref.value
        return refs


def _shard_matches(shard: str, rest: str) -> bool:
    return shard == rest[:2] if len(rest) >= 2 else shard.startswith(rest)

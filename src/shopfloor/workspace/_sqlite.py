"""``sqlite:///FILE``: every object and ref in one SQLite file.

WAL with ``synchronous=FULL`` makes each transaction durable at ~0.1 ms; a ref
compare-and-swap is one ``UPDATE ... WHERE value = expected`` inside the same
transaction that checks it, so two processes can never both win.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shopfloor.errors import ConfigError, WorkspaceConflictError, WorkspaceNotFoundError
from shopfloor.workspace._store import CHUNK, Exactly, ObjectStore, Readable, RefValue, StoredObject

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, data BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS refs (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SqliteStore(ObjectStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the threads of this process, serialised by a lock:
        # SQLite allows one writer at a time anyway, and other processes wait on busy_timeout.
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    @classmethod
    def from_url(cls, url: str, options: dict[str, str]) -> SqliteStore:
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if not path or path == "/":
            raise ConfigError(
                f"workspace store URL {url!r} names no file; write sqlite:///path/to/workspaces.db"
            )
        return cls(Path(path).expanduser())

    def put(self, key: str, data: bytes) -> None:
        self.put_many([(key, data)])

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        now = time.time()
        rows = [(key, data, now) for key, data in items]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO objects (key, data, created) VALUES (?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def put_file(self, key: str, source: Readable, size: int) -> None:
        # The row is made at its final size and filled through incremental blob I/O, in one
        # transaction: a source that fails or gives another size rolls it back.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO objects (key, data, created) VALUES (?, zeroblob(?), ?)",
                    (key, size, time.time()),
                )
                if cursor.rowcount == 1:
                    rowid = cursor.lastrowid
                    assert rowid is not None
                    exact = Exactly(source, size, key)
                    with self._db.blobopen("objects", "data", rowid) as blob:
                        while chunk := exact.read(CHUNK):
                            blob.write(chunk)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, key: str) -> bytes:
        with self._lock:
            row = self._db.execute("SELECT data FROM objects WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise WorkspaceNotFoundError(f"object {key} is not in {self.url}")
        return bytes(row[0])

    def exists(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM objects WHERE key = ?", (key,)).fetchone() is not None

    def list(self, prefix: str) -> Iterator[StoredObject]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, length(data), created FROM objects WHERE key >= ? AND key < ?",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        for key, size, created in rows:
            yield StoredObject(key=key, size=size, mtime=created)

    def delete(self, keys: Iterable[str]) -> int:
        batch = [(key,) for key in keys]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany("DELETE FROM objects WHERE key = ?", batch)
                count = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return count

    def get_ref(self, name: str) -> RefValue | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM refs WHERE name = ?", (name,)).fetchone()
        return None if row is None else RefValue(value=row[0], token=row[0])

    def set_ref(self, name: str, value: str, *, expected: RefValue | None) -> RefValue:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT value FROM refs WHERE name = ?", (name,)).fetchone()
                current = None if row is None else row[0]
                if current != (expected.token if expected else None):
                    raise WorkspaceConflictError(
                        f"ref {name} moved to {current[:12] if current else 'nothing'} meanwhile; "
                        "reload the head and retry"
                    )
                self._db.execute("INSERT OR REPLACE INTO refs (name, value) VALUES (?, ?)", (name, value))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return RefValue(value=value, token=value)

    def delete_ref(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM refs WHERE name = ?", (name,))

    def list_refs(self, prefix: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, value FROM refs WHERE name >= ? AND name < ?", (prefix, prefix + "\U0010ffff")
            ).fetchall()
        return dict(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()

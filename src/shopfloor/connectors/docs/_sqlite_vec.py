"""A collection file's vectors in a ``vec0`` virtual table (sqlite-vec): ``chunks_vec``, one row per chunk
(its rowid the chunk's id), cosine distance, the embedder's dimension, searched exactly in C without the
vectors ever entering Python.

vec0 is a loadable extension, and the interpreter's own ``sqlite3`` may not load one (the virtual
environment's Python 3.11.7 is built without ``enable_load_extension``): the file is opened through
``pysqlite3`` (the same DB-API over a SQLite built to load extensions, a dependency of the ``retrieval``
extra), or through ``sqlite3`` where that can load it. One connection holds both the chunk rows and
their vectors, so a chunk and its vector are written in one transaction and cannot diverge on a crash.
Without either binding, or without sqlite-vec, opening a collection is a ``ConfigError`` that says what
to install; there is no second search path in numpy to keep equal to this one.

A file made before (vectors as float32 blobs in ``chunks.vector``, no ``chunks_vec``) is migrated when it
is opened: in one ``BEGIN IMMEDIATE`` transaction its blobs are copied into ``chunks_vec`` and emptied,
and ``meta`` records ``vectors = vec0``; a crash leaves it as it was, to be migrated at the next open.
Since then ``chunks.vector`` holds an empty blob (the column stays, so that the two layouts share one
``chunks`` table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from shopfloor.errors import ConfigError
from shopfloor.storage import open_sqlite

__all__ = ["MAX_NEAREST", "VecTable", "connect"]

#: vec0's largest ``k``: more candidates than this from one dense search are refused
MAX_NEAREST = 4096
_INSTALL = "pip install 'shopfloor[retrieval]' (sqlite-vec, pysqlite3-binary)"


def _driver() -> Any:
    """The DB-API module whose connections can load vec0."""
    try:
        import pysqlite3.dbapi2 as pysqlite3
    except ImportError:
        if hasattr(sqlite3.Connection, "enable_load_extension"):
            return sqlite3
        raise ConfigError(
            "document collections need a SQLite that loads extensions (sqlite-vec), and this Python's "
            f"sqlite3 cannot: {_INSTALL}"
        ) from None
    return pysqlite3


def connect(path: str) -> Any:
    """An autocommit connection to the collection file at ``path`` (``open_sqlite``'s settings: WAL,
    busy timeout, foreign keys) with vec0 loaded."""
    try:
        import sqlite_vec
    except ImportError:
        raise ConfigError(f"document collections store their vectors with sqlite-vec: {_INSTALL}") from None
    conn = open_sqlite(path, autocommit=True, driver=_driver())
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
    except BaseException:
        conn.close()
        raise
    return conn


class VecTable:
    """``chunks_vec`` of one connection. ``put`` and ``delete`` run inside the caller's transaction; the
    table is made (``make``, in a transaction of its own, so that no rollback of a write takes it away
    unseen) before the first vector is stored, its dimension that vector's."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._made = False

    def migrate(self) -> int:
        """Move the blobs of a file made before into ``chunks_vec``, in one transaction; the chunks
        moved (0 when there were none, or the file was migrated already)."""
        if self._conn.execute("SELECT 1 FROM meta WHERE key = 'vectors'").fetchone() is not None:
            return 0
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            moved = 0
            if self._conn.execute("SELECT 1 FROM meta WHERE key = 'vectors'").fetchone() is None:
                first = self._conn.execute(
                    "SELECT vector FROM chunks WHERE length(vector) > 0 LIMIT 1"
                ).fetchone()
                if first is not None:
                    self._create(len(first[0]))
                    moved = self._conn.execute(
                        "INSERT INTO chunks_vec (rowid, embedding) "
                        "SELECT chunk_id, vector FROM chunks WHERE length(vector) > 0"
                    ).rowcount
                    self._conn.execute("UPDATE chunks SET vector = x'' WHERE length(vector) > 0")
                self._conn.execute("INSERT INTO meta VALUES ('vectors', 'vec0')")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._made = False  # found again by the next read (made, or not, by the transaction)
        return int(moved)

    def _exists(self) -> bool:
        if not self._made:  # another process may have made it since: only a table found is remembered
            found = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunks_vec'"
            ).fetchone()
            self._made = found is not None
        return self._made

    def _create(self, size: int) -> None:
        if size % 4 or not size:
            raise ValueError(f"a vector of {size} bytes is not float32")
        self._conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vec USING "
            f"vec0(embedding float[{size // 4}] distance_metric=cosine)"
        )

    def make(self, size: int) -> None:
        """Make the table for vectors of ``size`` bytes, unless it is there (another writer's table
        found under the write lock)."""
        if self._exists():
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._create(size)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._made = True

    def put(self, chunk_id: int, vector: bytes) -> None:
        """Store a chunk's vector (float32), in the caller's transaction, after ``make``."""
        self._conn.execute("INSERT INTO chunks_vec (rowid, embedding) VALUES (?, ?)", (chunk_id, vector))

    def delete(self, chunk_ids: Sequence[int]) -> None:
        """Drop the vectors of ``chunk_ids``, in the caller's transaction."""
        if chunk_ids and self._exists():
            marks = ",".join("?" * len(chunk_ids))
            self._conn.execute(f"DELETE FROM chunks_vec WHERE rowid IN ({marks})", list(chunk_ids))

    def nearest(self, vector: bytes, limit: int) -> list[tuple[int, float]]:
        """The ``limit`` chunks nearest ``vector`` by cosine, best first: (chunk id, cosine)."""
        if limit > MAX_NEAREST:
            raise ConfigError(f"{limit} dense candidates: a SQLite collection gives at most {MAX_NEAREST}")
        if limit < 1 or not self._exists():
            return []
        rows = self._conn.execute(
            "SELECT rowid, distance FROM chunks_vec WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (vector, limit),
        ).fetchall()
        return [(int(rowid), 1.0 - float(distance)) for rowid, distance in rows]

    def vectors_of(self, chunk_ids: Sequence[int]) -> dict[int, bytes]:
        """Chunk id -> its vector (float32), for those of ``chunk_ids`` stored."""
        if not chunk_ids or not self._exists():
            return {}
        marks = ",".join("?" * len(chunk_ids))
        return {
            int(rowid): bytes(vector)
            for rowid, vector in self._conn.execute(
                f"SELECT rowid, embedding FROM chunks_vec WHERE rowid IN ({marks})", list(chunk_ids)
            )
        }

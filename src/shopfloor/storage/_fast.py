"""The hot paths of the object stores, per database: point reads and streamed inserts of large values.

A read through a SQLAlchemy engine pays a pool checkout, the statement's execution context and a
result object (~200-600 us a read on SQLite here, against ~20-40 us for the same ``SELECT`` on a
raw ``sqlite3`` connection). ``Reader`` runs statements built once by a store: the default one goes
through the engine; SQLite's keeps one raw connection per thread and lets ``sqlite3`` cache the
prepared statements. ``stream_insert`` stores one large value without holding it in memory:
SQLite's incremental blob I/O, PostgreSQL's ``COPY ... FROM STDIN``, a chunk at a time. ``bulk_insert``
writes many small rows at once: the driver's ``executemany``, or PostgreSQL's ``COPY`` (binary-free text
rows through psycopg's ``write_row``).
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

__all__ = [
    "BulkInsert",
    "EngineReader",
    "Reader",
    "SqliteReader",
    "StreamInsert",
    "copy_text_field",
    "executemany_insert",
    "postgres_copy_insert",
    "postgres_stream_insert",
    "sqlite_stream_insert",
]


#: ``(conn, table, values, column, chunks, size) -> inserted``: one database's way to stream a value in
StreamInsert = Callable[[sa.Connection, sa.Table, Mapping[str, Any], str, Iterable[bytes], int], bool]


#: ``(dbapi_connection, table, columns, rows)``: insert ``rows`` (tuples in ``columns`` order, already
#: converted for the driver) in the caller's transaction
BulkInsert = Callable[[Any, str, Sequence[str], Sequence[tuple[Any, ...]]], None]
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def executemany_insert(paramstyle: str) -> BulkInsert:
    """A ``BulkInsert`` through the driver's ``executemany`` with ``paramstyle`` placeholders."""
    mark = _MARKS[paramstyle]

    def insert(connection: Any, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        names = ", ".join(f'"{name}"' for name in columns)
        marks = ", ".join([mark] * len(columns))
        cursor = connection.cursor()
        try:
            cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
        finally:
            cursor.close()

    return insert


def postgres_copy_insert(
    connection: Any, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """A ``BulkInsert`` as one ``COPY ... FROM STDIN`` (psycopg adapts each value)."""
    names = ", ".join(f'"{name}"' for name in columns)
    with connection.cursor() as cursor, cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)


class Reader(ABC):
    """Runs a store's prepared ``SELECT`` statements: the first column of the first row, or None
    (``scalar``); every row, each a tuple in the statement's column order (``rows``: values as the
    driver gives them, so a boolean column may come back as 0 or 1)."""

    @abstractmethod
    def scalar(self, statement: sa.Select[Any], params: Mapping[str, Any]) -> Any: ...

    @abstractmethod
    def rows(self, statement: sa.Select[Any], params: Mapping[str, Any]) -> list[tuple[Any, ...]]: ...

    def close(self) -> None:
        return None


class EngineReader(Reader):
    """Through the engine's pool: what every database supports."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def scalar(self, statement: sa.Select[Any], params: Mapping[str, Any]) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(statement, dict(params)).scalar()

    def rows(self, statement: sa.Select[Any], params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(statement, dict(params))]


class SqliteReader(Reader):
    """One autocommit ``sqlite3`` connection per thread that reads (WAL: readers never wait for a
    writer and see every committed transaction), each statement compiled once to its SQL text."""

    def __init__(self, engine: sa.Engine, path: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self.engine = engine
        self.path = path
        self._connect = connect
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._compiled: dict[int, tuple[str, tuple[str, ...], dict[str, Any]]] = {}
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            with self._lock:
                if self._closed:
                    conn.close()
                    raise sqlite3.ProgrammingError(f"the store at {self.path} is closed")
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def _sql(self, statement: sa.Select[Any]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        found = self._compiled.get(id(statement))
        if found is None:
            compiled = statement.compile(dialect=self.engine.dialect)
            found = (compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))
            # Keyed by identity: the store keeps its statements for its lifetime.
            self._compiled[id(statement)] = found
        return found

    def scalar(self, statement: sa.Select[Any], params: Mapping[str, Any]) -> Any:
        sql, names, defaults = self._sql(statement)
        values = {**defaults, **params}
        row = self._connection().execute(sql, tuple(values[name] for name in names)).fetchone()
        return None if row is None else row[0]

    def rows(self, statement: sa.Select[Any], params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        sql, names, defaults = self._sql(statement)
        values = {**defaults, **params}
        return self._connection().execute(sql, tuple(values[name] for name in names)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()


def copy_text_field(value: str) -> str:
    """``value`` as one field of PostgreSQL's COPY text format (backslash, tab and newlines escaped)."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def sqlite_stream_insert(
    conn: sa.Connection,
    table: sa.Table,
    values: Mapping[str, Any],
    column: str,
    chunks: Iterable[bytes],
    size: int,
) -> bool:
    """Insert a row whose ``column`` is ``size`` bytes of ``chunks`` (unless a row with its key exists:
    False), written through incremental blob I/O into a ``zeroblob`` in the caller's transaction."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    names = [*values, column]
    quoted = ", ".join(f'"{name}"' for name in names)
    marks = ", ".join(["?"] * len(values) + ["zeroblob(?)"])
    cursor = raw.execute(
        f'INSERT OR IGNORE INTO "{table.name}" ({quoted}) VALUES ({marks})', (*values.values(), size)
    )
    if cursor.rowcount == 0:
        return False
    row = cursor.lastrowid
    assert row is not None
    with raw.blobopen(table.name, column, row) as blob:
        for chunk in chunks:
            blob.write(chunk)
    return True


def postgres_stream_insert(
    conn: sa.Connection,
    table: sa.Table,
    values: Mapping[str, Any],
    column: str,
    chunks: Iterable[bytes],
    size: int,
) -> bool:
    """The same on PostgreSQL: one ``COPY`` row whose ``bytea`` goes as hex, a chunk at a time
    (the server assembles the value; this process holds one chunk). A row that exists: False."""
    key, first = next(iter(values.items()))
    exists = sa.select(sa.literal(1)).where(table.c[key] == first)
    if conn.execute(exists).first() is not None:
        return False
    raw = conn.connection.driver_connection
    assert raw is not None
    names = ", ".join(f'"{name}"' for name in [*values, column])
    prefix = "".join(copy_text_field(_text(value)) + "\t" for value in values.values())
    import psycopg

    try:
        # A savepoint: a writer of the same object that won meanwhile leaves the transaction usable.
        with (
            raw.transaction(),
            raw.cursor() as cursor,
            cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy,
        ):
            copy.write(prefix + "\\\\x")
            for chunk in chunks:
                copy.write(chunk.hex())
            copy.write("\n")
    except psycopg.errors.UniqueViolation:
        return False
    return True


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)

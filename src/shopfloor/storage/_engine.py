"""One SQLAlchemy engine factory for every SQL store: runs, traces, the skill registry, workspaces.

What differs between databases lives in one ``Dialect`` subclass per database, picked by the
URL's backend name (as DBOS keeps one system-database class per dialect): which driver a bare
URL means, what each new connection is set to, how an insert skips rows that exist. The stores
above never branch on the database's name.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from shopfloor._registry import Registry
from shopfloor.errors import ConfigError
from shopfloor.storage._fast import (
    BulkInsert,
    EngineReader,
    Reader,
    SqliteReader,
    StreamInsert,
    executemany_insert,
    postgres_copy_insert,
    postgres_stream_insert,
    sqlite_stream_insert,
)

__all__ = [
    "Dialect",
    "Durability",
    "Engines",
    "PostgresDialect",
    "SqliteDialect",
    "bulk_inserter",
    "create_tables",
    "dialect_for",
    "engine_url",
    "insert_ignore",
    "make_engine",
    "open_sqlite",
    "reader",
    "sql_dialects",
    "starts_with",
    "stream_insert",
]

#: ``full``: every commit survives power loss (runs, the registry, workspaces);
#: ``normal``: a power loss may drop the last commits, never corrupts (traces, diagnostics).
Durability = Literal["full", "normal"]

#: SQLite waits this long for another process's write lock before failing.
BUSY_TIMEOUT_MS = 30_000
_HIGHEST = "\U0010ffff"
#: the PostgreSQL advisory lock key held while tables are created ("shopflor" in ASCII)
_SCHEMA_LOCK = 0x73686F70666C6F72


class Dialect(ABC):
    """What one database needs from Shopfloor's stores; registered by SQLAlchemy backend name."""

    backend: ClassVar[str]

    def normalise(self, url: sa.URL) -> sa.URL:
        """The URL SQLAlchemy should open (a bare scheme may name a driver we do not ship)."""
        return url

    def engine_options(self) -> dict[str, Any]:
        return {"pool_pre_ping": False}

    @abstractmethod
    def on_connect(self, dbapi_connection: Any, durability: Durability) -> None:
        """Settings every new connection gets."""

    @abstractmethod
    def insert_ignore(self, table: sa.Table, keys: list[str]) -> Insert:
        """An insert that skips rows whose ``keys`` exist already (idempotent re-writes)."""

    def starts_with(self, column: sa.ColumnElement[str], prefix: str) -> sa.ColumnElement[bool]:
        """``column`` starts with ``prefix``, exactly (no LIKE wildcards or case folding) and as a
        range an index can serve: code-point order, where ``prefix + U+10FFFF`` sorts after every
        string that starts with ``prefix``."""
        return sa.and_(column >= prefix, column < prefix + _HIGHEST)

    def create_tables(self, metadata: sa.MetaData, engine: sa.Engine) -> None:
        """Create what ``metadata`` lacks on ``engine``'s database."""
        metadata.create_all(engine)

    def reader(self, engine: sa.Engine) -> Reader:
        """What runs a store's point reads (``_fast.py``): through the engine unless the database
        has a cheaper path."""
        return EngineReader(engine)

    def bulk_inserter(self, engine: sa.Engine) -> BulkInsert:
        """How many small rows are inserted at once on a raw DBAPI connection of ``engine``: the
        driver's ``executemany`` unless the database has a cheaper path."""
        return executemany_insert(engine.dialect.paramstyle)

    @abstractmethod
    def streamer(self) -> StreamInsert:
        """How ``stream_insert`` writes a large value here: ``values`` (the key first) with ``column``
        set to the bytes of ``chunks``, one chunk held at a time; False where the key exists."""


class SqliteDialect(Dialect):
    """WAL (with synchronous=FULL every commit is durable at ~10x less than the rollback journal,
    FACTS.md), a busy timeout so that writers of several processes wait instead of failing, and
    foreign keys enforced."""

    backend = "sqlite"

    def on_connect(self, dbapi_connection: Any, durability: Durability) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _switch_to_wal(cursor, getattr(dbapi_connection, "OperationalError", sqlite3.OperationalError))
            cursor.execute(f"PRAGMA synchronous={durability.upper()}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    def insert_ignore(self, table: sa.Table, keys: list[str]) -> Insert:
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)

    def reader(self, engine: sa.Engine) -> Reader:
        path = engine.url.database
        if not path or path == ":memory:" or engine.url.query:
            return EngineReader(engine)  # a private in-memory database, or options only the engine knows
        return SqliteReader(engine, path, lambda: open_sqlite(path, autocommit=True))

    def streamer(self) -> StreamInsert:
        return sqlite_stream_insert

    def create_tables(self, metadata: sa.MetaData, engine: sa.Engine) -> None:
        # The driver runs DDL outside a transaction, so two processes could both find a table
        # missing and both create it: take the write lock first (others wait, busy_timeout).
        with engine.connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            metadata.create_all(connection)
            connection.commit()


def _switch_to_wal(cursor: Any, locked: type[Exception] = sqlite3.OperationalError) -> None:
    """``PRAGMA journal_mode=WAL``, waiting as long as the busy timeout. Connections opening a fresh
    file at once race to switch it, and SQLite answers "database is locked" at once, without its busy
    handler (it would deadlock a reader of the rollback journal): measured on 3.40, a few of 1,800
    fresh opens by six threads. The switch is retried until the file is in WAL mode. ``locked``: the
    driver's ``OperationalError`` (pysqlite3 has its own class)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except locked as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class PostgresDialect(Dialect):
    """``postgresql://`` means psycopg 3, the driver Shopfloor depends on (and DBOS uses): SQLAlchemy
    2.0 would load psycopg2 for the bare scheme, which is not installed."""

    backend = "postgresql"

    def normalise(self, url: sa.URL) -> sa.URL:
        if url.drivername in ("postgresql", "postgres"):
            return url.set(drivername="postgresql+psycopg")
        return url

    def on_connect(self, dbapi_connection: Any, durability: Durability) -> None:
        # The server's own settings (synchronous_commit) decide durability; nothing per connection.
        return None

    def insert_ignore(self, table: sa.Table, keys: list[str]) -> Insert:
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)

    def streamer(self) -> StreamInsert:
        return postgres_stream_insert

    def bulk_inserter(self, engine: sa.Engine) -> BulkInsert:
        return postgres_copy_insert

    def starts_with(self, column: sa.ColumnElement[str], prefix: str) -> sa.ColumnElement[bool]:
        # The database's default collation may ignore punctuation ('/' in keys); "C" compares bytes,
        # which for UTF-8 is code-point order.
        return super().starts_with(sa.collate(column, "C"), prefix)

    def create_tables(self, metadata: sa.MetaData, engine: sa.Engine) -> None:
        # Two processes opening a fresh database at once would both issue CREATE TABLE, and one
        # fails on the catalogue's unique index: a transaction-scoped advisory lock makes the
        # second wait, then find the tables.
        with engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            metadata.create_all(connection)


def sql_dialects() -> Registry[type[Dialect]]:
    """The ``Dialect`` of each SQLAlchemy backend name (a fresh registry: extend your own copy)."""
    return Registry(
        "SQL dialect",
        {"sqlite": SqliteDialect, "postgresql": PostgresDialect, "postgres": PostgresDialect},
    )


def _parse(url: str) -> sa.URL:
    try:
        return sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(
            f"database URL {url!r} is not a URL: write sqlite:///path/to/file.db or "
            "postgresql://user@host:5432/database"
        ) from exc


def dialect_for(url: str | sa.URL, dialects: Registry[type[Dialect]] | None = None) -> Dialect:
    """The ``Dialect`` ``dialects`` (the built-in ones by default) has for ``url``; ConfigError naming
    the supported schemes for any other."""
    parsed = _parse(url) if isinstance(url, str) else url
    dialects = dialects if dialects is not None else sql_dialects()
    backend = parsed.get_backend_name()
    if backend not in dialects:
        raise ConfigError(
            f"database URL {parsed.render_as_string()!r}: unsupported database {backend!r}; use one of "
            + ", ".join(f"{s}://" for s in sorted(dialects.names()))
        )
    return dialects.get(backend)()


def engine_url(url: str) -> str:
    """``url`` as SQLAlchemy should open it (password kept)."""
    parsed = _parse(url)
    return dialect_for(parsed).normalise(parsed).render_as_string(hide_password=False)


def make_engine(url: str, *, durability: Durability = "full", **options: Any) -> sa.Engine:
    """An engine for ``url`` set up for its database; ``options`` go to ``sqlalchemy.create_engine``."""
    parsed = _parse(url)
    dialect = dialect_for(parsed)
    try:
        engine = sa.create_engine(dialect.normalise(parsed), **{**dialect.engine_options(), **options})
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"database URL {parsed.render_as_string()!r} cannot be opened: {exc}") from exc

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dialect.on_connect(dbapi_connection, durability)

    return engine


def starts_with(engine: sa.Engine, column: sa.ColumnElement[str], prefix: str) -> sa.ColumnElement[bool]:
    """``column`` starts with ``prefix``, on ``engine``'s database (see ``Dialect.starts_with``)."""
    return dialect_for(engine.url).starts_with(column, prefix)


def create_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Create the tables of ``metadata`` that ``engine``'s database lacks, safely when several
    processes open a fresh database at once."""
    dialect_for(engine.url).create_tables(metadata, engine)


def add_columns(engine: sa.Engine, table: sa.Table, names: Sequence[str]) -> None:
    """Add the nullable ``names`` columns of ``table`` that a database made by an earlier version lacks
    (``create_tables`` makes only missing tables). Idempotent; another process adding one at the same
    moment is not an error."""

    def present() -> set[str]:
        return {column["name"] for column in sa.inspect(engine).get_columns(table.name)}

    have = present()
    preparer = engine.dialect.identifier_preparer
    for name in names:
        if name in have:
            continue
        column = table.c[name]
        if not column.nullable:
            raise ValueError(f"{table.name}.{name}: only a nullable column can be added to existing rows")
        ddl = (
            f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.format_column(column)} "
            f"{column.type.compile(engine.dialect)}"
        )
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(ddl)
        except sa.exc.DBAPIError:
            if name not in present():
                raise


def insert_ignore(engine: sa.Engine, table: sa.Table, keys: list[str]) -> Insert:
    """An insert into ``table`` on ``engine``'s database that skips rows whose ``keys`` exist."""
    return dialect_for(engine.url).insert_ignore(table, keys)


def bulk_inserter(engine: sa.Engine) -> BulkInsert:
    """How ``engine``'s database takes many small rows at once (see ``Dialect.bulk_inserter``)."""
    return dialect_for(engine.url).bulk_inserter(engine)


def reader(engine: sa.Engine) -> Reader:
    """The cheapest way to run point reads on ``engine``'s database (see ``Dialect.reader``)."""
    return dialect_for(engine.url).reader(engine)


def stream_insert(
    conn: sa.Connection,
    table: sa.Table,
    values: Mapping[str, Any],
    column: str,
    chunks: Iterable[bytes],
    size: int,
) -> bool:
    """Insert one row with a large value in bounded memory (see ``Dialect.streamer``)."""
    return dialect_for(conn.engine.url).streamer()(conn, table, values, column, chunks, size)


def open_sqlite(
    path: str, *, durability: Durability = "full", autocommit: bool = False, driver: Any = sqlite3
) -> sqlite3.Connection:
    """A raw ``sqlite3`` connection to the file at ``path`` with the settings every SQLite store gets:
    for a pool's ``creator`` (DBOS's engine) or a hand-written statement path (the step recorder).
    Usable from any thread; the caller serialises its use. ``driver``: the DB-API module that opens it
    (``pysqlite3.dbapi2``, the same interface over a SQLite that loads extensions: document stores)."""
    conn: sqlite3.Connection = driver.connect(path, check_same_thread=False)
    if autocommit:
        conn.isolation_level = None
    SqliteDialect().on_connect(conn, durability)
    return conn


class Engines:
    """One engine per database (URL as opened, and durability) for a process: the stores of one
    database share its pool. The composition root holds one; ``close`` disposes them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[tuple[str, Durability], sa.Engine] = {}

    def get(self, url: str, *, durability: Durability = "full") -> sa.Engine:
        key = (engine_url(url), durability)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._engines[key] = make_engine(url, durability=durability)
            return engine

    def __len__(self) -> int:
        return len(self._engines)

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.dispose()

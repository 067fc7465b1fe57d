"""Storage seam: the one engine factory every SQL store opens its database with, ``Engines`` (one
engine per database for a process), and the stores' fast paths (``reader``, ``stream_insert``,
``bulk_inserter``)."""

from shopfloor.storage._engine import (
    Dialect,
    Durability,
    Engines,
    PostgresDialect,
    SqliteDialect,
    add_columns,
    bulk_inserter,
    create_tables,
    dialect_for,
    engine_url,
    insert_ignore,
    make_engine,
    open_sqlite,
    reader,
    sql_dialects,
    starts_with,
    stream_insert,
)
from shopfloor.storage._fast import BulkInsert, EngineReader, Reader, SqliteReader

__all__ = [
    "BulkInsert",
    "Dialect",
    "Durability",
    "EngineReader",
    "Engines",
    "PostgresDialect",
    "Reader",
    "SqliteDialect",
    "SqliteReader",
    "add_columns",
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

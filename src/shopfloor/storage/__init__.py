"""Storage seam: the one engine factory every SQL store opens its database with."""

from shopfloor.storage._engine import (
    Dialect,
    Durability,
    PostgresDialect,
    SqliteDialect,
    create_tables,
    dialect_for,
    engine_url,
    insert_ignore,
    make_engine,
    open_sqlite,
    sql_dialects,
    starts_with,
)

__all__ = [
    "Dialect",
    "Durability",
    "PostgresDialect",
    "SqliteDialect",
    "create_tables",
    "dialect_for",
    "engine_url",
    "insert_ignore",
    "make_engine",
    "open_sqlite",
    "sql_dialects",
    "starts_with",
]

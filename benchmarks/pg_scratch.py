"""A scratch schema on the benchmarks' PostgreSQL: made for one benchmark, dropped at its end."""

from __future__ import annotations

import uuid

import psycopg

__all__ = ["drop_scratch_schema", "scratch_schema"]


def scratch_schema(pg_url: str, prefix: str) -> tuple[str, str]:
    """A new schema named ``PREFIX_<random>`` and a URL of ``pg_url`` whose search path is it; a
    ``psycopg.Error`` where the server cannot be reached."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"


def drop_scratch_schema(pg_url: str, schema: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")

"""What tests of durable runs share: a fresh PostgreSQL database per test, and fast runtime polling."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_up() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


@contextmanager
def fresh_database(monkeypatch: pytest.MonkeyPatch, prefix: str = "sf_test") -> Iterator[str]:
    """A PostgreSQL database of its own (DBOS keeps schemas of its own, so a database, not a schema)
    named into ``SHOPFLOOR_DATABASE_URL``, dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    monkeypatch.setenv("SHOPFLOOR_DATABASE_URL", url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast heartbeats and polling, so crash and resume tests take seconds."""
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__HEARTBEAT", "0.2")
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__EXECUTOR_TIMEOUT", "1.0")
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__POLL_INTERVAL", "0.05")
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__MESSAGE_POLL", "0.1")

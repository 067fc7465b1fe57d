"""Fixtures of the runtime tests: every test runs on SQLite and on PostgreSQL (a fresh database each).

``agent_dir`` is a small agent whose tools and scripted model log each real call
to ``calls.log``; ``worker`` starts ``shopfloor worker`` subprocesses for the
crash tests (kill -9, restart).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from runtime_support import AgentDir, Workers, make_agent

from shopfloor.config import Settings, load_settings

HERE = Path(__file__).parent
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres_up() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Fast heartbeats and polling; on PostgreSQL a database of its own, dropped afterwards."""
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__HEARTBEAT", "0.2")
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__EXECUTOR_TIMEOUT", "1.0")
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__POLL_INTERVAL", "0.05")
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__MESSAGE_POLL", "0.1")
    if request.param == "sqlite":
        yield load_settings().db_url
        return
    if not _postgres_up():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    name = f"sf_test_{uuid.uuid4().hex[:12]}"
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


@pytest.fixture
def rt_settings(db_url: str) -> Settings:
    settings = load_settings()
    assert settings.db_url == db_url
    return settings


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AgentDir:
    made = make_agent(tmp_path / "agents")
    # The scripted model is `function:agent_tools:script`: importable from the agent's directory.
    monkeypatch.syspath_prepend(str(made.path))
    monkeypatch.delitem(sys.modules, "agent_tools", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(made.path), os.environ.get("PYTHONPATH", "")]))
    return made


@pytest.fixture
def workers(tmp_path: Path, db_url: str) -> Iterator[Workers]:
    made = Workers(tmp_path)
    yield made
    made.stop_all()

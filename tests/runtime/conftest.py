"""Fixtures of the runtime tests: every test runs on SQLite and on PostgreSQL (a fresh database each).

``agent_dir`` is a small agent whose tools and scripted model log each real call
to ``calls.log``; ``worker`` starts ``shopfloor worker`` subprocesses for the
crash tests (kill -9, restart).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_support import AgentDir, Workers, make_agent

from db_support import fast_polling, fresh_database, postgres_up
from shopfloor.config import Settings, load_settings

HERE = Path(__file__).parent


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Fast heartbeats and polling; on PostgreSQL a database of its own, dropped afterwards."""
    fast_polling(monkeypatch)
    if request.param == "sqlite":
        yield load_settings().db_url
        return
    if not postgres_up():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    with fresh_database(monkeypatch) as url:
        yield url


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

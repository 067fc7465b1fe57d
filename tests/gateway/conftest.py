"""Fixtures of the server tests: keys of each kind, servers stopped at the end of the test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import Keys, LiveServer

from db_support import fast_polling, fresh_database
from shopfloor.config import Settings
from shopfloor.security import KeyStore

RUNTIME_TESTS = Path(__file__).parents[1] / "runtime"


@pytest.fixture
def keys(settings: Settings) -> Keys:
    settings.ensure_home()
    store = KeyStore.open(settings.db_url)
    try:
        admin = store.create("admin", role="platform-admin", created_by="test")[1]
        viewer = store.create("viewer", role="viewer", team="research", created_by="test")[1]
        developer = store.create("dev", role="ai-developer", team="research", created_by="test")[1]
        revoked_key, revoked = store.create("gone", created_by="test")
        store.revoke(revoked_key.key_id)
    finally:
        store.close()
    return Keys(admin=admin, viewer=viewer, revoked=revoked, developer=developer)


@pytest.fixture
def live() -> Iterator[list[LiveServer]]:
    """Servers a test starts (``live.append(LiveServer(app))``), stopped at its end."""
    servers: list[LiveServer] = []
    yield servers
    for server in reversed(servers):
        server.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fast_runtime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fast heartbeats and polling, as the runtime tests use; the server's database is SQLite, then a
    PostgreSQL database of its own (DBOS keeps its tables in a schema of the database: not shared)."""
    fast_polling(monkeypatch)
    if request.param == "sqlite":
        yield
        return
    with fresh_database(monkeypatch, "sf_gw"):
        yield


@pytest.fixture
def agent_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runtime tests' agent (scripted model, a tool needing alice's approval), importable here."""
    monkeypatch.syspath_prepend(str(RUNTIME_TESTS))
    from runtime_support import make_agent

    made = make_agent(tmp_path / "agents")
    monkeypatch.syspath_prepend(str(made.path))
    monkeypatch.delitem(sys.modules, "agent_tools", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(made.path), os.environ.get("PYTHONPATH", "")]))
    return made.path

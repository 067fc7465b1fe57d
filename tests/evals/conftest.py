"""Fixtures of the evaluation tests: fast runtime polling, the scripted agent in a directory of its own."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eval_support import AGENT, HERE, AgentDir

from db_support import fast_polling, fresh_database


@pytest.fixture
def fast_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_polling(monkeypatch)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_runtime: None) -> AgentDir:
    path = tmp_path / "agent"
    path.mkdir()
    shutil.copy(HERE / "eval_agent.py", path / "eval_agent.py")
    (path / "agent.yaml").write_text(AGENT)
    (path / "seed.txt").write_text("seeded")
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delitem(sys.modules, "eval_agent", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]))
    return AgentDir(path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def eval_db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The database the runs and the evaluation live in: SQLite in the test's home, or a fresh
    PostgreSQL database (DBOS keeps schemas of its own, so a database, not a schema), dropped after."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    with fresh_database(monkeypatch, "sf_eval") as url:
        yield url.rsplit("/", 1)[1]

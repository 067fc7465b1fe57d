"""Fixtures of the release tests: an agent directory, a signing key this machine trusts, the services on
a SQLite file or a PostgreSQL schema of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shopfloor.config import load_settings
from shopfloor.ops.releases import DeploymentRouter, Releases
from shopfloor.runtime import Services, compose
from shopfloor.skills import generate_key

SPEC = """\
name: echo
instructions: Answer the question.
model: test
tools:
  - name: shout
    source: tools.py:shout
workspace:
  seed: [data/notes.txt]
"""
TOOLS = '''\
def shout(text: str) -> str:
    """Shout the text."""
    return text.upper()
'''


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    path = tmp_path / "echo"
    (path / "data").mkdir(parents=True)
    (path / "agent.yaml").write_text(SPEC)
    (path / "tools.py").write_text(TOOLS)
    (path / "data" / "notes.txt").write_text("first notes\n")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def services(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    if request.param == "postgresql":
        monkeypatch.setenv("SHOPFLOOR_DATABASE_URL", request.getfixturevalue("postgres_schema_url"))
    settings = load_settings()
    settings.ensure_home()
    services = compose(settings, run_router=DeploymentRouter())
    try:
        yield services
    finally:
        services.close()


@pytest.fixture
def key(services: Services) -> Path:
    """A key under $SHOPFLOOR_HOME/keys: trusted by this machine's policy."""
    return generate_key("releaser", services.settings.home / "keys").private_path


@pytest.fixture
def releases(services: Services) -> Iterator[Releases]:
    with Releases(services) as made:
        yield made

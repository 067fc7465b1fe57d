"""Shared fixtures: every test gets its own SHOPFLOOR_HOME and HOME; real model requests are blocked."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from home_support import REAL_SETTINGS, model_for_tests
from shopfloor.config import Settings, load_settings
from shopfloor.models import allow_model_requests

# Read before any test's isolated home is set: the pip cache that subprocesses of tests keep using.
_PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SHOPFLOOR_HOME", str(tmp_path / "shopfloor-home"))
    # Anything that falls back to ~ (Path.home(), tools run in subprocesses) lands here too.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PIP_CACHE_DIR", _PIP_CACHE)
    for name in (
        "SHOPFLOOR_CONFIG",
        "SHOPFLOOR_DATABASE_URL",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "SHOPFLOOR_URL",
        "SHOPFLOOR_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    previous = allow_model_requests(False)
    yield
    allow_model_requests(previous)


@pytest.fixture
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def real_models() -> Iterator[None]:
    """Opt in to real model requests for one test."""
    previous = allow_model_requests(True)
    yield
    allow_model_requests(previous)


@pytest.fixture(scope="session")
def embedded_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Path of a catalogue model: the one installed in the real data dir, read in place, else one
    installed once for this session into a temporary directory (the real home is never written)."""
    scratch = Settings(home=tmp_path_factory.mktemp("models-home"))

    def path(name: str) -> Path:
        return model_for_tests(name, installed=REAL_SETTINGS, scratch=scratch)

    return path


# Where the store tests find PostgreSQL; each test gets a schema of its own there, dropped afterwards.
POSTGRES_TEST_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty SQL database: a SQLite file, then a PostgreSQL schema (store tests run on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A URL of PostgreSQL's ``test`` database whose search path is a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_TEST_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 (database test) is needed: {exc}")
    try:
        yield f"{POSTGRES_TEST_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

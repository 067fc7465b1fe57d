"""Shared fixtures: every test gets its own SHOPFLOOR_HOME; real model requests are blocked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shopfloor.config import Settings, load_settings
from shopfloor.models import allow_model_requests, install_model

# Read before any test's isolated SHOPFLOOR_HOME is set: where `shopfloor models install` put the real models.
_REAL_SETTINGS = load_settings()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    home = tmp_path / "shopfloor-home"
    monkeypatch.setenv("SHOPFLOOR_HOME", str(home))
    for name in ("SHOPFLOOR_CONFIG", "SHOPFLOOR_DATABASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
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
def embedded_model() -> Callable[[str], Path]:
    """Path of an installed catalogue model, installing it (idempotently) into the real data dir if absent."""

    def path(name: str) -> Path:
        return install_model(name, _REAL_SETTINGS).path

    return path

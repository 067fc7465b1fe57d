"""Fixtures for the model tests: a real OpenAI-compatible server on loopback, the embedded models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_openai import FakeOpenAIServer

from shopfloor.config import load_settings
from shopfloor.models import install_model


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    server.start()
    yield server
    server.stop()


# Read before any test's isolated SHOPFLOOR_HOME is set: where `shopfloor models install` put the real models.
_REAL_SETTINGS = load_settings()


@pytest.fixture(scope="session")
def embedded_model() -> Callable[[str], Path]:
    """Path of an installed catalogue model, installing it (idempotently) into the real data dir if absent."""

    def path(name: str) -> Path:
        return install_model(name, _REAL_SETTINGS).path

    return path

"""Sandbox fixtures: one data dir per test session (the launcher is compiled once), a tenant workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.config import Settings, load_settings
from shopfloor.errors import SandboxUnavailableError
from shopfloor.sandbox import SandboxPolicy, select_backend


@pytest.fixture(scope="session")
def sandbox_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings({"SHOPFLOOR_HOME": str(tmp_path_factory.mktemp("sandbox-home"))})


@pytest.fixture(scope="session")
def bwrap_ready(sandbox_settings: Settings) -> None:
    try:
        select_backend(SandboxPolicy(isolation="bwrap"), sandbox_settings)
    except SandboxUnavailableError as exc:
        pytest.skip(f"bwrap sandbox unavailable here: {exc}")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def policy() -> SandboxPolicy:
    return SandboxPolicy(isolation="bwrap", memory=256 << 20, timeout=10.0, pids=64)

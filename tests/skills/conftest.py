"""Fixtures for skill tests: a scaffolded skill, a signing key, the trust policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.skills import KeyPair, TrustPolicy, generate_key, new_skill

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def skill_dir(tmp_path: Path) -> Path:
    return new_skill("hello", tmp_path / "skills")


@pytest.fixture
def key(settings: Settings) -> KeyPair:
    """A key of this machine (under SHOPFLOOR_HOME/keys), hence trusted by the default policy."""
    return generate_key("test", settings.home / "keys")


@pytest.fixture
def policy(settings: Settings, key: KeyPair) -> TrustPolicy:
    return TrustPolicy.from_settings(settings)

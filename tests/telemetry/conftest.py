"""Telemetry fixtures: an active Telemetry writing to this test's home."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shopfloor.config import Settings
from shopfloor.telemetry import Telemetry, configure_telemetry


@pytest.fixture
def telemetry(settings: Settings) -> Iterator[Telemetry]:
    active = configure_telemetry(settings)
    yield active
    active.shutdown()

"""What a piece of code is working for, as context variables (inherited by the tasks it starts and
by ``asyncio.to_thread``): the run, and the telemetry its spans go to.

The telemetry is passed explicitly to what owns a scope (``Runtime`` activates its own around each
run it executes, ``Telemetry.activate()``); code below reads it from here, so that a span three
layers down needs no parameter, and two runtimes in one process never share one by accident.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shopfloor.telemetry._setup import Telemetry

__all__ = ["ACTIVE", "RUN"]

RUN: ContextVar[str | None] = ContextVar("shopfloor_run_id", default=None)
ACTIVE: ContextVar[Telemetry | None] = ContextVar("shopfloor_telemetry", default=None)

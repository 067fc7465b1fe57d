"""The run a piece of code is working for, as a context variable (inherited by tasks it starts)."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["RUN"]

RUN: ContextVar[str | None] = ContextVar("shopfloor_run_id", default=None)

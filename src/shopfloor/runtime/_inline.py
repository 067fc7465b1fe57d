"""On SQLite, DBOS's bookkeeping around each async step runs on the event loop, not in threads.

DBOS 3.4 wraps an async step in three ``asyncio.to_thread`` hops (``dbos._outcome.Pending``:
look up a recorded result, a stage that does nothing, record the result). On this project's
2-core VMs a hop costs ~0.3 ms, more than the SQLite work it carries (~0.15 ms for the look-up;
the record is one commit), and SQLite admits one writer at a time, so the threads buy a
worker's concurrent runs nothing. Measured on bare DBOS, 2 steps per iteration: 6.7 ms with
the hops, 4.4 ms without.

So while a runtime on SQLite has DBOS launched, DBOS's outcome module sees an ``asyncio``
whose ``to_thread`` calls the function in place. Nothing else changes: the same DBOS code
checks and records the same rows in the same transactions, so recovery is DBOS's own (the
kill -9 tests run on it). What it costs: the event loop waits out each step's commit (and,
rarely, SQLite's busy timeout while another process writes) instead of a thread doing so.
Heartbeats beat from their own thread, so a waiting loop never looks like a dead executor.

PostgreSQL keeps DBOS's threads: there the round trips of concurrent runs overlap. Guarded:
applied only where ``dbos._outcome`` uses the asyncio module itself (DBOS 3.4, as pinned);
any other DBOS stays as it is and the log says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import dbos._outcome as _outcome

__all__ = ["InPlaceAsyncio", "inline_step_bookkeeping", "restore_step_bookkeeping"]

T = TypeVar("T")
log = logging.getLogger("shopfloor.runtime")


async def _in_place(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return func(*args, **kwargs)


class InPlaceAsyncio:
    """The asyncio module, except that ``to_thread`` runs the function on the calling thread."""

    to_thread = staticmethod(_in_place)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def inline_step_bookkeeping() -> bool:
    """Run DBOS's step bookkeeping in place; False (and a warning) where this DBOS is not the one
    this was written for."""
    current = getattr(_outcome, "asyncio", None)
    if isinstance(current, InPlaceAsyncio):
        return True
    if current is not asyncio:
        log.warning("DBOS's step bookkeeping is not the one Shopfloor knows: steps keep DBOS's threads")
        return False
    setattr(_outcome, "asyncio", InPlaceAsyncio())  # noqa: B010 - a private name, on purpose
    return True


def restore_step_bookkeeping() -> None:
    if isinstance(getattr(_outcome, "asyncio", None), InPlaceAsyncio):
        setattr(_outcome, "asyncio", asyncio)  # noqa: B010

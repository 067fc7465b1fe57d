"""Wake-ups for whoever waits on a run in this process: its record or its events changed.

``Runtime.wait`` and ``follow_events`` read the run store; between reads they used to sleep a
poll interval (0.2 s by default), so the caller of a run that executed in this very process
learnt of its end up to that late: ``shopfloor run``, an evaluation item and a demo question each
paid ~0.1 s on average after the run had ended. The writes a runtime makes itself (a run's status,
a batch of its events) now wake those readers at once; the poll stays, as the bound of each wait,
for what other processes write (a worker executing the run, an approval from another shell).

Waiters live on an event loop; a write may be made from another one (DBOS runs a recovered
workflow on its own loop): the wake-up then reaches the waiter's loop thread-safely.

A write of a run's events wakes only those who read its events (``follow_events``): ``wait`` reads
the record alone, and reading it again at every batch of events cost it a thread hop each.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Iterator

__all__ = ["RunSignals", "until"]


class RunSignals:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: by run id: each waiter's future, and whether a write of the run's events wakes it
        self._waiters: dict[str, dict[asyncio.Future[None], bool]] = {}

    def notify(self, run_ids: Iterable[str]) -> None:
        """Wake everyone waiting on any of ``run_ids``: their records changed."""
        woken: list[asyncio.Future[None]] = []
        with self._lock:
            for run_id in run_ids:
                woken.extend(self._waiters.pop(run_id, ()))
        self._wake_all(woken)

    def notify_events(self, run_ids: Iterable[str]) -> None:
        """Wake those waiting on the events of any of ``run_ids``: events of theirs were written."""
        woken: list[asyncio.Future[None]] = []
        with self._lock:
            for run_id in run_ids:
                waiting = self._waiters.get(run_id)
                if waiting is None:
                    continue
                for future, events in list(waiting.items()):
                    if events:
                        woken.append(future)
                        del waiting[future]
                if not waiting:
                    del self._waiters[run_id]
        self._wake_all(woken)

    def _wake_all(self, woken: list[asyncio.Future[None]]) -> None:
        if not woken:
            return
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for future in woken:
            loop = future.get_loop()
            if loop is here:
                _wake(future)
            else:
                with contextlib.suppress(RuntimeError):  # its loop has closed: no one waits any more
                    loop.call_soon_threadsafe(_wake, future)

    @contextlib.contextmanager
    def watch(self, run_id: str, *, events: bool = True) -> Iterator[asyncio.Future[None]]:
        """A future done when this process next writes the run's record (or, with ``events``, its
        events). Watch before reading what was written, then wait on it (``until``, bounded by a poll
        interval, for what other processes write): a write between the read and the wait is not missed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters.setdefault(run_id, {})[future] = events
        try:
            yield future
        finally:
            with self._lock:
                waiting = self._waiters.get(run_id)
                if waiting is not None:
                    waiting.pop(future, None)
                    if not waiting:
                        del self._waiters[run_id]
            future.cancel()

    def waiting(self) -> int:
        """How many waits are pending (for tests: none is left behind)."""
        with self._lock:
            return sum(len(futures) for futures in self._waiters.values())


async def until(changed: asyncio.Future[None], poll: float) -> None:
    """Wait until ``changed`` (a ``watch``) is done, or ``poll`` seconds have passed: one timer on the
    loop, where ``asyncio.wait`` made a waiter future and callbacks besides (~30 Python calls a wait)."""
    timer = asyncio.get_running_loop().call_later(poll, _wake, changed)
    try:
        await changed
    finally:
        timer.cancel()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

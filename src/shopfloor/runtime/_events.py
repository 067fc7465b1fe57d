"""Streaming a run's events without a write per step.

Why batched and not per step: the durable floor is one synchronous commit per
step, and DBOS already spends it recording the step's output. Writing each event
in its own commit (or as a DBOS stream entry, which is another recorded
operation) would double that. So events go to an in-memory buffer and a
flush appends them in one transaction ``interval`` seconds after the first is buffered, and
at once when a run ends or starts waiting for a person (on SQLite, the executing
runtime's ``write`` puts the batch into the step recorder's next group commit).

What a crash loses is at most the buffered tail, and recovery regenerates it:
the loop is deterministic given its recorded steps, so a recovered run re-emits
the same events with the same sequence numbers, and the store ignores rows it
already has (insert-or-ignore on run id + seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shopfloor._json import COMPACT
from shopfloor.agent import RunEvent
from shopfloor.runtime._signals import RunSignals, until
from shopfloor.runtime._store import RunStore

__all__ = ["EventLog", "StoredEvent", "follow_events"]


@dataclass(frozen=True, kw_only=True)
class StoredEvent:
    """An event of a run with its position in the run's stream (for resuming, e.g. SSE ``Last-Event-ID``)."""

    seq: int
    at: float
    event: RunEvent

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, **self.event.to_dict()}


class EventLog:
    """The process-wide buffered writer of run events."""

    def __init__(
        self,
        store: RunStore,
        *,
        interval: float = 0.1,
        write: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
    ) -> None:
        """``write``: how a batch is written (the runtime's: beside the step rows where it can),
        else ``store.append_events`` in a thread."""
        self._store = store
        self._write = write
        self._interval = interval
        self._buffer: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        #: when the buffered events are due to be written (None: nothing is buffered, or a flush runs)
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def sink(self, run_id: str) -> _RunSink:
        """A fresh event sink for one execution of a run (sequence numbers start at 0 each time)."""
        return _RunSink(self, run_id)

    def _append(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        if self._timer is None:
            # A timer, not a task asleep: a flush that empties the buffer first (a run's end writes its
            # events itself) cancels it, and nothing wakes up for an empty buffer.
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._due)

    def _due(self) -> None:
        self._timer = None
        if self._buffer:
            self._task = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self, write: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None) -> None:
        """Write the buffered events; ``write``: stages them (even none) at its call, in place of the log's
        own way, with what must be durable together with them (a run's end: ``Runtime.finish_run``), and
        returns what is awaited for their commit."""
        staged: Awaitable[None] | None = None
        async with self._lock:
            batch, self._buffer = self._buffer, []
            if self._timer is not None:  # what was due is written now
                self._timer.cancel()
                self._timer = None
            if write is not None:
                # Staged under the lock, so after every batch before it; its commit awaited without the
                # lock, so that the ends of many runs share one commit instead of taking one each.
                staged = write(batch)
            elif batch and self._write is not None:
                await self._write(batch)
            elif batch:
                await asyncio.to_thread(self._store.append_events, batch)
        if staged is not None:
            await staged

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


class _RunSink:
    def __init__(self, log: EventLog, run_id: str) -> None:
        self._log = log
        self._run_id = run_id
        self._seq = 0

    def __call__(self, event: RunEvent) -> None:
        self._log._append(
            {
                "run_id": self._run_id,
                "seq": self._seq,
                "kind": event.kind,
                "step": event.step,
                "data": event.data_json if event.data_json is not None else COMPACT.encode(event.data),
                "at": time.time(),
            }
        )
        self._seq += 1


async def follow_events(
    store: RunStore,
    run_id: str,
    *,
    after: int = -1,
    follow: bool = True,
    poll: float = 0.2,
    signals: RunSignals | None = None,
) -> AsyncIterator[StoredEvent]:
    """The run's events from ``after`` on; with ``follow``, wait for new ones until the run ends:
    woken by ``signals`` when this process writes them, else after ``poll`` seconds."""
    while True:
        with signals.watch(run_id) if signals is not None else _unwatched() as changed:
            rows = await asyncio.to_thread(store.read_events, run_id, after=after)
            for row in rows:
                after = row["seq"]
                event = RunEvent(kind=row["kind"], run_id=run_id, step=row["step"], data=row["data"])
                yield StoredEvent(seq=row["seq"], at=row["at"], event=event)
                if row["kind"] == "run_finished":
                    return
            if rows:
                continue
            if not follow:
                return
            record = await asyncio.to_thread(store.get, run_id)
            if record.done:
                # A run can end without a run_finished event (cancelled before it started, or a
                # failure outside the loop): one last read catches events flushed meanwhile.
                for row in await asyncio.to_thread(store.read_events, run_id, after=after):
                    event = RunEvent(kind=row["kind"], run_id=run_id, step=row["step"], data=row["data"])
                    yield StoredEvent(seq=row["seq"], at=row["at"], event=event)
                return
            await until(changed, poll)


@contextlib.contextmanager
def _unwatched() -> Iterator[asyncio.Future[None]]:
    """No one wakes this reader: it waits the whole poll interval."""
    yield asyncio.get_running_loop().create_future()

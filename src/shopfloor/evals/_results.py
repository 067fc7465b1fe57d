"""Items' results on their way to the eval store: written together, off the items' path.

A result waits at most ``every`` seconds (or until ``batch`` are waiting) and is then written with
the others in one transaction, in a worker thread the item does not wait for. One not yet written when
the process dies is not lost work: the item's run has ended under an id derived from the item
(``item_run_id``), and resuming the evaluation scores it from that run's record without running it again.
"""

from __future__ import annotations

import asyncio

from shopfloor.evals._store import EvalStore, ItemResult

__all__ = ["ResultWriter"]


class ResultWriter:
    """Collects ``ItemResult`` s on one event loop; ``close`` writes the rest and waits for every write
    (raising the first write's error, if one failed)."""

    def __init__(self, store: EvalStore, *, every: float, batch: int) -> None:
        self.store = store
        self.every = every
        self.batch = batch
        self._pending: list[ItemResult] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()

    def add(self, result: ItemResult) -> None:
        self._pending.append(result)
        if self.every <= 0 or len(self._pending) >= self.batch:
            self._write()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.every, self._write)

    def _write(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.store.write_results, batch))
            self._writes.add(task)
            task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        # A write that failed stays for ``close`` to raise (reading its exception marks it retrieved).
        if not task.cancelled() and task.exception() is None:
            self._writes.discard(task)

    async def close(self) -> None:
        self._write()
        writes, self._writes = list(self._writes), set()
        # Every write is awaited (none left running against a closed store) before the first error is raised.
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

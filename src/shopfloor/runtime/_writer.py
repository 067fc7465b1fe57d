"""A thread that runs jobs one after another for an event loop and hands each outcome back to it.

The SQLite step recorder's group commits run here (``_recorder_sqlite.py``): the rows are inserted on
the loop, and the ``COMMIT`` (the fsync) in this thread while the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Writer"]

T = TypeVar("T")
#: a job: the loop to report to, the work, what takes its outcome there, whether it is handed over
_Job = tuple[asyncio.AbstractEventLoop, Callable[[], T], Callable[[T | Exception], None], bool]
#: how long the loop waits for the thread to take a job it hands over (``Writer.submit``)
_HAND_OVER = 0.002


class Writer(Generic[T]):
    """Jobs in through a queue written in C, each outcome (or the exception the job raised) out by
    one ``call_soon_threadsafe``: ``run_in_executor``'s two futures chained together cost ~90 Python
    calls a job on the loop. A daemon thread: a process that exits without closing it stops as under
    kill -9, which recovery is for; ``close`` lets the job in flight end first."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job[T] | None] = queue.SimpleQueue()
        #: the jobs the thread has taken, for ``submit(..., hand_over=True)``
        self._taken: queue.SimpleQueue[_Job[T]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Callable[[], T],
        done: Callable[[T | Exception], None],
        *,
        hand_over: bool = False,
    ) -> None:
        """Run ``work`` after the jobs before it, then ``done(its outcome)`` on ``loop``.

        ``hand_over``: wait (at most ``_HAND_OVER`` seconds) until the thread has taken the job. The
        thread needs the GIL to start it, and a loop thread busy with Python gives the GIL up only
        when it blocks or after the switch interval (5 ms): a commit handed over without the wait
        began only when the loop next waited for it, and its fsync overlapped nothing. Waiting here
        gives the GIL over; the thread gives it back as the job enters C (SQLite's COMMIT)."""
        job = (loop, work, done, hand_over)
        self._jobs.put(job)
        if hand_over:
            try:
                while self._taken.get(timeout=_HAND_OVER) is not job:
                    pass  # a job taken after its own wait gave up
            except queue.Empty:
                pass

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, work, done, hand_over = job
            if hand_over:
                self._taken.put(job)
            outcome: T | Exception
            try:
                outcome = work()
            except BaseException as exc:  # handed to whoever waits for the job
                outcome = exc if isinstance(exc, Exception) else RuntimeError(f"{work!r}: {exc!r}")
            with contextlib.suppress(RuntimeError):  # the loop is closed: no one waits any more
                loop.call_soon_threadsafe(done, outcome)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

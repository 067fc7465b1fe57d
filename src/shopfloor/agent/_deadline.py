"""``asyncio.timeout`` for the blocks a run times one after another, on one timer handle.

Each model and tool step of a run is timed (``step_timeout``). ``asyncio.timeout`` schedules a timer
for each block and cancels it on the way out: ~30 Python calls a step on the loop's thread (its
object, ``call_at``, the heap's ``TimerHandle.__lt__``, the cancel), and the cancelled handles stay in
the loop's heap until it is rebuilt. A step takes milliseconds against a timeout of seconds, so
``StepTimer`` keeps one handle armed and moves only the deadline: a block sets where its deadline
is, and the handle, when it fires, either finds the block in it past its deadline (the task is
cancelled, and the block raises ``TimeoutError``, as under ``asyncio.timeout``) or arms itself
again at the deadline it finds. A handle fires about once a timeout, whatever the number of steps.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["StepTimer"]


class StepTimer:
    """``with timer.after(seconds):`` is ``async with asyncio.timeout(seconds):`` for one block at a
    time in a task: the same cancel when the deadline passes, the same ``TimeoutError`` from the
    ``CancelledError`` that leaves the block (only where no other cancel was asked for meanwhile).
    ``close`` cancels the handle (the owner's blocks are over)."""

    __slots__ = ("_cancelling", "_deadline", "_expired", "_fires_at", "_handle", "_loop", "_seconds", "_task")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        #: the loop time the handle fires at, and the deadline of the block in it (its owner's last)
        self._fires_at = 0.0
        self._deadline = 0.0
        self._seconds = 0.0
        #: the task of the block in progress (None: none is)
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._expired = False

    def after(self, seconds: float) -> StepTimer:
        """The block to time: its deadline is ``seconds`` after it is entered."""
        self._seconds = seconds
        return self

    def __enter__(self) -> None:
        if self._task is not None:
            raise RuntimeError("a StepTimer times one block at a time")
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a StepTimer times a block inside a task")
        deadline = self._deadline = loop.time() + self._seconds
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        if self._handle is None or self._loop is not loop or self._fires_at > deadline:
            # None armed (here), or it fires after this block's deadline: armed again, at that deadline.
            if self._handle is not None:
                self._handle.cancel()
            self._loop = loop
            self._fires_at = deadline
            self._handle = loop.call_at(deadline, self._fire)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if self._expired:
            self._expired = False
            assert task is not None
            if task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                # No other cancel was asked for since the block began: it is this timer's.
                raise TimeoutError from exc

    def _fire(self) -> None:
        self._handle = None
        task = self._task
        if task is None:
            return  # no block in progress: the next one arms it again
        loop = self._loop
        assert loop is not None
        if self._deadline > self._fires_at:
            # The block in progress began after the handle was armed: its deadline is later.
            self._fires_at = self._deadline
            self._handle = loop.call_at(self._deadline, self._fire)
            return
        self._expired = True
        task.cancel()

    def close(self) -> None:
        """Cancel the armed handle: the owner times nothing more (a block entered later arms it again)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

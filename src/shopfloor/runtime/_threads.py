"""Blocking calls made in a thread for the event loop, their outcome handed back in one step.

``asyncio.to_thread`` hands a call to the loop's executor and chains two futures (the executor's to
the loop's, ``wrap_future``): ~90 Python calls on the loop's thread a call, and a run made several (its
spec read at its start, its agent built, its record read by ``wait``). ``Threads.call`` hands the call
to a pool of its own and its outcome straight to a future of the loop, by one ``call_soon_threadsafe``
from the thread: ~25 calls on the loop. Otherwise as ``to_thread``: the call sees the caller's context
variables, and its exception is raised to the caller. A caller cancelled meanwhile is not waited for:
the call, once begun, runs to its end, its outcome dropped (``to_thread`` cancels one not begun yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["Threads"]

T = TypeVar("T")


class Threads:
    def __init__(self, name: str) -> None:
        # No thread starts before the first call.
        self._pool = ThreadPoolExecutor(thread_name_prefix=name)

    async def call(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` in a thread of the pool; its result (or its exception) here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pool.submit(
            _work, loop, future, contextvars.copy_context(), functools.partial(func, *args, **kwargs)
        )
        return await future

    def close(self) -> None:
        """Take no more calls; those begun end in their threads."""
        self._pool.shutdown(wait=False)


def _work(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[T],
    context: contextvars.Context,
    call: Callable[[], T],
) -> None:
    try:
        result = context.run(call)
    except BaseException as exc:  # raised to the caller, as ``to_thread`` raises it
        outcome: Callable[[], object] = functools.partial(_fail, future, exc)
    else:
        outcome = functools.partial(_succeed, future, result)
    with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits any more
        loop.call_soon_threadsafe(outcome)


def _succeed(future: asyncio.Future[T], result: T) -> None:
    if not future.done():  # (cancelled meanwhile)
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        # A future refuses StopIteration (it would end the awaiting coroutine as a return).
        future.set_exception(RuntimeError(repr(exc)) if isinstance(exc, StopIteration) else exc)

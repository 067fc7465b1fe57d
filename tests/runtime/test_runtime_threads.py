"""Blocking calls in a thread for the loop (``Threads``): as ``asyncio.to_thread`` makes them."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from shopfloor.runtime._threads import Threads

_SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


async def test_a_call_runs_in_another_thread_with_the_callers_context_and_returns_its_result() -> None:
    threads = Threads("test")
    try:
        _SEEN.set("the caller's")

        def where(suffix: str, *, sep: str) -> tuple[str, int]:
            return sep.join((_SEEN.get(), suffix)), threading.get_ident()

        found, ident = await threads.call(where, "value", sep=" ")
        assert found == "the caller's value" and ident != threading.get_ident()
    finally:
        threads.close()


async def test_a_calls_exception_is_raised_to_the_caller() -> None:
    threads = Threads("test")
    try:

        def fails() -> None:
            raise KeyError("no such run")

        with pytest.raises(KeyError, match="no such run"):
            await threads.call(fails)

        def stops() -> None:
            raise StopIteration

        with pytest.raises(RuntimeError, match="StopIteration"):
            await threads.call(stops)
    finally:
        threads.close()


async def test_a_cancelled_caller_is_not_waited_for_and_the_call_ends_in_its_thread() -> None:
    threads = Threads("test")
    release, ended = threading.Event(), threading.Event()

    def blocks() -> str:
        release.wait(5)
        ended.set()
        return "late"

    try:
        waiting = asyncio.ensure_future(threads.call(blocks))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert await asyncio.to_thread(ended.wait, 5)
        await asyncio.sleep(0.05)  # its outcome reaches a cancelled future: dropped without an error
    finally:
        threads.close()

"""Whoever waits on a run in this process is woken by this process's writes, not by a poll interval."""

from __future__ import annotations

import asyncio
import threading

import pytest
from runtime_support import AgentDir

from shopfloor.config import load_settings
from shopfloor.runtime import Runtime, compose
from shopfloor.runtime._signals import RunSignals, until


async def test_a_write_wakes_the_watchers_of_its_run_only() -> None:
    signals = RunSignals()
    with signals.watch("a") as a, signals.watch("b") as b:
        signals.notify(["a"])
        await asyncio.wait({a}, timeout=5)
        assert a.done() and not b.done()
    assert signals.waiting() == 0


async def test_a_write_of_events_wakes_only_the_readers_of_events() -> None:
    signals = RunSignals()
    with signals.watch("run", events=False) as record, signals.watch("run") as events:
        signals.notify_events(["run"])
        await asyncio.wait({events}, timeout=5)
        assert events.done() and not record.done()
        assert signals.waiting() == 1
        signals.notify(["run"])  # the record changed: every watcher
        await asyncio.wait({record}, timeout=5)
        assert record.done()
    assert signals.waiting() == 0


async def test_until_returns_at_the_wake_up_or_at_the_timeout() -> None:
    signals = RunSignals()
    with signals.watch("run") as changed:
        waiting = asyncio.ensure_future(until(changed, 60))
        await asyncio.sleep(0)
        signals.notify(["run"])
        await asyncio.wait_for(waiting, 5)
    with signals.watch("run") as changed:
        await asyncio.wait_for(until(changed, 0.01), 5)  # nothing wakes it: the timeout does
        assert changed.done()
    assert signals.waiting() == 0


async def test_a_write_between_the_read_and_the_wait_is_not_missed() -> None:
    signals = RunSignals()
    with signals.watch("run") as changed:
        signals.notify(["run"])  # the write lands after the watch began, before the wait
        done, _ = await asyncio.wait({changed}, timeout=5)
    assert done == {changed}


async def test_a_write_from_another_thread_wakes_the_waiters_loop() -> None:
    signals = RunSignals()
    with signals.watch("run") as changed:
        threading.Thread(target=signals.notify, args=(["run"],)).start()
        done, _ = await asyncio.wait({changed}, timeout=5)
    assert done == {changed}
    assert signals.waiting() == 0


@pytest.mark.usefixtures("db_url")
async def test_wait_and_events_return_when_the_run_ends_here_not_at_the_next_poll(
    agent: AgentDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A poll interval far longer than the bound below: only the wake-ups can end these waits in time.
    monkeypatch.setenv("SHOPFLOOR_RUNTIME__POLL_INTERVAL", "60")
    settings = load_settings()
    async with Runtime(compose(settings)) as runtime:
        first = await runtime.start_run(agent.path, "ticks=2")
        async with asyncio.timeout(30):
            kinds = [stored.event.kind async for stored in runtime.events(first)]
            record = await runtime.wait(first)
            # wait() before the run ended: it sleeps until the end is written
            second = await runtime.start_run(agent.path, "ticks=1")
            waited = await runtime.wait(second[:10])
        assert runtime.signals.waiting() == 0
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert record.status == "completed" and waited.status == "completed"
    assert waited.run_id == second and waited.output == "done after 1 ticks"

"""Concurrent-run limits at ``Runtime.start_run``: exact under concurrency (200 concurrent starts against a
limit of 10 start exactly 10, and a refused start leaves no run behind), and a run's slot comes back
however it ends: completed, failed, cancelled while queued, or finished by another worker after a
kill -9 of the one running it. A killed worker's slot is held until its lease lapses, then free; the
worker that recovers the run takes the slot back (over the maximum if another run took it meanwhile)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from runtime_support import AgentDir, Workers

from shopfloor.config import Settings, load_settings
from shopfloor.errors import BudgetExceededError
from shopfloor.runtime import Runtime, compose
from shopfloor.security import Principal

pytestmark = pytest.mark.usefixtures("db_url")
REDIS_URL = "redis://127.0.0.1:6379/0"


def _limited(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    maximum: int,
    counters: str = "database",
    lease: float = 30.0,
) -> Settings:
    """Settings (and, through ``SHOPFLOOR_CONFIG``, the workers' settings) limiting each key's runs."""
    config = tmp_path / "limits.toml"
    config.write_text(
        f'[security]\ncounters = "{counters}"\nslot_lease_seconds = {lease}\n\n'
        f'[[security.limits]]\nscope = "key:*"\nconcurrent_runs = {maximum}\n'
    )
    monkeypatch.setenv("SHOPFLOOR_CONFIG", str(config))
    return load_settings()


def _caller() -> Principal:
    # a key of its own per test: Redis outlives the test, and slots of another run must not count
    key = f"key:{uuid.uuid4().hex[:12]}"
    return Principal(id=key, kind="program", name=key, team="research")


async def _start(runtime: Runtime, agent: AgentDir, caller: Principal, task: str = "ticks=1") -> str | None:
    try:
        return await runtime.start_run(agent.path, task, detach=True, caller=caller.id, principal=caller)
    except BudgetExceededError:
        return None


@pytest.mark.parametrize("counters", ["database", pytest.param(REDIS_URL, id="redis")])
async def test_200_concurrent_starts_against_10_start_exactly_10(
    tmp_path: Path, agent: AgentDir, monkeypatch: pytest.MonkeyPatch, counters: str
) -> None:
    settings = _limited(tmp_path, monkeypatch, 10, counters)
    caller = _caller()
    async with Runtime(compose(settings)) as runtime:
        started = await asyncio.gather(*(_start(runtime, agent, caller) for _ in range(200)))
        held = [run_id for run_id in started if run_id is not None]
        assert len(held) == 10
        listed = await runtime.list_runs(limit=500)
        assert sorted(r.run_id for r in listed) == sorted(held), "a refused start left a run behind"
        with pytest.raises(BudgetExceededError, match=rf"{caller.id} concurrent runs = 10"):
            await runtime.start_run(agent.path, "ticks=1", detach=True, principal=caller)
        # another key is not bound by this one's limit
        assert await _start(runtime, agent, _caller()) is not None
        # a queued run cancelled gives its slot back: exactly one more starts
        await runtime.cancel(held[0])
        again = await asyncio.gather(*(_start(runtime, agent, caller) for _ in range(20)))
        assert len([run_id for run_id in again if run_id is not None]) == 1
        for run_id in held[1:] + [r for r in again if r is not None]:
            await runtime.cancel(run_id)


async def test_a_slot_comes_back_when_the_run_completes_or_fails(
    tmp_path: Path, agent: AgentDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _limited(tmp_path, monkeypatch, 1)
    caller = _caller()
    async with Runtime(compose(settings)) as runtime:
        queued = await runtime.start_run(agent.path, "ticks=1", detach=True, principal=caller)
        assert await _start(runtime, agent, caller) is None
        # a run that fails (its agent changed since it was queued) gives its slot back
        spec = agent.path / "agent.yaml"
        spec.write_text(spec.read_text().replace("Tick as asked.", "Tick differently."))
        await runtime.start_executor(worker=True)
        async with asyncio.timeout(20):
            assert (await runtime.wait(queued)).status == "failed"
        # and so does a run that completes
        done = await runtime.start_run(agent.path, "ticks=1", principal=caller)
        async with asyncio.timeout(20):
            assert (await runtime.wait(done)).status == "completed"
        last = await runtime.start_run(agent.path, "ticks=1", principal=caller)
        async with asyncio.timeout(20):
            assert (await runtime.wait(last)).status == "completed"


@pytest.mark.slow
async def test_a_slot_is_held_across_a_crash_and_freed_when_the_recovered_run_ends(
    tmp_path: Path, agent: AgentDir, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _limited(tmp_path, monkeypatch, 1)
    caller = _caller()
    agent.block("tool-1")
    async with Runtime(compose(settings)) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=2", detach=True, principal=caller)
        first = workers.start()
        await asyncio.to_thread(agent.wait_for_call, f"tool:{run_id}:1")
        workers.kill9(first)
        assert await _start(runtime, agent, caller) is None, "the crashed run still holds its slot"
        agent.unblock("tool-1")
        workers.start()
        async with asyncio.timeout(60):
            record = await runtime.wait(run_id)
        assert record.status == "completed"
        assert await _start(runtime, agent, caller) is not None, "the recovered run gave its slot back"


@pytest.mark.slow
async def test_a_killed_worker_s_slot_lapses_and_its_recovered_run_takes_it_back(
    tmp_path: Path, agent: AgentDir, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _limited(tmp_path, monkeypatch, 1, lease=2.0)
    caller = _caller()
    agent.block("tool-1")
    async with Runtime(compose(settings)) as runtime:
        crashed = await runtime.start_run(agent.path, "ticks=2", detach=True, principal=caller)
        first = workers.start()
        await asyncio.to_thread(agent.wait_for_call, f"tool:{crashed}:1")
        workers.kill9(first)
        # nobody renews the dead worker's lease: its slot is free once it lapses (bounded wait)
        async with asyncio.timeout(60):
            # the slot frees by a clock in the store: nothing here can signal it
            while (other := await _start(runtime, agent, caller, "ticks=0")) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        # a new worker recovers the crashed run (which takes its slot back, though the other run may
        # hold the only one: it was admitted, so it runs) and runs the other run to its end
        workers.start()
        async with asyncio.timeout(60):
            while agent.calls()[f"tool:{crashed}:1"] < 2:  # noqa: ASYNC110  (another process calls it)
                await asyncio.sleep(0.05)
            assert (await runtime.wait(other)).status == "completed"
        assert await _start(runtime, agent, caller) is None, "the recovered run does not hold its slot"
        agent.unblock("tool-1")
        async with asyncio.timeout(60):
            assert (await runtime.wait(crashed)).status == "completed"
        assert await _start(runtime, agent, caller) is not None, "the recovered run gave its slot back"


async def test_limits_taken_up_while_running_apply_to_the_next_start(
    tmp_path: Path, agent: AgentDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``use_limits`` (a server's reloaded GitOps policy): a runtime that started without limits holds
    slots under the new ones, and a limit raised again lets the next run start."""
    caller = _caller()
    async with Runtime(compose(load_settings())) as runtime:
        first = await _start(runtime, agent, caller)
        assert first is not None  # no limit yet
        runtime.use_limits(_limited(tmp_path, monkeypatch, 1))
        held = await _start(runtime, agent, caller)
        assert held is not None
        assert await _start(runtime, agent, caller) is None  # the one slot is held
        runtime.use_limits(_limited(tmp_path, monkeypatch, 2))
        assert await _start(runtime, agent, caller) is not None
        assert await _start(runtime, agent, caller) is None

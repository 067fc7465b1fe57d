"""Two Runtime processes sharing their counters (Redis; or PostgreSQL with ``counters =
"shared-database"``) enforce one budget and one concurrent-run limit together, and the runs of one
killed with -9 keep their slots for their lease (``slot_lease_seconds``, 30 s here), until another
worker recovers them (taking the slots back) and they end.

Each process (``limits_process.py``) executes the runs it starts. A budget refusal ends a run with
``stop_reason="budget"``; a concurrent-run refusal refuses the start itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_support import AgentDir, Workers, make_agent

from db_support import fast_polling, fresh_database, postgres_up
from shopfloor.config import load_settings
from shopfloor.runtime import Runtime, compose

HERE = Path(__file__).parent
REDIS_URL = "redis://127.0.0.1:6379/0"
#: a model reply may take 6000 tokens, so each call reserves 6000 + its prompt (a few hundred)
#: against the budget until it ends: 15000 admits exactly two calls at a time
MAX_OUTPUT = 6000
TOKENS_PER_DAY = 15000
CONCURRENT_RUNS = 3


@pytest.fixture(
    params=[
        pytest.param("redis", id="redis"),
        pytest.param("shared-database", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Redis counters beside the default database; ``shared-database`` counters in PostgreSQL."""
    fast_polling(monkeypatch)
    if request.param == "redis":
        monkeypatch.setenv("TEST_COUNTERS", REDIS_URL)
        yield load_settings().db_url
        return
    if not postgres_up():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    monkeypatch.setenv("TEST_COUNTERS", "shared-database")
    with fresh_database(monkeypatch) as url:
        yield url


class Proc:
    """A ``limits_process.py`` subprocess, driven line by line."""

    def __init__(self, key: str, log: Path) -> None:
        self.log = log
        with open(log, "wb") as err:
            # its source, not its path: the scripted model must come from the agent's folder, not
            # from the tests' own agent_tools.py beside it
            self.proc = subprocess.Popen(
                [sys.executable, "-c", (HERE / "limits_process.py").read_text(), key],
                cwd=log.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=dict(os.environ),
            )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put(line)
        self.lines.put(b"")

    async def read(self, within: float = 120.0) -> dict[str, Any]:
        try:
            line = await asyncio.to_thread(self.lines.get, True, within)
        except queue.Empty:
            raise AssertionError(f"no answer in {within} s:\n{self.log.read_text()[-4000:]}") from None
        if not line:
            raise AssertionError(f"the runtime process ended:\n{self.log.read_text()[-4000:]}")
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    async def start(self, agent: AgentDir, count: int, task: str) -> dict[str, list[str]]:
        assert self.proc.stdin is not None
        command = json.dumps({"agent": str(agent.path), "count": count, "task": task}) + "\n"
        self.proc.stdin.write(command.encode())
        self.proc.stdin.flush()
        return await self.read()  # type: ignore[return-value]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def stop(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.pump.join(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


async def _until(check: Any, what: str, seen: dict[str, Any]) -> Any:
    """Poll ``check`` until it returns something; ``seen``: what it saw last, for the failure."""
    try:
        async with asyncio.timeout(120):
            # other processes change what is checked: nothing here can signal it
            while not (result := await check()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within 120 s: {what}; last seen: {seen}") from None
    return result


def _started(*answers: dict[str, list[str]]) -> list[str]:
    return [run_id for answer in answers for run_id in answer["started"]]


@pytest.mark.slow
async def test_two_runtime_processes_share_one_budget_and_one_run_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: Workers
) -> None:
    tag = uuid.uuid4().hex[:8]  # Redis outlives the test: names of its own
    limits = f"  max_steps: 10\n  max_output_tokens: {MAX_OUTPUT}"
    limited = make_agent(tmp_path / "agents", name=f"limited-{tag}", limits=limits)
    budgeted = make_agent(tmp_path / "agents", name=f"budgeted-{tag}", limits=limits)
    # the scripted model is imported from the first agent's folder: its gates and log serve both
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(limited.path), os.environ.get("PYTHONPATH", "")]))
    config = tmp_path / "limits.toml"
    config.write_text(
        f'[security]\ncounters = "{os.environ["TEST_COUNTERS"]}"\n\n'
        f'[[security.limits]]\nscope = "agent:{limited.path.name}"\nconcurrent_runs = {CONCURRENT_RUNS}\n\n'
        f'[[security.limits]]\nscope = "agent:{budgeted.path.name}"\ntokens_per_day = {TOKENS_PER_DAY}\n'
    )
    monkeypatch.setenv("SHOPFLOOR_CONFIG", str(config))
    procs = [Proc(f"key:{tag}", tmp_path / f"runtime-{i}.log") for i in range(2)]
    try:
        for proc in procs:
            assert "ready" in await proc.read(within=60)
        async with Runtime(compose(load_settings())) as runtime:
            await _budget(runtime, procs, limited, budgeted)
            await _run_limit_and_kill9(runtime, procs, limited, workers)
    finally:
        for proc in procs:
            proc.stop()


async def _budget(runtime: Runtime, procs: list[Proc], limited: AgentDir, budgeted: AgentDir) -> None:
    # 8 runs in two processes each make one model call, held in the model: the budget admits two
    limited.block("model-1")
    started = _started(*await asyncio.gather(*(proc.start(budgeted, 4, "ticks=0") for proc in procs)))
    assert len(started) == 8

    seen: dict[str, Any] = {}

    async def settled() -> list[Any] | None:
        records = [await runtime.get_run(run_id) for run_id in started]
        seen.update(ended=sum(r.done for r in records), in_the_model=limited.calls()["model:1"])
        return records if seen == {"ended": 6, "in_the_model": 2} else None

    records = await _until(settled, "six runs refused and two in the model", seen)
    for record in records:
        if record.done:
            assert (record.status, record.stop_reason) == ("failed", "budget"), record
            assert f"agent:{budgeted.path.name} tokens/day = {TOKENS_PER_DAY}" in (record.error or "")
    limited.unblock("model-1")
    for run_id in started:
        async with asyncio.timeout(120):
            await runtime.wait(run_id)
    assert sorted(r.status for r in await asyncio.gather(*map(runtime.get_run, started))) == (
        ["completed"] * 2 + ["failed"] * 6
    )
    assert limited.calls()["model:1"] == 2, "a refused call reached the model"


async def _run_limit_and_kill9(
    runtime: Runtime, procs: list[Proc], limited: AgentDir, workers: Workers
) -> None:
    # 20 starts in two processes: exactly 3 start; each runs until its tool is let go
    limited.block("tool-1")
    answers = await asyncio.gather(*(proc.start(limited, 10, "ticks=1") for proc in procs))
    held = _started(*answers)
    assert len(held) == CONCURRENT_RUNS, answers
    for answer in answers:
        for message in answer["refused"]:
            assert f"agent:{limited.path.name} concurrent runs = {CONCURRENT_RUNS}" in message

    seen: dict[str, Any] = {}

    async def in_tool() -> bool:
        seen["in_tools"] = sum(count for name, count in limited.calls().items() if name.startswith("tool:"))
        return seen["in_tools"] == len(held)

    await _until(in_tool, "every run reached its tool", seen)
    # kill -9 the process holding the most runs: they keep their slots for a lease while nobody runs them
    victim, survivor = sorted(range(2), key=lambda i: -len(answers[i]["started"]))
    procs[victim].kill9()
    assert (await procs[survivor].start(limited, 5, "ticks=1"))["started"] == []
    # a worker recovers the dead process's runs; once every run has ended, three start again
    workers.start()
    limited.unblock("tool-1")
    for run_id in held:
        async with asyncio.timeout(120):
            assert (await runtime.wait(run_id)).status == "completed", run_id
    # held in their tool again: a run that ended before the last of the ten was admitted would free
    # its slot for a fourth (the starts are concurrent, not instant)
    limited.block("tool-1")
    again = await procs[survivor].start(limited, 10, "ticks=1")
    assert len(again["started"]) == CONCURRENT_RUNS, again
    limited.unblock("tool-1")
    for run_id in again["started"]:
        async with asyncio.timeout(120):
            assert (await runtime.wait(run_id)).status == "completed"

"""Durable runs (issue 5): what durability costs, measured next to baselines in the same run.

An *iteration* is one agent turn: an instant model step plus a tool step (the
built-in calculator). Measured, each against a baseline run side by side:

1. Durable overhead per iteration on SQLite: the whole Shopfloor runtime (DBOS
   steps, run store, events) vs the agent loop in memory, vs a hand-written
   SQLite INSERT per step (WAL + synchronous=FULL: the durable floor), vs bare
   DBOS steps, vs LangGraph + SqliteSaver (sync durability) when installed.
2. Bytes stored per iteration across all of Shopfloor's stores vs LangGraph's checkpoints.
3. Orchestration share of wall time with 100 ms model calls, beside the same share of the agent
   loop in memory, the hand-written floor, bare DBOS and LangGraph + SqliteSaver doing the same
   20 iterations, and of Shopfloor with ``durability = "batched"``: what the machine costs after
   idling through a model call (cold caches, a parked vCPU) is in every row, not only ours.
4. The same per-iteration overhead on PostgreSQL (when reachable).
5. Memory and threads per run waiting for approval (``--waiting``, default 1000).
6. Time to resume 100 in-flight runs after kill -9 of their worker vs running them fresh.

Per-iteration numbers are the slope between an N-iteration and a 1-iteration run,
so fixed costs (loading the spec, starting the workflow) cancel out.

The issue's absolute target (<= 1.8 ms an iteration) was set where a synchronous
commit cost 0.12 ms and stock DBOS with WAL + FULL took 1.73 ms: it asks for Shopfloor
at the cost of stock DBOS steps, nothing more. This VM's commit cost swings from 0.3
to 0.9 ms within an hour, so compare the rows measured side by side: "Shopfloor vs
stock DBOS steps alone" is the target's ratio (<= 1.04).

Run: ``.venv/bin/python -m benchmarks.bench_runtime [--iterations N] [--waiting N] [--resume N] [--skip-pg]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from operator import add
from pathlib import Path
from typing import Annotated, Any, TypedDict

import sqlalchemy as sa
from dbos import DBOS, SetWorkflowID

from shopfloor.agent import InMemoryStepRunner, build_agent
from shopfloor.config import Settings, load_settings
from shopfloor.models import ModelRequest
from shopfloor.runtime import RunRecord, Runtime, compose
from shopfloor.runtime._dbos_internals import restore_step_bookkeeping
from shopfloor.spec import load_spec, spec_resolvers
from shopfloor.tools import ToolContext

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TOOL_CALL = json.dumps({"tool": "calculator", "args": {"expression": "17*23"}})
SPEC = """\
name: bench
model: function:benchmarks.bench_runtime:instant_model
decision: one_shot
tools:
  - name: calculator
    source: builtin:calculator
  - name: gate
    source: benchmarks.bench_runtime:gate
  - name: transfer
    source: benchmarks.bench_runtime:transfer
    requires_approval: true
limits:
  max_steps: {steps}
  max_tokens: 1000000000
  wall_time: 100000
"""


# The agent's model and tools (referenced from the spec above) ------------------------------------
_calls = itertools.count()


def _tool_call() -> str:
    # Arguments differ on every call: the loop refuses a call identical to the previous one.
    return json.dumps({"tool": "calculator", "args": {"expression": f"17*{next(_calls)}"}})


def instant_model(request: ModelRequest) -> str:
    """Always calls the calculator: the run ends on its step limit after exactly max_steps iterations."""
    return _tool_call()


#: seconds spent inside the 100 ms model calls (row 3): a loaded VM oversleeps, and that is the
#: model's time, not orchestration
_model_seconds = [0.0]
#: row 3: wall and calling-thread CPU seconds from the end of each model call to the start of the next
#: (what the orchestration does between two calls), and the last call's end
_gaps: list[tuple[float, float]] = []
_last_end: list[tuple[float, float] | None] = [None]


def _model_started() -> float:
    start, cpu = time.perf_counter(), time.thread_time()
    last = _last_end[0]
    if last is not None:
        _gaps.append((start - last[0], cpu - last[1]))
    return start


def _model_ended(start: float) -> None:
    end = time.perf_counter()
    _model_seconds[0] += end - start
    _last_end[0] = (end, time.thread_time())


async def _model_call(seconds: float) -> None:
    start = _model_started()
    await asyncio.sleep(seconds)
    _model_ended(start)


async def slow_model(request: ModelRequest) -> str:
    await _model_call(0.1)
    return _tool_call()


def approval_model(request: ModelRequest) -> str:
    return json.dumps({"tool": "transfer", "args": {"amount": 1}})


def gated_model(request: ModelRequest) -> str:
    if any(m.role == "assistant" for m in request.messages):
        return json.dumps({"tool": "final_answer", "args": {"answer": "done"}})
    return json.dumps({"tool": "gate", "args": {}})


async def gate(ctx: ToolContext) -> str:
    """Waits while the file named by SHOPFLOOR_BENCH_GATE exists."""
    gate_file = os.environ["SHOPFLOOR_BENCH_GATE"]
    await _until(lambda: _async(not os.path.exists(gate_file)), 0.02)
    return "open"


def transfer(amount: int) -> str:
    """Move money."""
    return f"moved {amount}"


# The LangGraph baseline's graph: the same two steps per iteration ---------------------------------
class State(TypedDict):
    messages: Annotated[list[dict[str, Any]], add]
    n: int
    limit: int


def model_node(state: State) -> dict[str, Any]:
    return {"messages": [{"role": "assistant", "content": TOOL_CALL}], "n": state["n"] + 1}


def slow_model_node(state: State) -> dict[str, Any]:
    start = _model_started()
    time.sleep(0.1)  # LangGraph's graph runs synchronously: its model call blocks as it would
    _model_ended(start)
    return model_node(state)


def tool_node(state: State) -> dict[str, Any]:
    return {"messages": [{"role": "tool", "content": "391"}]}


# Helpers ------------------------------------------------------------------------------------------
async def _async(value: bool) -> bool:
    return value


async def _until(predicate: Callable[[], Awaitable[bool]], interval: float) -> None:
    """Poll: what is awaited changes in another process (a file, a database row)."""
    while True:
        if await predicate():
            return
        await asyncio.sleep(interval)


def _agent(root: Path, steps: int) -> Path:
    path = root / f"agent-{steps}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "agent.yaml").write_text(SPEC.format(steps=steps))
    return path


def _settings(
    home: Path,
    db_url: str | None = None,
    recorder: str = "lean",
    durability: str = "sync",
    *,
    python_gc: bool = False,
) -> Settings:
    """``python_gc``: the interpreter's own garbage collector settings (``gc_threshold = 0``, nothing
    frozen), the baseline of ``runtime/_gc.py``."""
    env = {
        "SHOPFLOOR_HOME": str(home),
        "SHOPFLOOR_RUNTIME__POLL_INTERVAL": "0.05",
        "SHOPFLOOR_RUNTIME__STEP_RECORDER": recorder,
        "SHOPFLOOR_RUNTIME__DURABILITY": durability,
    }
    if python_gc:
        env |= {"SHOPFLOOR_RUNTIME__GC_THRESHOLD": "0", "SHOPFLOOR_RUNTIME__GC_FREEZE": "false"}
    if db_url:
        env["SHOPFLOOR_DATABASE_URL"] = db_url
    return load_settings(env)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f} ms"


def _row(label: str, value: float, baseline: float | None = None, unit: Callable[[float], str] = _ms) -> None:
    ratio = f"   x{value / baseline:6.2f}" if baseline else ""
    print(f"  {label:<58} {unit(value)}{ratio}")


async def _durable_run(settings: Settings, agent: Path, model: str) -> tuple[float, dict[str, Any]]:
    async with Runtime(compose(settings)) as runtime:
        run_id = await runtime.start_run(agent, "bench", model=model)
        record = await runtime.wait(run_id)
    assert record.finished_at and record.started_at, record
    return record.finished_at - record.started_at, record.to_dict()


async def _slope(run: Callable[[int], Awaitable[float]], n: int) -> float:
    await run(1)
    one, many = await run(1), await run(n)
    return (many - one) / (n - 1)


async def _cpu_slope(run: Callable[[int], Awaitable[float]], n: int) -> tuple[float, float]:
    """Wall and CPU seconds per iteration (slope): CPU is this process's, every thread included."""
    await run(1)
    cpu0 = time.process_time()
    one = await run(1)
    cpu1 = time.process_time()
    many = await run(n)
    cpu2 = time.process_time()
    return (many - one) / (n - 1), ((cpu2 - cpu1) - (cpu1 - cpu0)) / (n - 1)


def _db_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


# 1, 2, 4: per-iteration cost and bytes --------------------------------------------------------------
async def in_memory(root: Path, n: int) -> float:
    settings = _settings(root / "mem")

    async def run(steps: int) -> float:
        loop = build_agent(
            load_spec(_agent(root, steps), resolvers=spec_resolvers()),
            settings,
            model="function:benchmarks.bench_runtime:instant_model",
        )
        start = time.perf_counter()
        await loop.run("bench", run_id="mem", runner=InMemoryStepRunner())
        return time.perf_counter() - start

    return await _slope(run, n)


async def durable(
    root: Path, n: int, db_url: str | None = None, recorder: str = "lean"
) -> tuple[float, float, float]:
    """Seconds per iteration (wall, CPU), and bytes stored per iteration (SQLite only, else 0)."""
    home = root / f"durable-{uuid.uuid4().hex[:6]}"
    settings = _settings(home, db_url, recorder)
    model = "function:benchmarks.bench_runtime:instant_model"
    wall, cpu = await _cpu_slope(lambda steps: _run_seconds(settings, _agent(root, steps), model), n)
    if db_url:
        return wall, cpu, 0.0
    db = home / "shopfloor.db"
    before = _db_bytes(db)
    await _durable_run(settings, _agent(root, n), model)
    return wall, cpu, (_db_bytes(db) - before) / n


async def _run_seconds(settings: Settings, agent: Path, model: str) -> float:
    return (await _durable_run(settings, agent, model))[0]


async def _bare_workflow(n: int, delay: float = 0.0) -> float:
    """Bare DBOS: the same number of steps, each returning a step-sized JSON (the "model" one
    after ``delay`` seconds), nothing else."""
    start = time.perf_counter()
    for i in range(2 * n):

        async def body(wait: float = delay if i % 2 == 0 else 0.0) -> dict[str, Any]:
            if wait:
                await _model_call(wait)
            return {"text": TOOL_CALL, "usage": {"input_tokens": 200, "output_tokens": 14}, "pad": "x" * 200}

        await DBOS.run_step_async({"name": f"step:{i}"}, body)
    return time.perf_counter() - start


_registered: list[Callable[..., Coroutine[Any, Any, float]]] = []


def _bare() -> Callable[..., Coroutine[Any, Any, float]]:
    """Registered on first use, in the benchmark's process only (workers import this module for the
    agent's model and tools, after their DBOS launched, when registering a workflow is refused)."""
    if not _registered:
        _registered.append(DBOS.workflow(name="bench.bare")(_bare_workflow))
    return _registered[0]


async def bare_dbos(root: Path, n: int, delay: float = 0.0, tag: str = "", *, stock: bool = False) -> float:
    """DBOS alone, configured as Shopfloor configures it (same database, WAL + FULL, JSON serializer,
    step bookkeeping on the event loop, the lean recorder), or ``stock``: DBOS's own step path with
    its thread hops. Seconds per iteration (slope), or with ``delay`` the wall time of ``n`` iterations."""
    workflow = _bare()
    settings = _settings(root / f"bare-{delay}-{tag}-{stock}", recorder="dbos" if stock else "lean")
    async with Runtime(compose(settings)) as runtime:
        await runtime.start_executor()
        if stock:
            restore_step_bookkeeping()

        async def run(steps: int) -> float:
            with SetWorkflowID(uuid.uuid4().hex):
                handle = await DBOS.start_workflow_async(workflow, steps, delay)
            return float(await handle.get_result())

        return await run(n) if delay else await _slope(run, n)


def _floor_db(root: Path) -> sqlite3.Connection:
    root.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(root / f"floor-{uuid.uuid4().hex[:6]}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE steps (run_id TEXT, step INTEGER, output TEXT, PRIMARY KEY (run_id, step))")
    return conn


_FLOOR_PAYLOAD = json.dumps(
    {"text": TOOL_CALL, "usage": {"input_tokens": 200, "output_tokens": 14}, "pad": "x" * 200}
)


def _floor_step(conn: sqlite3.Connection, i: int) -> None:
    conn.execute("BEGIN")
    conn.execute("INSERT INTO steps VALUES (?, ?, ?)", ("run", i, _FLOOR_PAYLOAD))
    conn.execute("COMMIT")


def insert_floor(root: Path, n: int) -> float:
    """The durable floor: one INSERT + commit per step, WAL + synchronous=FULL, step-sized JSON."""
    conn = _floor_db(root)
    start = time.perf_counter()
    for i in range(2 * n):
        _floor_step(conn, i)
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / n


async def slow_floor(root: Path, n: int) -> float:
    """The floor with the model's 100 ms before each model step: wall time of ``n`` iterations. What a
    commit costs after the machine idled through a model call (caches cold, the vCPU parked) is this
    disk's and this VM's, and it is in every durable runtime's share."""
    conn = _floor_db(root)
    start = time.perf_counter()
    for i in range(n):
        await _model_call(0.1)
        _floor_step(conn, 2 * i)
        _floor_step(conn, 2 * i + 1)
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def pg_floor(db_url: str, n: int) -> float:
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE floor_steps (run_id TEXT, step INTEGER, output TEXT)"))
    start = time.perf_counter()
    with engine.connect() as conn:
        for i in range(2 * n):
            conn.execute(
                sa.text("INSERT INTO floor_steps VALUES ('run', :i, :o)"), {"i": i, "o": TOOL_CALL * 8}
            )
            conn.commit()
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed / n


def langgraph(root: Path, n: int, *, slow: bool = False) -> tuple[float, float] | None:
    """LangGraph + SqliteSaver with sync durability on the same workload, if installed: seconds and
    bytes per iteration (slope); ``slow``: model calls of 100 ms, the wall time of ``n`` iterations."""
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END, START, StateGraph
    except ImportError:
        return None
    builder = StateGraph(State)
    builder.add_node("model", slow_model_node if slow else model_node)
    builder.add_node("tool", tool_node)
    builder.add_edge(START, "model")
    builder.add_edge("model", "tool")
    builder.add_conditional_edges("tool", lambda s: END if s["n"] >= s["limit"] else "model")
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"langgraph-{uuid.uuid4().hex[:6]}.db"
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    graph = builder.compile(checkpointer=SqliteSaver(conn))

    def run(steps: int, thread: str) -> float:
        start = time.perf_counter()
        graph.invoke(
            {"messages": [], "n": 0, "limit": steps},
            {
                "configurable": {"thread_id": thread},
                "recursion_limit": 10 * steps + 10,
            },
            durability="sync",
        )
        return time.perf_counter() - start

    run(1, "warm")
    if slow:
        _model_seconds[0] = 0.0
        wall = run(n, "slow")
        conn.close()
        return wall, 0.0
    one = run(1, "one")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.stat().st_size
    many = run(n, "many")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size - before
    conn.close()
    return (many - one) / (n - 1), size / n


# 3: orchestration share ------------------------------------------------------------------------------
async def orchestration_share(root: Path, n: int, durability: str = "sync") -> float:
    """Wall time of a durable run of ``n`` iterations whose model calls take 100 ms each."""
    model = "function:benchmarks.bench_runtime:slow_model"
    settings = _settings(root / f"slow-{durability}", durability=durability)
    wall, record = await _durable_run(settings, _agent(root, n), model)
    assert record["model_calls"] == n
    return wall


async def end_seen(root: Path, count: int) -> dict[str, float]:
    """Seconds from ``start_run`` to the ended record in the caller's hands, ``Runtime.wait`` against
    the loop it replaced (read the run store, sleep a poll interval), interleaved, default settings."""
    settings = load_settings({"SHOPFLOOR_HOME": str(root)})
    agent, model = _agent(root, 3), "function:benchmarks.bench_runtime:instant_model"

    async def polled(runtime: Runtime, run_id: str) -> RunRecord:
        while not (record := await runtime.get_run(run_id)).done:  # noqa: ASYNC110 (the baseline)
            await asyncio.sleep(settings.runtime.poll_interval)
        return record

    seconds: dict[str, list[float]] = {"woken": [], "polled": []}
    async with Runtime(compose(settings)) as runtime:
        await runtime.wait(await runtime.start_run(agent, "warm", model=model))
        for i in range(2 * count):
            key = "woken" if i % 2 == 0 else "polled"
            start = time.perf_counter()
            run_id = await runtime.start_run(agent, "bench", model=model)
            record = await (runtime.wait(run_id) if key == "woken" else polled(runtime, run_id))
            assert record.status == "failed" and record.stop_reason == "max_steps", record
            seconds[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in seconds.items()}


async def slow_langgraph(root: Path, n: int) -> float:
    measured = langgraph(root, n, slow=True)
    assert measured is not None
    return measured[0]


async def in_memory_wall(root: Path, n: int) -> float:
    model = "function:benchmarks.bench_runtime:slow_model"
    loop = build_agent(
        load_spec(_agent(root, n), resolvers=spec_resolvers()), _settings(root / "mem"), model=model
    )
    start = time.perf_counter()
    await loop.run("bench", run_id="mem", runner=InMemoryStepRunner())
    return time.perf_counter() - start


# 5: waiting runs -------------------------------------------------------------------------------------
def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def waiting_runs(root: Path, count: int) -> dict[str, float]:
    # The defaults: DBOS checks each waiting run for a decision once a second (SQLite).
    settings = load_settings({"SHOPFLOOR_HOME": str(root / "waiting")})
    agent = _agent(root, 5)
    model = "function:benchmarks.bench_runtime:approval_model"
    async with Runtime(compose(settings)) as runtime:
        warm = await runtime.start_run(agent, "warm", model=model)
        await _until(lambda: _status_is(runtime, warm, "waiting_approval"), 0.05)
        rss0, threads0 = _rss(), threading.active_count()
        start = time.perf_counter()
        for i in range(count):
            await runtime.start_run(agent, f"wait {i}", model=model)
        await _until(lambda: _at_least(runtime, "waiting_approval", count + 1), 0.2)
        started = time.perf_counter() - start
        await asyncio.sleep(2.0)
        cpu0 = time.process_time()
        await asyncio.sleep(5.0)
        cpu = (time.process_time() - cpu0) / 5.0
        rss1, threads1 = _rss(), threading.active_count()
    return {
        "per_run_bytes": (rss1 - rss0) / count,
        "threads_added": threads1 - threads0,
        "start_s": started,
        "idle_cpu": cpu,
    }


# 6: resume after kill -9 ------------------------------------------------------------------------------
def _worker(
    settings_env: dict[str, str], log: Path, executor_id: str, concurrency: int
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from shopfloor.cli import main; main()",
                "worker",
                "--concurrency",
                str(concurrency),
                "--executor-id",
                executor_id,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=settings_env,
            cwd=ROOT,
        )


async def _at_least(runtime: Runtime, status: str, count: int) -> bool:
    return len(await runtime.list_runs(status=status, limit=count + 1)) >= count


async def _status_is(runtime: Runtime, run_id: str, status: str) -> bool:
    return (await runtime.get_run(run_id)).status == status


async def resume(root: Path, count: int) -> tuple[float, float]:
    """Seconds from spawning a worker to ``count`` runs completed: fresh queue vs after kill -9 mid-run."""
    results = []
    for crash in (False, True):
        home = root / f"resume-{crash}"
        gate_file = root / f"gate-{crash}"
        env = {
            **os.environ,
            "SHOPFLOOR_HOME": str(home),
            "SHOPFLOOR_BENCH_GATE": str(gate_file),
            "PYTHONPATH": str(ROOT),
            "SHOPFLOOR_RUNTIME__POLL_INTERVAL": "0.05",
        }
        env.pop("SHOPFLOOR_DATABASE_URL", None)
        os.environ["SHOPFLOOR_BENCH_GATE"] = str(gate_file)
        settings = load_settings(env)
        agent = _agent(root, 5)
        async with Runtime(compose(settings)) as runtime:
            for i in range(count):
                await runtime.start_run(
                    agent, f"r{i}", model="function:benchmarks.bench_runtime:gated_model", detach=True
                )
            if crash:
                gate_file.touch()
                first = _worker(env, home / "worker.log", "bench-worker", count)
                await _until(lambda: _at_least(runtime, "running", count), 0.1)
                await asyncio.sleep(0.5)  # every run is inside its gated tool step now
                first.send_signal(signal.SIGKILL)
                first.wait()
                gate_file.unlink()
            start = time.perf_counter()
            worker = _worker(env, home / "worker.log", "bench-worker", count)
            await _until(lambda: _at_least(runtime, "completed", count), 0.05)
            results.append(time.perf_counter() - start)
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
    return results[0], results[1]


# 8: throughput -------------------------------------------------------------------------------------
async def throughput(
    root: Path, count: int, db_url: str | None, *, python_gc: bool = False
) -> tuple[float, float]:
    """Iterations per second of ``count`` runs of 10 iterations started at once in one executor,
    and CPU seconds of this process per iteration (``python_gc``: see ``_settings``).

    The runs are started together (started one after another, the first ended before the last began,
    and only ~10 overlapped), and their ends read by one poll of the run store for all of them (one per run
    would be 200 reads a poll interval, the benchmark's own load on the loop)."""
    if python_gc:
        gc.unfreeze()  # what an earlier runtime of this process froze
    settings = _settings(root / f"throughput-{uuid.uuid4().hex[:6]}", db_url, python_gc=python_gc)
    agent = _agent(root, 10)
    model = "function:benchmarks.bench_runtime:instant_model"
    async with Runtime(compose(settings)) as runtime:
        await runtime.start_executor()
        start, cpu = time.perf_counter(), time.process_time()
        run_ids = await asyncio.gather(
            *(runtime.start_run(agent, f"t{i}", model=model) for i in range(count))
        )
        records = await _all_ended(runtime, run_ids, settings.runtime.poll_interval)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert all(r.status == "completed" or r.stop_reason == "max_steps" for r in records), records[0]
    return 10 * count / elapsed, cpu / (10 * count)


async def _all_ended(runtime: Runtime, run_ids: list[str], interval: float) -> list[RunRecord]:
    """The records of ``run_ids`` once every one has ended, polled together."""
    ended: dict[str, RunRecord] = {}
    while len(ended) < len(run_ids):
        found = await runtime.get_runs([run_id for run_id in run_ids if run_id not in ended])
        ended |= {run_id: record for run_id, record in found.items() if record.done}
        if len(ended) < len(run_ids):
            await asyncio.sleep(interval)
    return [ended[run_id] for run_id in run_ids]


# main -----------------------------------------------------------------------------------------------
def _pg_database() -> str | None:
    try:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = f"sf_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return f"postgresql://postgres@127.0.0.1:5432/{name}"
    except Exception as exc:
        print(f"  (PostgreSQL not reachable: {type(exc).__name__}; skipped)")
        return None


def _drop(db_url: str) -> None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--resume", type=int, default=100)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--concurrent", type=int, default=200, help="runs at once for the throughput row")
    parser.add_argument("--lengths", default="50,200,1000", help="run lengths of the flatness rows")
    parser.add_argument(
        "--reps", type=int, default=3, help="repetitions of 1, 3, 7 and 8 (medians; this VM is noisy)"
    )
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8", help="the sections to run, e.g. 1,8")
    args = parser.parse_args()
    n, reps = args.iterations, args.reps
    only = {int(section) for section in args.only.split(",")}
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        root = Path(tmp)
        if 1 in only or 2 in only:
            await _per_iteration(root, n, reps)
        if 3 in only:
            await _orchestration(root, reps)
        if 4 in only and not args.skip_pg:
            await _postgres(root, n)
        if 5 in only:
            await _waiting(root, args.waiting)
        if 6 in only:
            await _resume(root, args.resume)
        if 7 in only:
            await _lengths(root, args.lengths, reps)
        if 8 in only:
            await _throughput(root, args.concurrent, reps, skip_pg=args.skip_pg)


async def _per_iteration(root: Path, n: int, reps: int) -> None:
    print(f"1. per agent iteration (model step + tool step), SQLite WAL + FULL, slope of {n} vs 1")
    print(f"   iterations, median of {reps} interleaved repetitions; wall ms, and CPU ms of this process")
    print("   (the VM is shared: compare the ratios, measured side by side, not absolute times)")
    keys = ("floor", "memory", "stock", "bare", "total", "total_cpu", "dbos", "dbos_cpu", "lang")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    stored = 0.0
    lang_bytes = 0.0
    for rep in range(reps):
        samples["floor"].append(insert_floor(root / f"rep{rep}", n))
        samples["memory"].append(await in_memory(root, n))
        samples["stock"].append(await bare_dbos(root, n, tag=str(rep), stock=True))
        samples["bare"].append(await bare_dbos(root, n, tag=str(rep)))
        total, total_cpu, stored = await durable(root, n)
        samples["total"].append(total)
        samples["total_cpu"].append(total_cpu)
        dbos_path, dbos_cpu, _ = await durable(root, n, recorder="dbos")
        samples["dbos"].append(dbos_path)
        samples["dbos_cpu"].append(dbos_cpu)
        lang = langgraph(root / f"rep{rep}", n)
        if lang is not None:
            samples["lang"].append(lang[0])
            lang_bytes = lang[1]
    med = {k: statistics.median(v) if v else 0.0 for k, v in samples.items()}
    floor, memory, stock, bare, total = (med[k] for k in ("floor", "memory", "stock", "bare", "total"))
    _row("hand-written INSERT per step, WAL + FULL (the floor)", floor)
    _row("agent loop in memory (no durability)", memory)
    _row("stock DBOS steps (its own step path, 3 thread hops), vs the floor", stock, floor)
    _row("DBOS steps as Shopfloor runs them (lean recorder), vs the floor", bare, floor)
    _row("Shopfloor run, DBOS's own step path (step_recorder=dbos)", med["dbos"], floor)
    _row("  its CPU per iteration", med["dbos_cpu"])
    _row("Shopfloor durable run (lean recorder, all stores), vs the floor", total, floor)
    _row("  its CPU per iteration, vs DBOS's own step path", med["total_cpu"], med["dbos_cpu"])
    _row("Shopfloor lean vs Shopfloor on DBOS's own step path", total, med["dbos"])
    _row("Shopfloor durable run, vs stock DBOS steps alone", total, stock)
    if samples["lang"]:
        _row("LangGraph + SqliteSaver (sync durability), vs the floor", med["lang"], floor)
        _row("Shopfloor durable run vs LangGraph (target <= 0.5)", total, med["lang"])
    lang = (med["lang"], lang_bytes) if samples["lang"] else None
    print("2. bytes stored per iteration (SQLite file growth after checkpoint)")
    _row("Shopfloor (DBOS steps + run store + events)", stored, None, lambda b: f"{b / 1024:8.2f} KB")
    if lang is not None:
        _row(
            "LangGraph checkpoints; ratio Shopfloor/LangGraph below",
            lang[1],
            None,
            lambda b: f"{b / 1024:8.2f} KB",
        )
        print(f"  {'ratio':<58} {stored / lang[1]:8.3f}")


async def _orchestration(root: Path, reps: int) -> None:
    print("3. orchestration share of wall time, model calls of 100 ms, 20 iterations: wall,")
    print("   share counting the nominal 2.0 s of model time, share counting the time measured")
    print("   inside the model calls (what a loaded VM oversleeps is the model's, not ours); between two")
    print("   model calls (medians): wall, and CPU of the thread that calls the model (the event loop's)")
    measures: dict[str, Callable[[int], Awaitable[float]]] = {
        "floor": lambda rep: slow_floor(root / f"rep{rep}", 20),
        "wall": lambda rep: orchestration_share(root / f"rep{rep}", 20),
        "batched": lambda rep: orchestration_share(root / f"rep{rep}", 20, "batched"),
        "bare": lambda rep: bare_dbos(root, 20, delay=0.1, tag=str(rep)),
        "mem": lambda rep: in_memory_wall(root, 20),
    }
    if langgraph(root / "probe", 2) is not None:
        measures["lang"] = lambda rep: slow_langgraph(root / f"rep{rep}", 20)
    walls: dict[str, list[tuple[float, float]]] = {key: [] for key in measures}
    gaps: dict[str, list[tuple[float, float]]] = {key: [] for key in measures}
    for rep in range(reps):
        for key, measure in measures.items():
            _model_seconds[0], _last_end[0] = 0.0, None
            _gaps.clear()
            elapsed = await measure(rep)
            walls[key].append((elapsed, _model_seconds[0]))
            gaps[key].extend(_gaps)
    for label, key in (
        ("agent loop in memory", "mem"),
        ("hand-written INSERT + commit per step (the floor)", "floor"),
        ("bare DBOS, the same steps", "bare"),
        ("LangGraph + SqliteSaver (sync durability)", "lang"),
        ("Shopfloor durable run (target < 1%)", "wall"),
        ('Shopfloor durable run, durability = "batched"', "batched"),
    ):
        if not walls.get(key):
            continue
        value = statistics.median(w for w, _ in walls[key])
        share = statistics.median(100 * (w - m) / w for w, m in walls[key])
        gap = statistics.median(w for w, _ in gaps[key]) * 1000
        cpu = statistics.median(c for _, c in gaps[key]) * 1000
        print(
            f"  {label:<58} {value:8.3f} s   {100 * (value - 2.0) / value:6.2f} %   {share:6.2f} %"
            f"   {gap:6.3f} ms  {cpu:6.3f} ms"
        )
    seen = await end_seen(root / "seen", 20)
    print("   a 3-iteration run in this process, from start_run to its result in the caller (default")
    print("   poll interval, 0.2 s), median of 20: Runtime.wait, vs reading the run store each poll interval")
    _row("run store read each poll interval (how wait learnt of the end)", seen["polled"])
    _row("Runtime.wait (woken by the run's own end), vs polling", seen["woken"], seen["polled"])


async def _postgres(root: Path, n: int) -> None:
    pg = _pg_database()
    if pg is None:
        return
    print(f"4. per agent iteration on PostgreSQL, slope of {n} vs 1 (wall, CPU of this process)")
    try:
        pg_base = pg_floor(pg, n)
        pg_total, pg_cpu, _ = await durable(root, n, pg)
        pg_dbos, pg_dbos_cpu, _ = await durable(root, n, pg, recorder="dbos")
        _row("hand-written INSERT + commit per step (the floor)", pg_base)
        _row("Shopfloor run, DBOS's own step path, vs the floor", pg_dbos, pg_base)
        _row("  its CPU per iteration", pg_dbos_cpu)
        _row("Shopfloor run, lean recorder, vs the floor", pg_total, pg_base)
        _row("  its CPU per iteration, vs DBOS's own step path", pg_cpu, pg_dbos_cpu)
        _row("Shopfloor lean vs DBOS's own step path (target <= 0.5)", pg_total, pg_dbos)
    finally:
        _drop(pg)


async def _waiting(root: Path, count: int) -> None:
    print(f"5. {count} runs waiting for approval (SQLite, one process)")
    waited = await waiting_runs(root, count)
    print(f"  {'memory per waiting run':<58} {waited['per_run_bytes'] / 1024:8.1f} KB")
    print(f"  {'threads added by the waiting runs':<58} {waited['threads_added']:8d}")
    print(f"  {'time to start them all':<58} {waited['start_s']:8.2f} s")
    print(f"  {'CPU while they wait (DBOS polls SQLite)':<58} {100 * waited['idle_cpu']:8.1f} %")


async def _resume(root: Path, count: int) -> None:
    print(f"6. {count} in-flight runs: worker start to all completed (SQLite)")
    fresh, recovered = await resume(root, count)
    _row("fresh queue (baseline)", fresh, None, lambda s: f"{s:8.2f} s")
    _row(
        "after kill -9 mid-step, restarted worker (same executor id)",
        recovered,
        fresh,
        lambda s: f"{s:8.2f} s",
    )


async def _lengths(root: Path, lengths_arg: str, reps: int) -> None:
    print("7. per-iteration cost against the run's length (SQLite, lean; flat = within 10 %),")
    print(f"   median of {reps} interleaved repetitions")
    lengths = [int(length) for length in lengths_arg.split(",")]
    # Wall time follows this disk's fsync (it swings 2-10x within minutes here); CPU follows ours.
    samples: dict[int, list[tuple[float, float]]] = {length: [] for length in lengths}
    for rep in range(reps):
        for length in lengths if rep % 2 == 0 else lengths[::-1]:
            samples[length].append((await durable(root, length))[:2])
    per_length = {
        length: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for length, runs in samples.items()
    }
    for length, (wall_s, cpu_s) in per_length.items():
        _row(f"{length} iterations, vs {lengths[0]}", wall_s, per_length[lengths[0]][0])
        _row("  its CPU per iteration", cpu_s, per_length[lengths[0]][1])


async def _throughput(root: Path, count: int, reps: int, *, skip_pg: bool) -> None:
    print(f"8. throughput: {count} concurrent runs of 10 iterations in one process, median of {reps}")
    print("   (each interleaved with the same under the interpreter's own garbage collector settings)")
    for label, pg in (("SQLite", False), ("PostgreSQL", not skip_pg)):
        if label == "PostgreSQL" and not pg:
            continue
        sides = (False, True)
        rates: dict[bool, list[float]] = {side: [] for side in sides}
        cpus: dict[bool, list[float]] = {side: [] for side in sides}
        for rep in range(reps):
            for python_gc in sides if rep % 2 == 0 else sides[::-1]:
                url = _pg_database() if pg else None
                if pg and url is None:
                    return
                try:
                    rate, cpu = await throughput(root, count, url, python_gc=python_gc)
                finally:
                    if url:
                        _drop(url)
                rates[python_gc].append(rate)
                cpus[python_gc].append(cpu)
        tuned = statistics.median(rates[False]), statistics.median(cpus[False])
        _row(f"{label}: iterations per second (target >= 1,000)", tuned[0], None, _per_s)
        _row("  CPU of this process per iteration", tuned[1])
        if rates[True]:
            python = statistics.median(rates[True]), statistics.median(cpus[True])
            _row("  Python's GC settings (gc_threshold = 0, nothing frozen)", python[0], None, _per_s)
            _row("  its CPU per iteration; ratio tuned / Python's", tuned[1], python[1])
            print(f"  {'  iterations per second, tuned / Python GC':<58} {tuned[0] / python[0]:8.2f}")


def _per_s(rate: float) -> str:
    return f"{rate:8.0f} /s"


if __name__ == "__main__":
    # One module object: the agent's model and tools are imported as benchmarks.bench_runtime.
    from benchmarks import bench_runtime

    asyncio.run(bench_runtime.main())

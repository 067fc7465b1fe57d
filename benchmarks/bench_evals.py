"""The evaluation harness (issue 18): its overhead per item, and how it scales with --concurrency.

The items call an OpenAI-compatible upstream on loopback, served by a separate process so that its CPU
is not counted here, that answers at once (``--latency-ms 0``: the issue's instant model, where the
harness's share is largest) or after a fixed, realistic time per call (half before the first token,
half spread over the streamed chunks). Each item is one calculator call and an answer: two model
calls, two durable steps, the workspace commits.

1. Overhead per item: the same runs, each in a fresh workspace seeded like the agent's
   (``Services.with_own_workspaces``), one after the other, three ways:
   - direct, start_run + wait: through one open ``Runtime``, as a script would, waiting by polling
     the run store every ``--poll`` seconds;
   - direct, launch: ``Runtime.launch`` from the spec loaded once, its end awaited from its workflow
     (the cheapest way the runtime offers, and what the harness uses: the strict baseline);
   - harness: an evaluation at concurrency 1 (a durable run per item, scored, its result stored).
   Blocks of ``--block`` items go in the orders (A B H), (H B A), ... so that drift in the machine's
   load falls on every side alike. Per item: process CPU time (``time.process_time``, every thread of
   this process) and wall time; for the harness an item is the interval between two progress
   callbacks. The first item of every block is left out of the per-item figures (it carries the
   block's fixed costs: launching the executor, creating the evaluation). Reported: the medians, the
   overhead (harness - direct) / direct with a 95% bootstrap interval; then every block whole, its
   fixed costs and the results the harness writes after its last item included, as CPU and wall per
   item (sum of the blocks / items). Target: <= 5% over direct (launch).
   Then, as a cross-check without the runs' noise: the harness's own work per item once the run has
   ended (the case read from the run's record and events, the scorers, the result written in a batch),
   timed alone on the direct side's runs, as a share of a direct item.
2. Throughput against the same upstream: items per second at --concurrency 8 vs 1.

Run: ``nice -n 10 .venv/bin/python -m benchmarks.bench_evals [--items 60] [--block 11] [--latency-ms 0]
[--poll 0.01]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shopfloor.config import Settings, load_settings
from shopfloor.evals import (
    EvalItemRow,
    EvalOptions,
    Harness,
    Item,
    ItemResult,
    ResultWriter,
    build_case,
    build_scorers,
    load_suite,
    score_case,
)
from shopfloor.runtime import Runtime, Services, compose

SPEC = """\
name: bench-eval
model: {model}
decision: one_shot
tools:
  - name: calculator
    source: builtin:calculator
limits:
  max_steps: 4
"""
SUITE = """\
name: bench
agent: agent
dataset: DATASET
scorers:
  - {type: contains}
  - {type: trajectory, tools: [calculator]}
"""
CALL = json.dumps({"tool": "calculator", "args": {"expression": "17*23"}})
ANSWER = json.dumps({"tool": "final_answer", "args": {"answer": "391"}})
CHUNKS = 8


# the upstream (a process of its own) ------------------------------------------------------------
def _chunk(payload: dict[str, Any]) -> bytes:
    data = b"data: " + json.dumps(payload).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _answer(writer: asyncio.StreamWriter, body: dict[str, Any], latency: float) -> None:
    """A streamed chat completion: half the latency before the first token, half over the chunks."""
    answered = any(m.get("role") == "assistant" for m in body.get("messages", []))
    content = ANSWER if answered else CALL
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    await asyncio.sleep(latency / 2)
    size = -(-len(content) // CHUNKS)
    base = {"id": "c", "object": "chat.completion.chunk", "model": body.get("model", "m")}
    for n in range(0, len(content), size):
        delta = {"index": 0, "delta": {"content": content[n : n + size]}, "finish_reason": None}
        writer.write(_chunk({**base, "choices": [delta]}))
        await writer.drain()
        await asyncio.sleep(latency / 2 / CHUNKS)
    done = {"index": 0, "delta": {}, "finish_reason": "stop"}
    usage = {"prompt_tokens": 10, "completion_tokens": CHUNKS, "total_tokens": 10 + CHUNKS}
    writer.write(_chunk({**base, "choices": [done], "usage": usage}))
    data = b"data: [DONE]\n\n"
    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
    await writer.drain()


async def _serve_upstream(latency: float) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                body = json.loads(await reader.readexactly(length)) if length else {}
                await _answer(writer, body, latency)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    # The parent closes our stdin when it is done: stop then, never outlive it.
    await asyncio.to_thread(sys.stdin.read)
    server.close()


def start_upstream(latency: float) -> tuple[subprocess.Popen[str], int]:
    """The upstream on 127.0.0.1 in a process of its own; returns the process and its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_evals", "--serve-upstream", str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        process.kill()
        raise RuntimeError(f"the upstream did not start (it said {line!r})")
    return process, int(line)


# the three sides --------------------------------------------------------------------------------
@dataclass
class Samples:
    """Per item: process CPU seconds and wall seconds; per block, whole: the same, and its items."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    blocks: list[tuple[float, float, int]] = field(default_factory=list)

    def add(self, cpu: float, wall: float) -> None:
        self.cpu.append(cpu)
        self.wall.append(wall)

    def per_item(self, what: str) -> float:
        """The blocks' whole time (CPU: index 0, wall: 1) over their items."""
        index = 0 if what == "cpu" else 1
        return sum(block[index] for block in self.blocks) / sum(block[2] for block in self.blocks)


class _Clock:
    def __init__(self) -> None:
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def lap(self) -> tuple[float, float]:
        return time.process_time() - self.cpu, time.perf_counter() - self.wall


def _setup(root: Path, model: str, items: int) -> Path:
    """The agent and a suite of ``items`` items; returns the suite's path."""
    (root / "agent").mkdir(parents=True, exist_ok=True)
    (root / "agent" / "agent.yaml").write_text(SPEC.format(model=model))
    lines = [
        json.dumps({"id": f"q{n}", "input": f"What is 17*23? ({n})", "expected": "391"}) for n in range(items)
    ]
    (root / "items.jsonl").write_text("\n".join(lines) + "\n")
    (root / "suite.yaml").write_text(SUITE.replace("DATASET", "items.jsonl"))
    return root / "suite.yaml"


def _settings(home: Path, **env: str) -> Settings:
    return load_settings({"SHOPFLOOR_HOME": str(home), "SHOPFLOOR_RUNTIME__POLL_INTERVAL": "0.01", **env})


async def _direct(
    services: Services, agent: Path, items: int, into: Samples | None, *, launch: bool
) -> list[str]:
    """``items`` runs one after the other, each in a fresh workspace, as the harness runs an item:
    ``start_run`` + ``wait`` or (``launch``) ``Runtime.launch`` + its end; every item but the first
    goes into ``into``, the block whole too. Returns the runs' ids."""
    run_ids = []
    block = _Clock()
    own = services.with_own_workspaces()
    async with Runtime(own) as runtime:
        await runtime.start_executor()
        loaded = await asyncio.to_thread(own.load_spec, agent) if launch else None
        for n in range(items):
            clock = _Clock()
            task = f"What is 17*23? ({n})"
            if loaded is not None:
                launched = await runtime.launch(loaded, task)
                await launched.ended()
                record = await runtime.get_run(launched.run_id)
            else:
                record = await runtime.wait(await runtime.start_run(agent, task))
            assert record.status == "completed", record.error
            run_ids.append(record.run_id)
            if into is not None and n > 0:
                into.add(*clock.lap())
    if into is not None:
        into.blocks.append((*block.lap(), items))
    return run_ids


async def _harness(services: Services, suite_path: Path, concurrency: int, into: Samples | None) -> float:
    """One evaluation of the suite; every item but the first goes into ``into``, the evaluation
    whole too (created, executed, its results written, summarised); returns its wall time."""
    marks: list[tuple[float, float]] = []

    def progress(row: EvalItemRow, done: int, total: int) -> None:
        marks.append((time.process_time(), time.perf_counter()))

    block = _Clock()
    harness = Harness(services)
    try:
        suite, _ = load_suite(suite_path, harness.env(suite_path.parent))
        record = await harness.create(suite, EvalOptions(concurrency=concurrency))
        started = time.perf_counter()
        record = await harness.execute(record.eval_id, progress=progress)
        elapsed = time.perf_counter() - started
        assert record.summary is not None and not record.summary["broken"], record.summary
    finally:
        harness.close()
    if into is not None:
        for (cpu0, wall0), (cpu1, wall1) in itertools.pairwise(marks):
            into.add(cpu1 - cpu0, wall1 - wall0)
        into.blocks.append((*block.lap(), len(marks)))
    return elapsed


async def _own_work(services: Services, suite_path: Path, run_ids: Sequence[str], into: Samples) -> None:
    """The harness's own work for an item once its run has ended, alone: what ``Harness.execute``
    does per item besides launching and awaiting the run (the case read from the run's record and
    events, the scorers, the result queued and written in a batch), timed on runs the direct side
    made: the whole loop and its last write over the items. A cross-check of row 1 without the
    runs' noise."""
    harness = Harness(services)
    try:
        suite, _ = load_suite(suite_path, harness.env(suite_path.parent))
        record = await harness.create(suite)
        rows = await asyncio.to_thread(harness.store.items, record.eval_id)
        scorers = build_scorers(record.config["scorers"], harness.env(suite_path.parent))
        evals = services.settings.evals
        async with Runtime(harness.services) as runtime:
            for start in range(0, len(run_ids), len(rows)):
                chunk = run_ids[start : start + len(rows)]
                writer = ResultWriter(harness.store, every=evals.write_every, batch=evals.write_batch)
                clock = _Clock()
                for row, run_id in zip(rows, chunk, strict=False):
                    item = Item(**{**row.item, "tags": tuple(row.item.get("tags") or ())})
                    case = await build_case(runtime, item, run_id)
                    metrics, problems = await score_case(case, scorers)
                    assert not problems and case.status == "completed", (problems, case)
                    writer.add(
                        ItemResult(
                            eval_id=row.eval_id,
                            item_id=row.item_id,
                            repeat=row.repeat,
                            status="done",
                            reason=None,
                            run_id=run_id,
                            case=case.to_dict(),
                            metrics=[m.to_dict() for m in metrics],
                            finished_at=time.time(),
                        )
                    )
                await writer.close()
                cpu, wall = clock.lap()
                into.add(cpu / len(chunk), wall / len(chunk))
    finally:
        harness.close()


# statistics -------------------------------------------------------------------------------------
def overhead(
    harness: Sequence[float], direct: Sequence[float], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(harness - direct) / direct of the medians, with a 95% percentile bootstrap interval (each
    side resampled on its own: the items of the two sides are different runs)."""
    rng = random.Random(seed)
    point = statistics.median(harness) / statistics.median(direct) - 1
    ratios = sorted(
        statistics.median(rng.choices(harness, k=len(harness)))
        / statistics.median(rng.choices(direct, k=len(direct)))
        - 1
        for _ in range(resamples)
    )
    return point, ratios[int(0.025 * resamples)], ratios[min(resamples - 1, int(0.975 * resamples))]


def _row(label: str, value: str, ratio: float | None = None) -> None:
    print(f"  {label:<62} {value}" + (f"   x{ratio:6.3f}" if ratio is not None else ""), flush=True)


def _report(polled: Samples, launched: Samples, harness: Samples) -> None:
    for what, unit in (("cpu", "ms CPU"), ("wall", "ms wall")):
        h = getattr(harness, what)
        _row(f"harness, median per item ({what})", f"{statistics.median(h) * 1000:8.2f} {unit}")
        for name, side in (("direct, launch", launched), ("direct, start_run + wait", polled)):
            d = getattr(side, what)
            point, low, high = overhead(h, d)
            _row(f"{name}, median per item ({what})", f"{statistics.median(d) * 1000:8.2f} {unit}")
            _row(
                "  overhead vs it: (harness - direct) / direct",
                f"{point * 100:+7.2f} %  (95% CI {low * 100:+.2f} .. {high * 100:+.2f} %)",
            )
    for what, unit in (("cpu", "ms CPU"), ("wall", "ms wall")):
        h = harness.per_item(what)
        _row(f"harness, whole blocks per item ({what})", f"{h * 1000:8.2f} {unit}")
        for name, side in (("direct, launch", launched), ("direct, start_run + wait", polled)):
            d = side.per_item(what)
            change = f"{(h / d - 1) * 100:+7.2f} %"
            _row(f"{name}, whole blocks per item ({what})", f"{d * 1000:8.2f} {unit}   harness {change}")


async def main(items: int, block: int, latency: float, reps: int, poll: float) -> None:
    if block < 2:
        raise SystemExit("--block must be at least 2 (the first item of a block is left out)")
    blocks = max(2, -(-items // (block - 1)))
    blocks += blocks % 2  # each order and its reverse as often
    upstream, port = start_upstream(latency)
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            root = Path(tmp)
            settings = _settings(
                root / "home",
                OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
                OPENAI_API_KEY="bench",
                SHOPFLOOR_RUNTIME__POLL_INTERVAL=str(poll),
            )
            # One composition for every side, as one process has (engines, telemetry, registries).
            services = compose(settings)
            try:
                suite = _setup(root / "upstream", "openai:bench", block)
                agent = suite.parent / "agent"
                await _direct(services, agent, 2, None, launch=False)  # warm: DBOS tables, imports
                await _direct(services, agent, 2, None, launch=True)
                await _harness(services, suite, 1, None)
                polled, launched, harness, own = Samples(), Samples(), Samples(), Samples()
                run_ids: list[str] = []
                sides = {
                    "A": lambda: _direct(services, agent, block, polled, launch=False),
                    "B": lambda: _direct(services, agent, block, launched, launch=True),
                    "H": lambda: _harness(services, suite, 1, harness),
                }
                for n in range(blocks):
                    for side in "ABH" if n % 2 == 0 else "HBA":
                        made = await sides[side]()
                        if side == "B":
                            run_ids += made  # type: ignore[arg-type]
                await _own_work(services, suite, run_ids, own)
                print(
                    f"1. per item, upstream {latency * 1000:.0f} ms per call (streamed), 2 calls per item, "
                    f"polling every {poll * 1000:.0f} ms; {len(harness.cpu)} items a side "
                    f"in {blocks} interleaved blocks of {block}"
                )
                _report(polled, launched, harness)
                for what in ("cpu", "wall"):
                    mine = statistics.median(getattr(own, what))
                    part = mine / statistics.median(getattr(launched, what))
                    _row(
                        f"harness's own work per item, alone ({what}), / direct item",
                        f"{mine * 1000:8.2f} ms  = {part * 100:5.2f} %",
                    )

                rates = {}
                for concurrency in (1, 8):
                    best = min([await _harness(services, suite, concurrency, None) for _ in range(reps)])
                    rates[concurrency] = block / best
                print(f"2. throughput, same upstream, {block} items, best of {reps}")
                _row("--concurrency 1", f"{rates[1]:8.1f} items/s")
                _row("--concurrency 8", f"{rates[8]:8.1f} items/s", rates[8] / rates[1])
            finally:
                services.close()
    finally:
        assert upstream.stdin is not None
        upstream.stdin.close()
        upstream.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60, help="measured items a side (at least)")
    parser.add_argument("--block", type=int, default=11, help="items a block (the first left out)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the upstream's time per call (0: an instant model)"
    )
    parser.add_argument("--reps", type=int, default=2, help="repeats of the throughput row")
    parser.add_argument(
        "--poll", type=float, default=0.01, help="the runtime's poll interval, s (its default: 0.2)"
    )
    parser.add_argument("--serve-upstream", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream is not None:
        asyncio.run(_serve_upstream(args.serve_upstream))
    else:
        asyncio.run(main(args.items, args.block, args.latency_ms / 1000, args.reps, args.poll))

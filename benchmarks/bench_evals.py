"""The evaluation harness (issue 18): what it costs per item, and how it scales with --concurrency.

1. Harness overhead per item with an instant model (the package's function model): an evaluation of
   N items at concurrency 1 (each a durable run in a fresh workspace, scored, stored) vs the same N
   runs (each in a fresh workspace too) started and awaited directly through the Runtime, one after
   the other. Target: <= 1.05.
2. Throughput against an instant OpenAI-compatible upstream on loopback (a minimal HTTP server in
   this process's thread): items per second at --concurrency 8 vs 1.

Both sides of each row run in this process, on the same SQLite database, side by side.

Run: ``.venv/bin/python -m benchmarks.bench_evals [--items N] [--reps R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from shopfloor.config import Settings, load_settings
from shopfloor.evals import EvalOptions, Harness, load_suite
from shopfloor.models import ModelRequest
from shopfloor.runtime import Runtime, compose

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


def instant_model(request: ModelRequest) -> str:
    """One calculator call, then the answer."""
    return ANSWER if any(m.role == "assistant" for m in request.messages) else CALL


def _reply(body: dict[str, Any]) -> bytes:
    answered = any(m.get("role") == "assistant" for m in body.get("messages", []))
    content = ANSWER if answered else CALL
    return json.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "model": body.get("model", "m"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    ).encode()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive; every POST gets an instant, non-streamed chat completion."""
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
            payload = _reply(body)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(payload), payload)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def start_upstream() -> int:
    """The instant upstream on 127.0.0.1 in a thread of its own; returns its port."""
    ready = threading.Event()
    port: list[int] = []

    def main() -> None:
        async def run() -> None:
            server = await asyncio.start_server(_serve, "127.0.0.1", 0)
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            await server.serve_forever()

        asyncio.run(run())

    threading.Thread(target=main, daemon=True).start()
    ready.wait(10)
    return port[0]


def _setup(root: Path, model: str, items: int) -> Path:
    """The agent, a suite of ``items`` items (``suite.yaml``) and one of a single item (``one.yaml``)."""
    (root / "agent").mkdir(parents=True, exist_ok=True)
    (root / "agent" / "agent.yaml").write_text(SPEC.format(model=model))
    lines = [
        json.dumps({"id": f"q{n}", "input": f"What is 17*23? ({n})", "expected": "391"}) for n in range(items)
    ]
    (root / "items.jsonl").write_text("\n".join(lines) + "\n")
    (root / "one.jsonl").write_text(lines[0] + "\n")
    (root / "suite.yaml").write_text(SUITE.replace("DATASET", "items.jsonl"))
    (root / "one.yaml").write_text(SUITE.replace("DATASET", "one.jsonl"))
    return root / "suite.yaml"


def _settings(home: Path, **env: str) -> Settings:
    return load_settings({"SHOPFLOOR_HOME": str(home), "SHOPFLOOR_RUNTIME__POLL_INTERVAL": "0.01", **env})


async def _direct(settings: Settings, agent: Path, items: int) -> float:
    """The same runs without the harness: start each, wait for it, one after the other, each in a fresh
    workspace seeded like the agent's, as the harness runs an item (``Services.with_own_workspaces``)."""
    async with Runtime(compose(settings).with_own_workspaces()) as runtime:
        await runtime.start_executor()
        started = time.perf_counter()
        for n in range(items):
            run_id = await runtime.start_run(agent, f"What is 17*23? ({n})")
            record = await runtime.wait(run_id)
            assert record.status == "completed", record.error
        return time.perf_counter() - started


async def _harness(settings: Settings, suite_path: Path, concurrency: int) -> float:
    harness = Harness(compose(settings))
    try:
        suite, _ = load_suite(suite_path, harness.env(suite_path.parent))
        record = await harness.create(suite, EvalOptions(concurrency=concurrency))
        started = time.perf_counter()
        record = await harness.execute(record.eval_id)
        elapsed = time.perf_counter() - started
        assert record.summary is not None and not record.summary["broken"], record.summary
        return elapsed
    finally:
        harness.close()


def _row(label: str, value: str, ratio: float | None = None) -> None:
    print(f"  {label:<62} {value}" + (f"   x{ratio:6.3f}" if ratio is not None else ""), flush=True)


async def main(items: int, reps: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        settings = _settings(root / "home")
        suite = _setup(root / "instant", "function:benchmarks.bench_evals:instant_model", items)
        agent, one = suite.parent / "agent", suite.parent / "one.yaml"
        await _direct(settings, agent, 2)  # warm: DBOS tables, imports
        direct, harness = [], []
        # Per item = the slope between N items and 1, so fixed costs (launching DBOS) cancel out.
        for _ in range(reps):
            direct.append(
                (await _direct(settings, agent, items) - await _direct(settings, agent, 1)) / (items - 1)
            )
            harness.append(
                (await _harness(settings, suite, 1) - await _harness(settings, one, 1)) / (items - 1)
            )
        d, h = min(direct), min(harness)
        print(f"1. per item (slope between {items} items and 1), instant function model, best of {reps}")
        _row("direct: Runtime.start_run + wait (fresh workspace), one after another", f"{d * 1000:8.2f} ms")
        _row("harness: eval at concurrency 1 (fresh workspace, scored, stored)", f"{h * 1000:8.2f} ms", h / d)

        port = start_upstream()
        settings = _settings(
            root / "home", OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", OPENAI_API_KEY="bench"
        )
        upstream = _setup(root / "upstream", "openai:instant", items)
        await _harness(settings, upstream, 1)  # warm
        rates = {}
        for concurrency in (1, 8):
            best = min([await _harness(settings, upstream, concurrency) for _ in range(reps)])
            rates[concurrency] = items / best
        print(f"2. throughput, instant OpenAI-compatible upstream on loopback, {items} items, best of {reps}")
        _row("--concurrency 1", f"{rates[1]:8.1f} items/s")
        _row("--concurrency 8", f"{rates[8]:8.1f} items/s", rates[8] / rates[1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.reps))

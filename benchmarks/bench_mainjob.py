"""The main job at interactive speed: the analyst's default question, warm, as the demo runs it.

Two worker processes, each with its own composition root, runtime and loaded model, answer the
question once to warm up (weights loaded, skill environment prepared, prompt prefix cached), then
in turns (interleaved, so machine load falls on both alike) ``REPEATS`` times each. The time is the
run's own record (``finished_at - started_at``), with the worker's CPU time for the run beside it.
The candidate is this checkout's ``src``; the baseline is another checkout's (``--baseline DIR``,
default ``/work/main/src``; ``--baseline ''`` measures the candidate alone).

Run: ``python -m benchmarks.bench_mainjob [--question Q] [--repeats N] [--baseline SRC]``.
Needs the model installed (``shopfloor models install qwen2.5-coder-0.5b``) and the skill prepared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

QUESTION = "Which month of 2015 had the most rain in Seattle, and how much?"
ROOT = Path(__file__).resolve().parents[1]


async def _serve(question: str) -> None:
    """The worker: one runtime; answers the question for each line read from stdin."""
    from shopfloor.cli._app import get_services

    services = get_services()
    spec = str(ROOT / "examples" / "analyst")
    try:
        async with services.runtime() as runtime:
            for _ in sys.stdin:
                cpu = time.process_time()
                run_id = await runtime.start_run(spec, question)
                record = await runtime.wait(run_id)
                result = {
                    "status": record.status,
                    "output": record.output,
                    "error": record.error,
                    "wall": (record.finished_at or 0.0) - (record.started_at or 0.0),
                    "cpu": time.process_time() - cpu,
                }
                print(json.dumps(result), flush=True)
    finally:
        await asyncio.to_thread(services.close)


class Worker:
    def __init__(self, label: str, src: Path, question: str) -> None:
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_mainjob", "--serve", "--question", question],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.runs: list[dict[str, Any]] = []

    def run(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: the worker ended (see its stderr above)")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", default="/work/main/src")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.question))
        return
    workers = [Worker("candidate", ROOT / "src", args.question)]
    if args.baseline:
        workers.append(Worker("baseline", Path(args.baseline), args.question))
    try:
        for worker in workers:
            warm = worker.run()
            print(f"{worker.label}: warm-up {warm['wall']:.2f} s, {warm['status']}: {warm['output']}")
        for _ in range(args.repeats):
            for worker in workers:
                worker.runs.append(worker.run())
    finally:
        for worker in workers:
            worker.close()
    load = os.getloadavg()[0]
    print(f"{args.question!r}, median of {args.repeats} interleaved warm runs (load average {load:.1f}):")
    for worker in workers:
        wall, cpu = _median(worker.runs, "wall"), _median(worker.runs, "cpu")
        answers = sorted({str(r["output"]) for r in worker.runs})
        print(f"  {worker.label:<9} {wall:6.2f} s wall  {cpu:6.2f} s CPU   answers: {answers}")
    if len(workers) == 2:
        ratio = _median(workers[1].runs, "wall") / _median(workers[0].runs, "wall")
        print(f"  baseline / candidate: {ratio:.2f}x")


if __name__ == "__main__":
    main()

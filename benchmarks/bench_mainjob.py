"""The main job at interactive speed: the analyst's default question, warm, as the demo runs it.

Two worker processes, each with its own composition root, runtime and loaded model, answer the
question once to warm up (weights loaded, skill environment prepared, prompt prefix cached), then
in turns (interleaved, so machine load falls on both alike) ``REPEATS`` times each. The time is the
run's own record (``finished_at - started_at``), with the worker's CPU time for the run beside it.
The candidate is this checkout's ``src``; the baseline is another checkout's (``--baseline DIR``,
default ``/work/main/src``; ``--baseline ''`` measures the candidate alone).

``--cold N`` measures a new process instead (what each CLI command is): N pairs of fresh workers of
this checkout, interleaved, one with the prompt states on disk (``[models] prompt_cache_mb``, read
back from an earlier process) and one without (``prompt_cache_mb = 0``), each answering the question
once: the run's own time, the first model call's time to first token and the second's (stage 0, with
the skill's instructions) duration, the prompt tokens reused from a saved state, and the process's CPU
time from start to answer (imports and model load included).

Each worker's line also gives the prompt tokens its warm runs evaluated (median; the rest were reused)
and the median time to first token of every model call after a decision's first; ``--spans`` prints
each worker's last run span by span (wall, TTFT, prompt tokens evaluated and reused, output tokens).

``--questions`` asks the analyst's evaluation questions instead (``examples/analyst/evals``), each of
both workers in turn: each question's time and verdict per worker, then mean run time, CPU and prompt
tokens evaluated, and the answers ``scoring.is_correct`` accepts (``--first N``: only the first N).

Run: ``python -m benchmarks.bench_mainjob [--question Q] [--repeats N] [--baseline SRC] [--cold N]
[--spans] [--questions [--first N]]``.
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
from typing import Any, cast

QUESTION = "Which month of 2015 had the most rain in Seattle, and how much?"
ROOT = Path(__file__).resolve().parents[1]


async def _serve(question: str) -> None:
    """The worker: one runtime; answers the question for each line read from stdin (with the model
    calls' spans of the run once the worker's telemetry is flushed, at the end, for ``--cold``)."""
    from shopfloor.cli._app import get_services

    services = get_services()
    spec = str(ROOT / "examples" / "analyst")
    results: list[tuple[str, dict[str, Any]]] = []
    try:
        async with services.runtime() as runtime:
            for line in sys.stdin:
                cpu = time.process_time()
                asked = json.loads(line) or question  # a question of the set, or the worker's own
                run_id = await runtime.start_run(spec, asked)
                record = await runtime.wait(run_id)
                result = {
                    "status": record.status,
                    "output": record.output,
                    "error": record.error,
                    "wall": (record.finished_at or 0.0) - (record.started_at or 0.0),
                    "cpu": time.process_time() - cpu,
                    "process_cpu": time.process_time(),
                }
                results.append((run_id, result))
                print(json.dumps(result), flush=True)
    finally:
        await asyncio.to_thread(services.close)
    print(json.dumps([_spans(services.settings, run_id) for run_id, _ in results]), flush=True)


def _spans(settings: Any, run_id: str) -> list[dict[str, Any]]:
    """The run's spans, in order: name, start (from the run's first), duration; for a model call its
    time to first token, prompt tokens, those reused and output tokens."""
    from shopfloor.telemetry import (
        CACHED_INPUT_TOKENS,
        INPUT_TOKENS,
        OUTPUT_TOKENS,
        TIME_TO_FIRST_CHUNK,
        TraceStore,
        trace_store_url,
    )

    store = TraceStore(trace_store_url(settings))
    try:
        spans = sorted(store.run_spans(run_id), key=lambda s: s.start_ns)
    finally:
        store.close()
    first = spans[0].start_ns if spans else 0
    return [
        {
            "name": s.name,
            "start": (s.start_ns - first) / 1e9,
            "duration": (s.end_ns - s.start_ns) / 1e9,
            "ttft": s.attributes.get(TIME_TO_FIRST_CHUNK),
            "input": s.attributes.get(INPUT_TOKENS, 0),
            "reused": s.attributes.get(CACHED_INPUT_TOKENS, 0),
            "output": s.attributes.get(OUTPUT_TOKENS, 0),
        }
        for s in spans
    ]


def _calls(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"].startswith("chat")]


def _print_spans(label: str, spans: list[dict[str, Any]]) -> None:
    """One run's spans as a table: wall per span, and for a model call its tokens and TTFT."""
    print(
        f"  {label}: {'span':<34} {'start':>7} {'wall':>7} {'TTFT':>6} {'prompt':>6} {'reused':>6} {'out':>4}"
    )
    for s in spans:
        tokens = ""
        if s["name"].startswith("chat"):
            tokens = f" {s['ttft'] or 0:6.2f} {s['input']:6d} {s['reused']:6d} {s['output']:4d}"
        print(f"  {'':<{len(label)}}  {s['name'][:34]:<34} {s['start']:7.2f} {s['duration']:7.2f}{tokens}")


class Worker:
    def __init__(self, label: str, src: Path, question: str, env: dict[str, str] | None = None) -> None:
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(src), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_mainjob", "--serve", "--question", question],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.runs: list[dict[str, Any]] = []

    def run(self, question: str = "") -> dict[str, Any]:
        """One run of ``question`` (by default the worker's own)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(question) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: the worker ended (see its stderr above)")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> list[list[dict[str, Any]]]:
        """End the worker; the spans of each of its runs."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        calls = self.proc.stdout.readline()
        self.proc.wait(timeout=60)
        return cast("list[list[dict[str, Any]]]", json.loads(calls)) if calls else []


def _cold(question: str, pairs: int) -> None:
    """Fresh processes with and without the prompt states on disk, interleaved."""
    sides = {"disk cache": {}, "no cache": {"SHOPFLOOR_MODELS__PROMPT_CACHE_MB": "0"}}
    primer = Worker("primer", ROOT / "src", question)  # saves the states the first side reads
    print(f"primer: {primer.run()['output']}")
    primer.close()
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label in sides}
    for _ in range(pairs):
        for label, env in sides.items():
            worker = Worker(label, ROOT / "src", question, env)
            result = worker.run()
            calls = _calls(worker.close()[0])
            result["ttft"] = calls[0]["ttft"] if calls else float("nan")
            result["stage0"] = calls[1]["duration"] if len(calls) > 1 else float("nan")
            result["reused"] = calls[0]["reused"] if calls else 0
            rows[label].append(result)
    load = os.getloadavg()[0]
    print(f"{question!r}, a new process each, median of {pairs} interleaved pairs (load average {load:.1f}):")
    print(f"  {'':<10} {'run':>8} {'1st TTFT':>9} {'stage 0':>8} {'reused':>7} {'CPU':>8}   answers")
    for label, runs in rows.items():
        answers = sorted({str(r["output"]) for r in runs})
        print(
            f"  {label:<10} {_median(runs, 'wall'):7.2f}s {_median(runs, 'ttft'):8.2f}s "
            f"{_median(runs, 'stage0'):7.2f}s {_median(runs, 'reused'):7.0f} "
            f"{_median(runs, 'process_cpu'):7.2f}s   {answers}"
        )
    ratio = _median(rows["no cache"], "wall") / _median(rows["disk cache"], "wall")
    print(f"  no cache / disk cache (run): {ratio:.2f}x")


def _question_set(workers: list[Worker], first: int) -> None:
    """The analyst's evaluation questions (the first ``first``; 0: all), each asked of every worker in
    turn (after a warm-up): per question each worker's run time and verdict; then mean run time, CPU
    and prompt tokens evaluated per question, and how many answers ``scoring.is_correct`` accepts."""
    from examples.analyst.evals.scoring import DATASET, is_correct

    items = [json.loads(line) for line in DATASET.read_text().splitlines() if line.strip()]
    items = items[:first] if first else items
    for worker in workers:
        worker.run()  # warm-up: the default question
    print(f"  {'question':<26}" + "".join(f" {w.label:>13}" for w in workers))
    for item in items:
        row = f"  {str(item.get('id', ''))[:26]:<26}"
        for worker in workers:
            result = worker.run(item["input"])
            result["correct"] = is_correct(str(result["output"] or ""), item["expected"])
            worker.runs.append(result)
            row += f" {result['wall']:9.2f} s {'ok' if result['correct'] else 'NO'}"
        print(row, flush=True)
    load = os.getloadavg()[0]
    print(
        f"the analyst's {len(items)} questions, each asked of each worker in turn (load average {load:.1f}):"
    )
    for worker in workers:
        runs = worker.runs
        spans = worker.close()[1:]  # the warm-up's first
        evaluated = [sum(c["input"] - c["reused"] for c in _calls(run)) for run in spans]
        print(
            f"  {worker.label:<9} {statistics.mean(r['wall'] for r in runs):6.2f} s mean wall  "
            f"{statistics.mean(r['cpu'] for r in runs):6.2f} s mean CPU  "
            f"{statistics.mean(evaluated) if evaluated else 0.0:6.0f} prompt tokens evaluated  "
            f"correct {sum(r['correct'] for r in runs)}/{len(runs)}"
        )
    if len(workers) == 2:
        ratio = statistics.mean(r["wall"] for r in workers[1].runs) / statistics.mean(
            r["wall"] for r in workers[0].runs
        )
        print(f"  baseline / candidate (mean wall): {ratio:.2f}x")


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", default="/work/main/src")
    parser.add_argument("--cold", type=int, default=0, help="pairs of new processes, cache on and off")
    parser.add_argument("--spans", action="store_true", help="print each worker's last run, span by span")
    parser.add_argument("--questions", action="store_true", help="the evaluation's questions instead")
    parser.add_argument("--first", type=int, default=0, help="with --questions: only the first N")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.question))
        return
    if args.cold:
        _cold(args.question, args.cold)
        return
    workers = [Worker("candidate", ROOT / "src", args.question)]
    if args.baseline:
        workers.append(Worker("baseline", Path(args.baseline), args.question))
    if args.questions:
        try:
            _question_set(workers, args.first)
        finally:
            for worker in workers:
                if worker.proc.poll() is None:
                    worker.close()
        return
    try:
        for worker in workers:
            warm = worker.run()
            print(f"{worker.label}: warm-up {warm['wall']:.2f} s, {warm['status']}: {warm['output']}")
        for _ in range(args.repeats):
            for worker in workers:
                worker.runs.append(worker.run())
    finally:
        spans = {worker.label: worker.close() for worker in workers}
    load = os.getloadavg()[0]
    print(f"{args.question!r}, median of {args.repeats} interleaved warm runs (load average {load:.1f}):")
    for worker in workers:
        wall, cpu = _median(worker.runs, "wall"), _median(worker.runs, "cpu")
        answers = sorted({str(r["output"]) for r in worker.runs})
        calls = [_calls(run) for run in spans[worker.label][1:]]  # the warm runs' model calls
        evaluated = statistics.median(sum(c["input"] - c["reused"] for c in run) for run in calls)
        later = [c["ttft"] or 0.0 for run in calls for c in run[1:]]
        print(
            f"  {worker.label:<9} {wall:6.2f} s wall  {cpu:6.2f} s CPU  {evaluated:5.0f} prompt tokens "
            f"evaluated  TTFT after the 1st call {statistics.median(later) if later else 0.0:5.2f} s (p50)"
            f"   answers: {answers}"
        )
    if len(workers) == 2:
        ratio = _median(workers[1].runs, "wall") / _median(workers[0].runs, "wall")
        print(f"  baseline / candidate: {ratio:.2f}x")
    if args.spans:
        for worker in workers:
            _print_spans(worker.label, spans[worker.label][-1])


if __name__ == "__main__":
    main()

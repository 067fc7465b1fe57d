"""Shopfloor's own cost per iteration before and after a change: this checkout's ``src`` against another's.

Each side runs in a subprocess of its own with its ``src`` first on the path (the benchmark code is this
checkout's, so both sides run the same workload: ``bench_runtime``'s agent, an instant model step and a
calculator step an iteration, SQLite WAL + synchronous=FULL, every step durable). The sides alternate,
their order flipping every repetition, and the medians are reported side by side with their ratio:

- wall and CPU ms per iteration of one run of 50, 200 and 1,000 iterations (slope against a 1-iteration
  run: a run's fixed costs cancel out; CPU is the process's, every thread included);
- iterations per second of ``--concurrent`` runs of 10 iterations at once in one process, and CPU ms per
  iteration there (a run's fixed costs count);
- Python calls per iteration on the event loop's thread at each length (cProfile, slope against a
  1-iteration run): a count of our own work that no load on the machine changes.

Wall time follows this disk's fsync and the machine's load (the VM is shared), and CPU time the load too
(caches): where the machine is busy, read the calls first.

Run: ``python -m benchmarks.bench_runtime_ab --baseline-src ../before/src [--reps 3] [--lengths 50,200,1000]
[--concurrent 200]`` (``git worktree add ../before COMMIT`` makes such a checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


async def measure(lengths: list[int], concurrent: int) -> dict[str, tuple[float, float]]:
    """One side's rows, in this process (whose ``shopfloor`` is the side's)."""
    from benchmarks import bench_runtime

    rows: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        root = Path(tmp)
        for length in lengths:
            wall, cpu, _ = await bench_runtime.durable(root, length)
            rows[f"{length} iterations"] = (wall * 1000, cpu * 1000)
        if concurrent:
            rate, cpu = await bench_runtime.throughput(root, concurrent, None)
            rows[f"{concurrent} runs at once"] = (rate, cpu * 1000)
        for length in lengths:
            rows[f"{length} iterations, calls"] = (await calls_per_iteration(root, length), 0.0)
    return rows


async def calls_per_iteration(root: Path, length: int) -> float:
    """Python calls per iteration on this (the event loop's) thread: slope of ``length`` against 1."""
    from benchmarks import bench_runtime

    settings = bench_runtime._settings(root / f"calls-{length}")
    model = "function:benchmarks.bench_runtime:instant_model"
    await bench_runtime._durable_run(settings, bench_runtime._agent(root, 1), model)  # warm
    calls = []
    for steps in (1, length):
        profile = cProfile.Profile()
        profile.enable()
        await bench_runtime._durable_run(settings, bench_runtime._agent(root, steps), model)
        profile.disable()
        calls.append(pstats.Stats(profile).total_calls)  # type: ignore[attr-defined]
    return (calls[1] - calls[0]) / (length - 1)


def _side(src: Path, lengths: str, concurrent: int) -> dict[str, tuple[float, float]]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    env.pop("SHOPFLOOR_DATABASE_URL", None)
    command = [sys.executable, "-m", "benchmarks.bench_runtime_ab", "--measure", lengths, str(concurrent)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    results = [line for line in done.stdout.splitlines() if line.startswith("ROWS ")]
    if done.returncode or not results:
        raise RuntimeError(f"the side at {src} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {key: (value[0], value[1]) for key, value in json.loads(results[-1][5:]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, help="the other checkout's src directory (before)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--lengths", default="50,200,1000")
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        lengths, concurrent = args.measure
        rows = asyncio.run(measure([int(n) for n in lengths.split(",")], int(concurrent)))
        print("ROWS " + json.dumps(rows))
        return
    if args.baseline_src is None or not (args.baseline_src / "shopfloor").is_dir():
        parser.error("--baseline-src must name a src directory holding the shopfloor package")
    sides = {"before": args.baseline_src.resolve(), "after": ROOT / "src"}
    samples: dict[str, list[dict[str, tuple[float, float]]]] = {name: [] for name in sides}
    for rep in range(args.reps):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for name in order:
            samples[name].append(_side(sides[name], args.lengths, args.concurrent))
            print(f"  rep {rep + 1} {name}: {samples[name][-1]}", file=sys.stderr, flush=True)
    print(
        f"medians of {args.reps} interleaved repetitions: before ({sides['before']}) | after (this checkout)"
    )
    for key in samples["before"][0]:
        if key.endswith("calls"):
            units: tuple[str, ...] = ("Python calls/iter.",)
        elif key.endswith("iterations"):
            units = ("wall ms/iteration", "CPU ms/iteration")
        else:
            units = ("iterations/s", "CPU ms/iteration")
        for index, unit in enumerate(units):
            before = statistics.median(rows[key][index] for rows in samples["before"])
            after = statistics.median(rows[key][index] for rows in samples["after"])
            print(f"  {key:<24} {unit:<18} {before:9.3f} | {after:9.3f}   x{after / before:5.2f}")


if __name__ == "__main__":
    main()

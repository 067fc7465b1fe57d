"""BFCL through the evaluation harness (issue 18): what the harness adds per BFCL item.

An instant function model answers each BFCL question with the calls of its possible answer, so every
item passes BFCL's checker and the run costs what the runtime costs. Side by side, in this process, on
one SQLite database, interleaved, medians of the repeats:

1. direct: the same BFCL prompts as runs started and awaited through the Runtime, one after the other;
2. harness: ``shopfloor eval`` of the same items at concurrency 1 (the items read from bfcl-eval's
   files, each run in a fresh workspace, scored by BFCL's AST checker, stored).
Per item is the slope between N items and 1, so fixed costs (launching DBOS) cancel out. Also: BFCL's
checker alone per item (decode + ``ast_checker``), and reading a category's items from the package.

Run: ``.venv/bin/python -m benchmarks.bench_bfcl [--items N] [--reps R]`` (needs bfcl-eval installed by
scripts/bootstrap.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.bench_evals import _row, _settings
from shopfloor.config import Settings
from shopfloor.evals import (
    BfclScorer,
    Case,
    EvalOptions,
    Harness,
    Item,
    ScoreOptions,
    ScorerEnv,
    load_source,
    load_suite,
)
from shopfloor.models import ModelRequest
from shopfloor.runtime import Runtime, compose

SPEC = """\
name: bench-bfcl
model: function:benchmarks.bench_bfcl:oracle
decision: one_shot
limits:
  max_steps: 2
"""
SUITE = """\
name: bench-bfcl
agent: agent
dataset: [{{source: bfcl, category: simple_python, limit: {limit}}}]
scorers:
  - {{type: bfcl}}
"""
#: the answers file of the oracle model (written by this benchmark)
ANSWERS = "BENCH_BFCL_ANSWERS"


def answer_of(expected: list[dict[str, dict[str, list[object]]]]) -> str:
    calls = []
    for call in expected:
        ((name, params),) = call.items()
        args = ", ".join(f"{k}={v[0]!r}" for k, v in params.items() if v[0] != "")
        calls.append(f"{name}({args})")
    return "[" + ", ".join(calls) + "]"


def oracle(request: ModelRequest) -> str:
    task = next(m.content for m in request.messages if m.role == "user")
    answers = json.loads(Path(os.environ[ANSWERS]).read_text())
    return json.dumps({"tool": "final_answer", "args": {"answer": answers[task.strip().splitlines()[-1]]}})


def _setup(root: Path, settings: Settings, items: int) -> tuple[list[Item], Path, Path]:
    dataset = load_source({"source": "bfcl", "category": "simple_python", "limit": items}, settings)
    answers = {item.input.strip().splitlines()[-1]: answer_of(item.expected) for item in dataset.items}
    (root / "answers.json").write_text(json.dumps(answers))
    os.environ[ANSWERS] = str(root / "answers.json")
    (root / "agent").mkdir(parents=True, exist_ok=True)
    (root / "agent" / "agent.yaml").write_text(SPEC)
    (root / "suite.yaml").write_text(SUITE.format(limit=items))
    (root / "one.yaml").write_text(SUITE.format(limit=1))
    return list(dataset.items), root / "suite.yaml", root / "one.yaml"


async def _direct(settings: Settings, agent: Path, items: list[Item]) -> float:
    async with Runtime(compose(settings)) as runtime:
        await runtime.start_executor()
        started = time.perf_counter()
        for item in items:
            record = await runtime.wait(await runtime.start_run(agent, item.input))
            assert record.status == "completed", record.error
        return time.perf_counter() - started


async def _harness(settings: Settings, suite_path: Path) -> float:
    harness = Harness(compose(settings))
    try:
        suite, _ = load_suite(suite_path, harness.env(suite_path.parent))
        record = await harness.create(suite, EvalOptions(concurrency=1))
        started = time.perf_counter()
        record = await harness.execute(record.eval_id)
        elapsed = time.perf_counter() - started
        summary = record.summary
        assert summary is not None and not summary["broken"], summary
        assert summary["metrics"]["bfcl"]["mean"] == 1.0, summary["metrics"]["bfcl"]
        return elapsed
    finally:
        harness.close()


async def main(items: int, reps: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        settings = _settings(root / "home")
        dataset, suite, one = _setup(root, settings, items)
        agent = root / "agent"
        await _direct(settings, agent, dataset[:2])  # warm: DBOS tables, imports
        direct, harness, direct_all, harness_all = [], [], [], []
        for _ in range(reps):  # interleaved
            d_n, h_n = await _direct(settings, agent, dataset), await _harness(settings, suite)
            d_1, h_1 = await _direct(settings, agent, dataset[:1]), await _harness(settings, one)
            direct.append((d_n - d_1) / (items - 1))
            harness.append((h_n - h_1) / (items - 1))
            direct_all.append(d_n / items)
            harness_all.append(h_n / items)
        d, h = statistics.median(direct), statistics.median(harness)
        print(f"1. per BFCL item (simple_python, slope between {items} items and 1), median of {reps}")
        _row("direct: Runtime.start_run + wait, one after the other", f"{d * 1000:8.2f} ms")
        _row("harness: eval at concurrency 1, BFCL's checker, stored", f"{h * 1000:8.2f} ms", h / d)
        d, h = statistics.median(direct_all), statistics.median(harness_all)
        print(f"   the same as a whole ({items} items, fixed costs included, divided by {items})")
        _row("direct", f"{d * 1000:8.2f} ms")
        _row("harness", f"{h * 1000:8.2f} ms", h / d)

        scorer = BfclScorer("bfcl", ScoreOptions(), ScorerEnv(base_dir=root, settings=settings))
        cases = [Case(item=i, run_id=None, status="completed", output=answer_of(i.expected)) for i in dataset]
        await scorer.score(cases[0])  # loads the checker
        started = time.perf_counter()
        for case in cases:
            await scorer.score(case)
        per = (time.perf_counter() - started) / len(cases)
        _row("of which BFCL's checker (decode + ast_checker) per item", f"{per * 1e6:8.1f} us")
        started = time.perf_counter()
        for _ in range(reps):
            load_source({"source": "bfcl", "category": "simple_python"}, settings)
        load = (time.perf_counter() - started) / reps
        _row("reading all 400 simple_python items from the package", f"{load * 1000:8.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.reps))

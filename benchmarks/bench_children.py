"""Deep research wall time with N researchers as parallel child runs, against the same N child runs one
after the other, side by side in one run.

The researcher example (a copy whose ``sources`` point where nothing is, so it reads the seven tutorial
pages it ships) on a scripted model (``script`` below: it plans N sub-questions on N topics of the
tutorial and writes one sentence from each researcher's first passage), instant or answering after a
fixed latency per reply (``--latency-ms``, as a model server would), so what is measured is the
runtime's part: a durable parent run whose research tool starts N child runs (each a DBOS workflow with
its environment, its retrieval, its model call, its notes committed to its own workspace branch) and
waits for them, then verifies their sentences. ``researchers: parallel`` starts them all at once;
``researchers: sequential`` starts each when the one before has ended. Every run executes in this
process; the two sides alternate in order each round (interleaved), the median of ``--reps`` rounds is
shown with the ratio, for the whole parent run and for its researchers' part alone (from the first
child's start to the last child's end: the parent's verification of every sentence against every
passage, MiniLM on the CPU, is the same work on both sides and dominates a run). Each measured run is
checked: completed, with N completed children.

Run: ``.venv/bin/python -m benchmarks.bench_children [--sizes 2,4,8] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shopfloor.models import ModelRequest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "researcher"
SCRIPT = "function:benchmarks.bench_children:script"
SIDES = ("parallel", "sequential")
#: one topic of the shipped tutorial pages per sub-question
TOPICS = (
    "the else clause of a try statement",
    "exiting the interactive interpreter",
    "creating a virtual environment",
    "floating point representation error",
    "importing a module from a package",
    "the standard library's math module",
    "why Python is named after Monty Python",
    "the default encoding of source files",
)


#: how long each of the scripted model's replies takes, in ms (a model server's latency): read at each call,
#: since the model is made by reference in each run
LATENCY_ENV = "BENCH_CHILDREN_LATENCY_MS"


async def script(request: ModelRequest) -> dict[str, Any]:
    """The scripted model: the research tool, N sub-questions, one sentence from passage 1; each reply
    after ``BENCH_CHILDREN_LATENCY_MS`` (0: instant)."""
    latency = float(os.environ.get(LATENCY_ENV) or 0) / 1000
    if latency:
        await asyncio.sleep(latency)
    assert request.json_schema is not None
    props = request.json_schema["properties"]
    prompt = request.messages[-1].content
    if "tool" in props:
        return {"tool": "python__research"}
    if "question" in props:
        return {"question": props["question"]["enum"][0]}
    if "sub_questions" in props:
        found = re.search(r"these (\d+) topics", prompt)
        return {"sub_questions": list(TOPICS[: int(found.group(1)) if found else 2])}
    if "claims" in props:
        block = prompt.split("[1] (", 1)[-1].split("\n", 1)[-1]
        first = re.split(r"(?<=[.!?])\s+", block.replace("\n", " "))[0].strip()[:270]
        return {"claims": [{"sentence": first if len(first) >= 8 else "No passage says.", "source": 1}]}
    raise AssertionError(f"unexpected schema: {sorted(props)}")


def question(n: int) -> str:
    return f"Compare these {n} topics: {', '.join(TOPICS[:n])}."


def agent_copy(root: Path, side: str) -> Path:
    agent = root / f"researcher-{side}"
    shutil.copytree(EXAMPLE, agent)
    spec = agent / "agent.yaml"
    text = spec.read_text()
    installed = "sources: [/usr/share/doc/python3.11/html]"
    research = "        sentences: 3\n"
    assert installed in text and research in text, "the researcher example changed: update this benchmark"
    text = text.replace(installed, f"sources: [{root / 'python3.11-doc-not-installed'}]")
    text = text.replace(
        research, f"        sentences: 8\n        sub_questions: 8\n        researchers: {side}\n"
    )
    spec.write_text(text)
    return agent


async def timed(runtime: Any, agent: Path, n: int) -> tuple[float, float]:
    """Milliseconds from starting the parent run to its end, and from its first child's start to its last
    child's end (the researchers' part); checked to have researched N children."""
    started = time.perf_counter()
    run_id = await runtime.start_run(agent, question(n), model=SCRIPT)
    async with asyncio.timeout(600):
        record = await runtime.wait(run_id)
    elapsed = (time.perf_counter() - started) * 1000
    children = await runtime.children(run_id)
    if record.status != "completed" or [c.status for c in children] != ["completed"] * n:
        raise SystemExit(
            f"{agent.name} N={n}: run {record.status} ({record.error}), children "
            f"{[c.status for c in children]}"
        )
    researchers = max(c.finished_at or 0.0 for c in children) - min(c.created_at for c in children)
    return elapsed, researchers * 1000


Results = dict[tuple[str, int, float], list[tuple[float, float]]]


async def measure(sizes: list[int], latencies: list[float], reps: int, root: Path) -> Results:
    from shopfloor.config import load_settings
    from shopfloor.runtime import compose

    agents = {side: agent_copy(root, side) for side in SIDES}
    services = compose(load_settings())
    try:
        async with services.runtime() as runtime:
            print("warming up (the corpus is ingested and embedded once) ...", flush=True)
            for side in SIDES:
                await timed(runtime, agents[side], 2)
            results: Results = {(s, n, ms): [] for s in SIDES for n in sizes for ms in latencies}
            for rep in range(reps):
                for ms in latencies:
                    os.environ[LATENCY_ENV] = str(ms)
                    for n in sizes:
                        for side in SIDES if rep % 2 == 0 else SIDES[::-1]:
                            results[(side, n, ms)].append(await timed(runtime, agents[side], n))
            return results
    finally:
        services.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2,4,8", help="researchers per deep question (at most 8)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved rounds; the median is shown")
    parser.add_argument(
        "--latency-ms", default="0,300", help="the scripted model's latency per reply, each measured (ms)"
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    latencies = [float(ms) for ms in args.latency_ms.split(",")]
    if not all(1 <= n <= len(TOPICS) for n in sizes):
        parser.error(f"--sizes: each from 1 to {len(TOPICS)}")
    root = Path(os.environ.get("BENCH_TMP") or tempfile.mkdtemp(prefix="bench-children-"))
    os.environ.setdefault("SHOPFLOOR_HOME", str(root / "home"))
    # The parent's end is seen at the next poll of the run store: poll often, so that it does not
    # round every run up to the default 0.2 s.
    os.environ.setdefault("SHOPFLOOR_RUNTIME__POLL_INTERVAL", "0.01")
    results = asyncio.run(measure(sizes, latencies, args.reps, root))
    for column, title in (
        (0, "deep research wall time: the parent run, start to end"),
        (1, "the researchers' part: the first child run's start to the last one's end"),
    ):
        print(f"\n{title}, median of {args.reps} interleaved rounds (ms)")
        print(
            f"{'model latency':>13}  {'researchers':>11}  {'parallel':>9}  {'sequential':>10}  {'seq/par':>7}"
        )
        for ms in latencies:
            for n in sizes:
                parallel = statistics.median(row[column] for row in results[("parallel", n, ms)])
                sequential = statistics.median(row[column] for row in results[("sequential", n, ms)])
                ratio = sequential / parallel
                print(f"{ms:>10.0f} ms  {n:>11}  {parallel:>9.0f}  {sequential:>10.0f}  {ratio:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmarks this project's targets are measured with still run (tiny sizes, no timing checked).

`make bench` is how the issues' numbers are produced; a benchmark that broke silently would
leave a target unmeasured. Each runs as `make bench` runs it, in a subprocess from the
repository root, and must print its rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "evals": (["--items", "4", "--block", "3", "--latency-ms", "20", "--reps", "1"], "--concurrency 8"),
    "children": (["--sizes", "2", "--reps", "1"], "the researchers' part"),
    "governance": (["--repeat", "60"], "budgets default (in process, written behind)"),
    "releases": ([], "route by deployment + load"),
    # needs PostgreSQL on 127.0.0.1:5432, as the postgres-marked tests do
    "doc_stores": (["--chunks", "200", "--rounds", "1", "--queries", "3"], "dense   postgresql"),
    "doc_ingests": (["--pages", "20", "--rounds", "1"], "postgresql version lookup"),
    # the numpy baseline is a commit of this repository's history (git archive)
    "vec_store": (["--chunks", "300", "--rounds", "1", "--queries", "3"], "queries' hits identical"),
    "research": (["--repeats", "1", "--questions", "1"], "verdicts: identical before and after"),
    "retrieval_quality": (["--fallback"], "| default (now) |"),
    "gateway": (
        [
            *("--duration", "1", "--warmup", "0.5", "--streams", "8", "--memory-requests", "0"),
            *("--skip-litellm", "--concurrency", "1"),
        ],
        "added latency at c=1",
    ),
    "gateway_tail": (["--pairs", "300", "--warmup", "50", "--resamples", "20"], "added p99"),
    "workspace": (["--files", "300", "--commits", "3"], "materialise 300 files (fresh directory)"),
    "telemetry": (
        ["--steps", "3", "--runs", "2", "--spans", "2000", "--pairs", "2"],
        "lean, sqlite store",
    ),
    "runtime": (
        [
            *("--iterations", "3", "--waiting", "3", "--resume", "2", "--reps", "1", "--skip-pg"),
            *("--concurrent", "3", "--lengths", "3,6"),
        ],
        "Shopfloor durable run, vs stock DBOS steps alone",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs(name: str, tmp_path: Path) -> None:
    args, expected = CASES[name]
    env = {**os.environ, "SHOPFLOOR_HOME": str(tmp_path / "home"), "BENCH_TMP": str(tmp_path)}
    env.pop("SHOPFLOOR_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.bench_{name}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert expected in done.stdout, done.stdout[-3000:]

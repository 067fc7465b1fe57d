"""A SQLite collection's vectors in sqlite-vec against the float32 blobs searched with numpy that it
replaced, side by side in one run.

The baseline is the source tree of ``--baseline`` (default ``BASELINE``: the last commit whose SQLite
store kept vectors as blobs in ``chunks.vector`` and whose ``DocIndex`` read every one of them into a
numpy matrix in each process), taken out with ``git archive``; this tree is the other. Each row runs in
fresh processes of both trees, alternating (the baseline, then this tree, every round), on the same
synthetic chunks (``bench_doc_stores.corpus``: Zipf-like words, random unit vectors, ten chunks a
document; a query's vector from a hash of its text, so no model runs and the rows time the stores).

Rows, for each ``--chunks`` size:

- store: ``DocStore.put`` of every document, one transaction each, into a fresh file ``--builds`` times
  a tree, alternating: chunks per second (median; each commit's fsync makes single builds vary by 2x or
  more on shared disks); bytes of the file per 1,000 chunks once its last connection closed (the
  write-ahead log checkpointed into it);
- query: dense and hybrid ``search`` p50 / p99 ms (k = 5), ``--queries`` in each of ``--rounds``
  processes; the first query of a process (where the numpy path reads the whole matrix) is left out of
  the percentiles and shown apart;
- memory: the peak resident set (``ru_maxrss``) of a process that opened the collection and asked the
  queries, against one that only imported the package;
- same: the share of queries whose hits (chunk ids, in order) are the same from both trees.

Run: ``.venv/bin/python -m benchmarks.bench_vec_store [--chunks 10000 100000] [--rounds 5]
[--queries 20] [--baseline REF]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_doc_stores import HashedQueries, corpus, percentile

#: the last commit that searched a SQLite collection's vectors with numpy (blobs in chunks.vector)
BASELINE = "0e90107"
ROOT = Path(__file__).resolve().parents[1]
MODES = ("dense", "hybrid")
PER_DOC = 10


def _queries(count: int) -> list[str]:
    """Queries of 3 to 5 words of ranks 20 to 1,000 of the corpus' vocabulary (bench_doc_stores')."""
    _, vocabulary = corpus(PER_DOC, PER_DOC)
    rng = np.random.default_rng(1)
    return [
        " ".join(vocabulary[int(i)] for i in rng.integers(20, 1000, int(rng.integers(3, 6))))
        for _ in range(count)
    ]


def _rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def worker_build(db: Path, chunks: int) -> dict[str, Any]:
    from shopfloor.connectors.docs import DocIndex

    documents, _ = corpus(chunks, PER_DOC)
    with DocIndex(db, HashedQueries()) as index:
        start = time.perf_counter()
        for doc in documents:
            index.store.put(doc)
        seconds = time.perf_counter() - start
        stored = index.store.counts()[1]
    return {"seconds": seconds, "chunks": stored, "bytes": db.stat().st_size}


def worker_query(db: Path, queries: list[str]) -> dict[str, Any]:
    from shopfloor.connectors.docs import DocIndex

    idle = _rss_kb()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    first: dict[str, float] = {}
    hits: dict[str, list[list[int]]] = {mode: [] for mode in MODES}
    with DocIndex(db, HashedQueries()) as index:
        for mode in MODES:
            start = time.perf_counter()
            index.search(queries[0], k=5, mode=mode)  # type: ignore[arg-type]
            first[mode] = (time.perf_counter() - start) * 1000
        for query in queries:
            for mode in MODES:
                start = time.perf_counter()
                found = index.search(query, k=5, mode=mode)  # type: ignore[arg-type]
                times[mode].append((time.perf_counter() - start) * 1000)
                hits[mode].append([hit.chunk_id for hit in found])
    return {"times": times, "first": first, "hits": hits, "rss_kb": _rss_kb(), "idle_rss_kb": idle}


def _run(src: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_vec_store", "--worker", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"worker {args[0]} of {src} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _baseline_tree(ref: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--builds", type=int, default=3, help="fresh files stored a tree, alternating")
    parser.add_argument("--baseline", default=BASELINE, help="the git ref of the numpy path")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, db, *rest = args.worker
        if kind == "build":
            print(json.dumps(worker_build(Path(db), int(rest[0]))))
        else:
            print(json.dumps(worker_query(Path(db), json.loads(Path(rest[0]).read_text()))))
        return 0
    queries = _queries(args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {
            f"numpy ({args.baseline})": _baseline_tree(args.baseline, Path(tmp) / "baseline"),
            "sqlite-vec": ROOT / "src",
        }
        query_file = Path(tmp) / "queries.json"
        query_file.write_text(json.dumps(queries))
        print(f"baseline: {args.baseline}; {len(queries)} queries x {args.rounds} processes a tree, k=5")
        for size in args.chunks:
            built: dict[str, dict[str, Any]] = {}
            rates: dict[str, list[float]] = {name: [] for name in trees}
            for build in range(args.builds):
                for at, (name, src) in enumerate(trees.items()):
                    db = Path(tmp) / f"{size}-{at}-{build}.db"
                    if name in built:
                        built[name]["db"].unlink()
                    built[name] = {"db": db, **_run(src, "build", str(db), str(size))}
                    rates[name].append(built[name]["chunks"] / built[name]["seconds"])
            asked: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, src in trees.items():
                    asked[name].append(_run(src, "query", str(built[name]["db"]), str(query_file)))
            print(f"{size:,} chunks")
            base = next(iter(trees))
            for name in trees:
                row = built[name]
                print(
                    f"  store   {name:<22} {statistics.median(rates[name]):8.0f} chunks/s  "
                    f"{row['bytes'] / row['chunks'] * 1000 / 1e6:6.2f} MB per 1,000 chunks"
                )
            for mode in MODES:
                base_p50 = statistics.median(t for r in asked[base] for t in r["times"][mode])
                for name in trees:
                    samples = [t for r in asked[name] for t in r["times"][mode]]
                    firsts = [r["first"][mode] for r in asked[name]]
                    p50 = statistics.median(samples)
                    print(
                        f"  {mode:<7} {name:<22} p50 {p50:8.2f} ms  p99 {percentile(samples, 0.99):8.2f} ms  "
                        f"first {statistics.median(firsts):8.2f} ms  x{p50 / base_p50:5.2f} of the baseline"
                    )
            for name in trees:
                rss = max(r["rss_kb"] for r in asked[name]) / 1024
                idle = max(r["idle_rss_kb"] for r in asked[name]) / 1024
                print(f"  memory  {name:<22} {rss:8.1f} MB peak resident ({idle:.1f} MB after import)")
            for mode in MODES:
                pairs = [
                    a == b
                    for ra, rb in zip(*(asked[name] for name in trees), strict=True)
                    for a, b in zip(ra["hits"][mode], rb["hits"][mode], strict=True)
                ]
                print(f"  same    {mode:<7} {sum(pairs)}/{len(pairs)} queries' hits identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())

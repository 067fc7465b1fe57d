"""Document collections: ingest throughput, index size, and query latency of hybrid retrieval against
BM25 alone and vectors alone, side by side in one run.

Corpus: the Python documentation's HTML from Debian's ``python3.11-doc`` (real documents no one here
wrote; ``apt-get install python3.11-doc``, or ``--corpus DIR``): the pages the researcher ingests (its
``exclude`` patterns applied), ``--pages`` of them spread evenly over the name order. Rows:

- embed: the MiniLM embedder against its first numpy forward pass (kept here as the baseline: one
  batched product per sequence, erf out of place, fixed batches of 32 padded to their longest, OpenBLAS
  threads as they come), over the same ``--embed`` chunks, interleaved, median of ``--repeats``, CPU
  beside wall;
- chunks: what the chunker makes of every page the researcher ingests, and of every page of the corpus;
- ingest: pages and chunks per second (wall and CPU), bytes of index per 1,000 chunks, the same
  ``--ingest-pages`` pages into a fresh collection each way: batched (the chunks of consecutive pages
  embedded together, ``EMBED_BATCH`` per call, as ``DocIndex.add`` does), one page per embedding call
  (as it did before), and one chunk per call (each chunk alone: no batching at all);
- query: p50 / p99 ms of ``search`` in each mode over the same queries, interleaved (a round runs each
  mode once per query), with the embedding of the query counted in hybrid and dense;
- scale: the same over a second collection of about ``--scale`` chunks, copies of the real documents
  (their vectors with noise) stored as documents: BM25 and the sqlite-vec search both over every copy
  (dense search is exact, so its cost grows with the chunk count).

Run: ``.venv/bin/python -m benchmarks.bench_retrieval [--pages 120] [--ingest-pages 24] [--scale 100000]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shopfloor.connectors.docs import (
    Chunk,
    DocIndex,
    Embedder,
    MiniLM,
    StoredDocument,
    chunk_sections,
    excluded,
    parser_for,
)
from shopfloor.connectors.docs._index import EMBED_BATCH
from shopfloor.spec import load_spec, spec_resolvers

CORPUS = Path("/usr/share/doc/python3.11/html")
RESEARCHER = Path(__file__).resolve().parents[1] / "examples" / "researcher"
QUERIES = [
    "how do I read a file line by line",
    "sort a list of dictionaries by a key",
    "what does the with statement do",
    "run coroutines concurrently with asyncio",
    "format a float with two decimals",
    "difference between a list and a tuple",
    "parse command line arguments",
    "regular expression to match an email address",
    "how does garbage collection handle reference cycles",
    "create a temporary directory",
]


class BeforeMiniLM:
    """The embedder as it was before it was made faster (same weights, same results to 1e-7)."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.w = {k: v.astype(np.float32) for k, v in load_file(str(model_dir / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=256)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([self._batch(texts[i : i + 32]) for i in range(0, len(texts), 32)])

    def _batch(self, texts: list[str]) -> np.ndarray:
        from shopfloor.connectors.docs._embed import _layer_norm

        w = self.w
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        n, length = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids]
        x = x + w["embeddings.position_embeddings.weight"][:length][None]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        blocked = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        for i in range(6):
            p = f"encoder.layer.{i}."

            def dense(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            def split(v: np.ndarray) -> np.ndarray:
                return v.reshape(n, length, 12, 32).transpose(0, 2, 1, 3)

            q = split(dense(x, "attention.self.query"))
            k = split(dense(x, "attention.self.key"))
            v = split(dense(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(32)) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, 384)
            x = _layer_norm(
                dense(context, "attention.output.dense") + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            h = dense(x, "intermediate.dense")
            z = np.abs(h * np.float32(0.7071067811865476))
            t = 1.0 / (1.0 + 0.3275911 * z)
            poly = t * (
                0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
            )
            erf = np.sign(h) * (1.0 - poly * np.exp(-z * z))
            x = _layer_norm(
                dense(0.5 * h * (1.0 + erf), "output.dense") + x,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
            )
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def embed_rows(embedder: MiniLM, pages: list[Path], count: int, repeats: int) -> None:
    texts: list[str] = []
    for page in pages:
        parser = parser_for(page)
        if parser is None:
            continue
        parsed = parser.parse(page.read_bytes(), page.name)
        texts += [f"{parsed.title}\n{c.heading}\n{c.text}" for c in chunk_sections(parsed.sections)]
        if len(texts) >= count:
            break
    texts = texts[:count]
    before = BeforeMiniLM(embedder.model_dir)
    rows: dict[str, tuple[list[float], list[float]]] = {"before": ([], []), "after": ([], [])}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for label, run in (("before", before.embed), ("after", embedder.embed)):
            cpu, wall = time.process_time(), time.perf_counter()
            vectors[label] = run(texts)
            rows[label][0].append(time.process_time() - cpu)
            rows[label][1].append(time.perf_counter() - wall)
    print(f"embed: {len(texts)} chunks, median of {repeats} interleaved repeats")
    base_cpu, base_wall = (statistics.median(rows["before"][0]), statistics.median(rows["before"][1]))
    for label, (cpus, walls) in rows.items():
        cpu, wall = statistics.median(cpus), statistics.median(walls)
        per_wall, per_cpu = wall / len(texts) * 1000, cpu / len(texts) * 1000
        print(
            f"  {label:<7} {per_wall:7.1f} ms/chunk wall  {per_cpu:7.1f} ms/chunk CPU  "
            f"{len(texts) / wall:6.1f} chunks/s  x{base_wall / wall:4.1f} wall  x{base_cpu / cpu:4.1f} CPU"
        )
    drift = float(np.abs(vectors["before"] - vectors["after"]).max())
    print(f"  largest difference between the two embeddings: {drift:.1e}")


class OneByOne(Embedder):
    """The same model called on one chunk at a time: ingest without any batching."""

    dim = MiniLM.dim

    def __init__(self, inner: MiniLM) -> None:
        self.inner = inner
        self.name = inner.name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.inner.embed([])
        return np.concatenate([self.inner.embed([text]) for text in texts])


def researcher_excludes() -> list[str]:
    loaded = load_spec(RESEARCHER, resolvers=spec_resolvers())
    return [p for c in loaded.spec.connectors if c.docs is not None for p in c.docs.exclude]


def chunk_rows(corpus: Path, kept: list[Path]) -> None:
    every = [p for p in sorted(corpus.rglob("*")) if p.is_file() and parser_for(p) is not None]
    print("chunks: what the chunker makes of the pages (parsing included)")
    for label, pages in (("all documents", every), ("the researcher's", kept)):
        start, chunks, chars = time.perf_counter(), 0, 0
        for page in pages:
            parser = parser_for(page)
            assert parser is not None
            made = chunk_sections(parser.parse(page.read_bytes(), page.name).sections)
            chunks += len(made)
            chars += sum(len(c.text) for c in made)
        took = time.perf_counter() - start
        print(
            f"  {label:<17} {len(pages):5} pages {chunks:7} chunks  "
            f"{chunks / max(len(pages), 1):5.1f} per page  {chars / max(chunks, 1):5.0f} chars per chunk  "
            f"({took:.1f} s)"
        )


def ingest_rows(embedder: MiniLM, pages: list[Path], corpus: Path, only: list[str]) -> None:
    for page in pages:
        page.read_bytes()  # each way reads them from the page cache
    print(f"ingest: {len(pages)} pages into a fresh collection each way")
    ways: list[tuple[str, str, Embedder, int]] = [
        ("batched", f"batched ({EMBED_BATCH})", embedder, EMBED_BATCH),
        ("page", "one page a call", embedder, 1),
        ("chunk", "one chunk a call", OneByOne(embedder), 1),
    ]
    base: float | None = None
    for key, label, model, batch in ways:
        if only and key not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp, DocIndex(Path(tmp) / "ingest.db", model) as index:
            cpu, wall = time.process_time(), time.perf_counter()
            report = index.add(pages, base=corpus, embed_batch=batch)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            stats = index.stats()
        base = base or wall
        print(
            f"  {label:<17} {wall:7.1f} s  {len(pages) / wall:6.2f} pages/s  {report.chunks / wall:6.1f} "
            f"chunks/s wall ({report.chunks / cpu:6.1f} of CPU)  x{base / wall:4.2f}  "
            f"{stats['bytes'] / max(stats['chunks'], 1) * 1000 / 1e6:.2f} MB per 1,000 chunks "
            f"({report.chunks} chunks, {len(report.failed)} skipped)"
        )


def tile(index: DocIndex, into: DocIndex, scale: int) -> int:
    """Store copies of ``index``'s documents in ``into`` until it has about ``scale`` chunks: the same
    texts, their vectors with noise (a copy's chunks are not its original's twins); the chunks stored."""
    _, chunks = index.store.counts()
    ids = sorted(index.store.documents_of(range(1, chunks + 1)))  # a fresh file numbers its chunks 1..n
    passages, vectors = index.store.passages(ids), index.store.vectors_of(ids)
    pages: dict[str, list[int]] = {}
    for cid in ids:
        pages.setdefault(passages[cid][0], []).append(cid)
    rng = np.random.default_rng(0)
    for copy in range(max(1, scale // max(len(ids), 1))):
        for source, page in pages.items():
            real = np.array([np.frombuffer(vectors[cid], dtype=np.float32) for cid in page])
            noisy = (real + rng.normal(0, 0.01, real.shape)).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            into.store.put(
                StoredDocument(
                    source=f"copy{copy}/{source}",
                    digest=f"{copy}/{source}",
                    title=passages[page[0]][1],
                    chunks=[Chunk(heading=passages[cid][2], text=passages[cid][3]) for cid in page],
                    vectors=[row.tobytes() for row in noisy],
                )
            )
    return into.store.counts()[1]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def query_rows(index: DocIndex, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"bm25": [], "dense": [], "hybrid": []}
    for mode in times:  # warm: the vector matrix is loaded on the first dense search
        index.search(QUERIES[0], mode=mode)  # type: ignore[arg-type]
    for _ in range(rounds):
        for query in QUERIES:
            for mode, samples in times.items():
                start = time.perf_counter()
                index.search(query, k=5, mode=mode)  # type: ignore[arg-type]
                samples.append((time.perf_counter() - start) * 1000)
    return times


def print_queries(label: str, times: dict[str, list[float]]) -> None:
    base = statistics.median(times["bm25"])
    for mode, samples in times.items():
        p50 = statistics.median(samples)
        p99 = percentile(samples, 0.99)
        print(f"  {label:<22} {mode:<7} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  x{p50 / base:5.1f} of bm25")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=120)
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--embed", type=int, default=64, help="chunks of the embedder rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ingest-pages", type=int, default=24, help="pages of the ingest rows")
    parser.add_argument(
        "--ingest", nargs="*", default=[], help="only these ingest rows: batched, page, chunk"
    )
    parser.add_argument("--skip", nargs="*", default=[], help="rows left out: embed chunks ingest queries")
    args = parser.parse_args()
    corpus: Path = args.corpus
    if not corpus.is_dir():
        print(f"the corpus {corpus} is missing: apt-get install python3.11-doc", file=sys.stderr)
        return 2
    exclude = researcher_excludes()
    kept = [
        p for p in sorted(corpus.rglob("*.html")) if not excluded(p.relative_to(corpus).as_posix(), exclude)
    ]

    def spread(count: int) -> list[Path]:
        return kept[:: max(1, len(kept) // max(count, 1))][:count]

    pages = spread(args.pages)
    embedder = MiniLM()
    embedder.embed(["warm up"])
    if "embed" not in args.skip:
        embed_rows(embedder, pages, args.embed, args.repeats)
    if "chunks" not in args.skip:
        chunk_rows(corpus, kept)
    if "ingest" not in args.skip:
        ingest_rows(embedder, spread(args.ingest_pages), corpus, args.ingest)
    if "queries" in args.skip:
        return 0
    with tempfile.TemporaryDirectory() as tmp, DocIndex(Path(tmp) / "bench.db", embedder) as index:
        cpu, wall = time.process_time(), time.perf_counter()
        report = index.add(pages, base=corpus)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stats = index.stats()
        print(f"ingest: {len(pages)} pages, {report.chunks} chunks, {len(report.failed)} skipped")
        print(
            f"  {len(pages) / wall:7.1f} pages/s  {report.chunks / wall:7.1f} chunks/s wall "
            f"({report.chunks / cpu:7.1f} chunks/s of CPU); "
            f"{stats['bytes'] / max(stats['chunks'], 1) * 1000 / 1e6:.2f} MB per 1,000 chunks"
        )
        print(f"queries ({len(QUERIES)} x {args.rounds} rounds, k=5, interleaved):")
        print_queries(f"{stats['chunks']} chunks", query_rows(index, args.rounds))
        with DocIndex(Path(tmp) / "scale.db", embedder) as scaled:
            tiled = tile(index, scaled, args.scale)
            print_queries(f"{tiled} chunks (tiled)", query_rows(scaled, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())

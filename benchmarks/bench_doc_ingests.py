"""Collections built from a workspace against host files, and what versioning costs a search, on SQLite and
PostgreSQL side by side.

``--pages`` Markdown pages of about 10 KB are written both to a directory and to a workspace commit, and
ingested into two collections once (vectors from a hash: no model runs, the rows time reading, hashing and
the stores). Rows, median of ``--rounds``:

- an unchanged re-ingest: host files (each read and hashed) against the workspace at its commit (each
  document known by its blob id, nothing read; the ingest's record and pruning included), and the ratio;
- a search's version lookup: ``DocIndex.current`` (cached on the collection's write counter) against
  reading the newest ingest record with its digest set each time.

Run: ``.venv/bin/python -m benchmarks.bench_doc_ingests [--pages 500] [--rounds 5]
[--pg-url postgresql://postgres@127.0.0.1:5432/postgres]`` (``--skip-pg``: SQLite only); a scratch schema
there is dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_doc_stores import HashedQueries
from shopfloor.connectors.docs import DocCollections, IngestSource, WorkspaceSource, ingest_workspace
from shopfloor.workspace import Workspace, Workspaces, open_store


def median(call: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def _commit(workspace: Workspace, pages: dict[str, str]) -> str:
    view = await workspace.open("main")
    for path, text in pages.items():
        await view.write(path, text)
    return await view.commit("pages")


def measure(name: str, collections: DocCollections, root: Path, workspace: Workspace, rounds: int) -> None:
    embedder = HashedQueries()
    source = WorkspaceSource.parse("kb")
    with (
        collections.open("host", embedder, create=True) as host,
        collections.open("built", embedder, create=True) as built,
    ):
        host.record(IngestSource(kind="paths", paths=(str(root),)), [host.add([root], base=root)])
        ingest_workspace(built, workspace, source)
        from_host = median(lambda: host.add([root], base=root), rounds)
        from_workspace = median(lambda: ingest_workspace(built, workspace, source), rounds)
        print(
            f"  {name:<10} unchanged re-ingest: host files {from_host * 1e3:7.1f} ms   workspace "
            f"{from_workspace * 1e3:7.1f} ms   ({from_host / from_workspace:.1f}x)"
        )
        built.current()
        cached = median(lambda: [built.current() for _ in range(100)], rounds) / 100
        digests = len(built.ingests(1)[0].digests)
        uncached = median(lambda: [built.store.ingests(1) for _ in range(100)], rounds) / 100
        print(
            f"  {name:<10} version lookup: cached {cached * 1e6:7.1f} us   newest record read "
            f"({digests} digests) {uncached * 1e6:7.1f} us"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    pages = {
        f"docs/p{n:04d}.md": f"# Page {n}\n\n" + f"Page {n} explains topic {n} in some words. " * 250
        for n in range(args.pages)
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pages"
        root.mkdir()
        for path, text in pages.items():
            (root / Path(path).name).write_text(text)
        repo = Workspaces(open_store(f"file://{Path(tmp) / 'store'}"), cache_dir=Path(tmp) / "cache")
        workspace = repo.workspace("kb")
        asyncio.run(_commit(workspace, pages))
        print(f"{args.pages} pages of {len(pages['docs/p0000.md']) / 1e3:.0f} KB, median of {args.rounds}")
        try:
            measure("sqlite", DocCollections.under(Path(tmp) / "home"), root, workspace, args.rounds)
            if not args.skip_pg:
                import psycopg

                from benchmarks.pg_scratch import drop_scratch_schema, scratch_schema

                try:
                    schema, url = scratch_schema(args.pg_url, "bench_ingests")
                except psycopg.Error as exc:
                    print(f"PostgreSQL at {args.pg_url.rpartition('@')[2]} is needed: {exc}", file=sys.stderr)
                    return 2
                try:
                    measure("postgresql", DocCollections(url=url), root, workspace, args.rounds)
                finally:
                    drop_scratch_schema(args.pg_url, schema)
        finally:
            repo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

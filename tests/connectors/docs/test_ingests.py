"""Ingest records on both backends (``doc_collections``): every ingest gets the next index version with
its source, counts and digest set; versions stay distinct when two handles record at once; a collection
made before the records table gains it; a chunk's whole document reads back in order. Vectors from a
hash (``Hashed``): the storage is under test."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import psycopg
from docs_support import Hashed

from shopfloor.connectors.docs import DocCollections, DocIndex, IngestSource

HOST = IngestSource(kind="paths", paths=("/srv/pages",))


def _pages(root: Path, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (root / f"page{n}.md").write_text(f"# Topic {n}\n\nPage {n} explains subject number {n}.\n")
    return root


def test_every_ingest_is_recorded_with_the_next_version_and_its_digest_set(
    tmp_path: Path, doc_collections: DocCollections
) -> None:
    root = _pages(tmp_path / "pages", 3)
    with doc_collections.open("kb", Hashed(), create=True) as index:
        assert index.current().version == 0 and index.ingests() == []
        assert (index.stats()["version"], index.stats()["commit"]) == (0, None)
        first = index.record(HOST, [index.add([root], base=root)])
        assert (first.version, first.added, first.unchanged, first.failed) == (1, 3, 0, 0)
        assert sorted(first.digests) == ["page0.md", "page1.md", "page2.md"]
        assert index.current().version == 1, "the cached version follows a new record"
        again = index.record(HOST, [index.add([root], base=root)])
        assert (again.version, again.added, again.unchanged) == (2, 0, 3)
        assert again.fingerprint == first.fingerprint, "the same bytes: the same digest set"
        (root / "page1.md").write_text("# Topic 1\n\nRewritten.\n")
        (root / "page2.md").unlink()
        report = index.add([root], base=root)
        report.removed = index.remove_except(report.seen)
        third = index.record(HOST, [report])
        assert (third.version, third.replaced, third.unchanged, third.removed) == (3, 1, 1, 1)
        assert sorted(third.digests) == ["page0.md", "page1.md"]
        assert third.digests["page1.md"] != first.digests["page1.md"]
        assert third.digests["page0.md"] == first.digests["page0.md"]
        assert third.fingerprint != first.fingerprint
    with doc_collections.open("kb", Hashed()) as reopened:  # another handle reads the same records
        history = reopened.ingests()
        assert [r.version for r in history] == [3, 2, 1]
        assert history[0].source == HOST and history[-1].digests == first.digests
        assert [r.version for r in reopened.ingests(1)] == [3]
        assert reopened.current().version == 3 and reopened.stats()["version"] == 3
        fourth = reopened.record(HOST, [reopened.add([root], base=root)])
        (newest,) = reopened.ingests(1)
        assert (newest.version, newest.digests) == (4, third.digests) and fourth.digests == third.digests
        assert [r.digests for r in reopened.ingests()] == [
            third.digests,
            third.digests,
            first.digests,
            first.digests,
        ]
    # an ingest that changed nothing stores no digest set of its own (versions 2 and 4)
    assert stored_digest_sets(doc_collections, tmp_path, "kb") == [1, 3]
    with doc_collections.open("other", Hashed(), create=True) as other:
        assert other.ingests() == [], "records are per collection"


def stored_digest_sets(collections: DocCollections, tmp_path: Path, name: str) -> list[int]:
    """The versions of ``name`` whose row holds a digest set."""
    if collections.url.startswith("file://"):
        with sqlite3.connect(tmp_path / "home" / "docs" / f"{name}.db") as conn:
            rows = conn.execute("SELECT version FROM ingests WHERE digests IS NOT NULL ORDER BY version")
            return [r[0] for r in rows]
    with psycopg.connect(collections.url, autocommit=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT i.version FROM shopfloor_doc_ingests i JOIN shopfloor_doc_collections c "
                "USING (collection_id) WHERE c.name = %s AND i.digests IS NOT NULL ORDER BY i.version",
                [name],
            )
        ]


def test_two_handles_recording_at_once_take_distinct_versions(
    tmp_path: Path, doc_collections: DocCollections
) -> None:
    doc_collections.open("busy", Hashed(), create=True).close()
    handles = [doc_collections.open("busy", Hashed()) for _ in range(3)]
    versions: list[int] = []
    lock = threading.Lock()

    def record(index: DocIndex) -> None:
        for _ in range(5):
            made = index.record(HOST, [])
            with lock:
                versions.append(made.version)

    threads = [threading.Thread(target=record, args=(handle,)) for handle in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for handle in handles:
        handle.close()
    assert sorted(versions) == list(range(1, 16))


def test_a_collection_made_before_the_ingest_records_gains_them(
    tmp_path: Path, doc_collections: DocCollections
) -> None:
    root = _pages(tmp_path / "pages", 2)
    with doc_collections.open("old", Hashed(), create=True) as index:
        index.add([root], base=root)
    if doc_collections.url.startswith("file://"):
        with sqlite3.connect(tmp_path / "home" / "docs" / "old.db") as conn:
            conn.execute("DROP TABLE ingests")
    else:
        with psycopg.connect(doc_collections.url, autocommit=True) as conn:
            conn.execute("DROP TABLE shopfloor_doc_ingests")
    with doc_collections.open("old", Hashed()) as index:
        assert index.current().version == 0 and index.stats()["documents"] == 2
        assert index.record(HOST, [index.add([root], base=root)]).version == 1


def test_a_chunks_whole_document_reads_back_in_order(tmp_path: Path, doc_collections: DocCollections) -> None:
    root = tmp_path / "pages"
    root.mkdir()
    parts = (f"## Part {n}\n\n" + f"Part {n} says something about topic {n}. " * 40 for n in range(4))
    long = "\n\n".join(parts)
    (root / "long.md").write_text(f"# Long\n\n{long}\n")
    with doc_collections.open("docs", Hashed(), create=True) as index:
        index.add([root], base=root)
        hit = index.search("Part 2 says something", k=1, mode="bm25")[0]
        found = index.document(hit.chunk_id)
        assert found is not None
        source, title, chunks = found
        assert (source, title) == ("long.md", "Long") and len(chunks) >= 4
        assert [c[0] for c in chunks] == sorted(c[0] for c in chunks), "in the document's order"
        assert hit.chunk_id in [c[0] for c in chunks]
        headings = [c[1] for c in chunks]
        assert headings[0] == "Long > Part 0" and headings[-1] == "Long > Part 3"
        assert headings == sorted(headings), "part by part"
        assert index.document(10**9) is None


def test_a_secret_in_an_ingests_path_is_not_kept_in_its_record() -> None:
    source = IngestSource(kind="paths", paths=("/data/api_key=hunter2222secret/docs", "/data/plain"))
    kept = source.to_json()
    assert "hunter2222secret" not in str(kept)
    assert kept["paths"][1] == "/data/plain"

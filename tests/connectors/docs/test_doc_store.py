"""Collection backends (``DocStore``: SQLite files, PostgreSQL) under the one ``DocIndex``: pruning,
concurrent ingests from two processes, a collection built before the backends were split, where
collections live (``[docs] url``) and a password that never shows. Vectors here come from a hash, not
a model: what is under test is the storage, the same on both backends (``doc_collections``)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from docs_support import Hashed

from shopfloor.config import load_settings
from shopfloor.connectors.docs import DocCollections, collection_path, doc_stores
from shopfloor.errors import ConfigError, ConnectorError


def _pages(root: Path, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (root / f"page{n:02d}.md").write_text(f"# Topic {n}\n\nPage {n} explains subject number {n} alone.\n")
    return root


def test_pages_no_source_has_are_pruned_and_the_rest_kept(
    tmp_path: Path, doc_collections: DocCollections
) -> None:
    root = _pages(tmp_path / "pages", 4)
    with doc_collections.open("pruned", Hashed(), create=True) as index:
        assert index.add([root], base=root).added == 4
        assert index.remove_except({"page00.md", "page02.md", "elsewhere.md"}) == ["page01.md", "page03.md"]
        assert index.stats()["documents"] == 2 and index.stats()["chunks"] == 2
        # the system's PostgreSQL 15 has no pgvector (test_pg_vectors.py has a server with it)
        assert index.stats()["vectors"] == (
            "sqlite-vec" if doc_collections.url.startswith("file") else "client"
        )
        assert {h.source for h in index.search("subject", k=10, mode="bm25")} == {"page00.md", "page02.md"}
        assert len(index.search("subject", k=10, mode="dense")) == 2, "their vectors went too"
        assert index.remove_except({"page00.md", "page02.md"}) == []
        assert index.add([root], base=root).added == 2, "pruned pages come back when a source has them"
    # another collection at the same place is another collection
    with doc_collections.open("other", Hashed(), create=True) as other:
        assert other.stats()["documents"] == 0 and other.search("subject", k=3) == []
    assert doc_collections.names() == ["other", "pruned"]


def test_a_collection_refuses_another_embedding_model(doc_collections: DocCollections) -> None:
    doc_collections.open("fixed", Hashed(), create=True).close()
    with pytest.raises(ConnectorError, match="indexed with test-hash/1, not other/2"):
        doc_collections.open("fixed", Hashed(name="other/2"))
    with pytest.raises(ConnectorError, match=r"no document collection 'absent'.*shopfloor docs add absent"):
        doc_collections.open("absent", Hashed())
    with pytest.raises(ConfigError, match="lower-case letters"):
        doc_collections.open("../x", Hashed(), create=True)


def test_a_document_the_database_refuses_is_reported_and_skipped(
    tmp_path: Path, doc_collections: DocCollections
) -> None:
    root = _pages(tmp_path / "pages", 2)
    (root / "nul.md").write_text("# Nul\n\nA NUL \x00 character inside.\n")
    with doc_collections.open("nul", Hashed(), create=True) as index:
        report = index.add([root], base=root)
        if doc_collections.url.startswith("postgresql"):  # its text cannot hold the character
            assert report.added == 2 and [path for path, _ in report.failed] == ["nul.md"]
            assert "nul.md" in report.failed[0][1] and "NUL" in report.failed[0][1]
        else:  # SQLite keeps it
            assert (report.added, report.failed) == (3, [])
        assert index.stats()["documents"] == report.added


#: the module the ingesting processes take ``Hashed`` from
_SUPPORT = str(Path(__file__).with_name("docs_support.py"))
_INGEST = """
import importlib.util, json, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("docs_support", sys.argv[1])
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
from shopfloor.connectors.docs import DocCollections
root, go = Path(sys.argv[3]), Path(sys.argv[4])
with DocCollections(url=sys.argv[2]).open("shared", module.Hashed(delay=0.02), create=True) as index:
    while not go.exists():
        time.sleep(0.005)
    report = index.add([root], base=root, embed_batch=1)
print(json.dumps(report.to_json()))
"""


def test_two_processes_ingesting_one_collection_store_each_document_once(
    tmp_path: Path, doc_collections: DocCollections
) -> None:
    root = _pages(tmp_path / "pages", 12)
    doc_collections.open("shared", Hashed(), create=True).close()
    go = tmp_path / "go"
    both = [
        subprocess.Popen(
            [sys.executable, "-c", _INGEST, _SUPPORT, doc_collections.url, str(root), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(0.5)  # both have opened the collection
    go.touch()
    reports = [json.loads(process.communicate(timeout=120)[0]) for process in both]
    assert all(process.returncode == 0 for process in both)
    assert sum(r["added"] for r in reports) == 12, reports
    assert all(r["added"] + r["unchanged"] == 12 and r["failed"] == [] for r in reports), reports
    with doc_collections.open("shared", Hashed()) as index:
        assert index.stats()["documents"] == 12 and index.stats()["chunks"] == 12
        hits = index.search("subject number 7 alone", k=12, mode="bm25")
        assert len({h.source for h in hits}) == len(hits), "no page twice"


# The schema and writes of a collection file made before the stores were split (a frozen copy).
_OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    doc_id INTEGER PRIMARY KEY, source TEXT NOT NULL UNIQUE, digest TEXT NOT NULL,
    title TEXT NOT NULL, chunks INTEGER NOT NULL, added_at REAL NOT NULL);
CREATE TABLE chunks (
    chunk_id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ord INTEGER NOT NULL, heading TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, heading, content='chunks', content_rowid='chunk_id', tokenize='porter unicode61');
"""


def test_a_collection_file_built_before_is_searched_and_updated_as_it_is(tmp_path: Path) -> None:
    embedder = Hashed()
    path = collection_path(tmp_path, "legacy")
    path.parent.mkdir(parents=True)
    pages = {"a.md": ("Alpha", "Sorting lists with a key function."), "b.md": ("Beta", "Opening files.")}
    with sqlite3.connect(path) as conn:
        conn.executescript(_OLD_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('embedder', ?)", (embedder.name,))
        for source, (title, text) in pages.items():
            digest = hashlib.sha256(f"# {title}\n\n{text}\n".encode()).hexdigest()
            doc_id = conn.execute(
                "INSERT INTO documents (source, digest, title, chunks, added_at) VALUES (?, ?, ?, 1, 0)",
                (source, digest, title),
            ).lastrowid
            vector = embedder.embed([f"{title}\n{title}\n{text}"])[0].astype(np.float32).tobytes()
            chunk_id = conn.execute(
                "INSERT INTO chunks (doc_id, ord, heading, text, vector) VALUES (?, 0, ?, ?, ?)",
                (doc_id, title, text, vector),
            ).lastrowid
            conn.execute(
                "INSERT INTO chunks_fts (rowid, text, heading) VALUES (?, ?, ?)", (chunk_id, text, title)
            )
    with DocCollections.under(tmp_path).open("legacy", embedder) as index:
        assert index.stats()["documents"] == 2
        assert [h.source for h in index.search("sorting key", k=1, mode="bm25")] == ["a.md"]
        assert index.search("Beta\nBeta\nOpening files.", k=1, mode="dense")[0].source == "b.md"
        assert index.search("opening files", k=2)[0].source == "b.md"
        root = tmp_path / "pages"
        root.mkdir()
        (root / "a.md").write_text("# Alpha\n\nSorting lists with a key function.\n")  # the same bytes
        (root / "b.md").write_text("# Beta\n\nReading files line by line.\n")  # changed
        report = index.add([root], base=root)
        assert (report.added, report.replaced, report.unchanged) == (0, 1, 1)
        assert index.search("line by line", k=1, mode="bm25")[0].source == "b.md"
        assert index.search("opening", k=5, mode="bm25") == []


def test_where_collections_live_comes_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = load_settings().home
    assert DocCollections.from_settings(load_settings()).url == f"file://{home / 'docs'}"
    monkeypatch.setenv("SHOPFLOOR_DOCS__URL", "postgresql://docs@db.example/corpus")
    assert DocCollections.from_settings(load_settings()).url == "postgresql://docs@db.example/corpus"
    with pytest.raises(ConfigError, match=r"'s3' URL names no document store; write one of file://"):
        DocCollections(url="s3://bucket/docs").names()
    for bad in ("postgresql://u:pw@[bad/db", "postgresql://u:pw@host:port/db"):
        with pytest.raises(ConfigError, match=r"\[docs\] url: not a") as caught:
            DocCollections(url=bad).names()
        assert "pw" not in str(caught.value)
    with pytest.raises(ConfigError, match="three slashes"):
        DocCollections(url="file://relative/docs").names()
    assert set(doc_stores().names()) >= {"file", "postgresql", "postgres"}


@pytest.mark.postgres
def test_a_password_in_the_url_never_shows_in_an_error() -> None:
    secret = "s3cret-Pa55"
    for url in (f"postgresql://postgres:{secret}@127.0.0.1:1/test", f"postgres://u:{secret}@127.0.0.1:1/x"):
        with pytest.raises(ConnectorError) as caught:
            DocCollections(url=url).names()
        assert secret not in str(caught.value) and "***" in str(caught.value)
        assert caught.value.__suppress_context__, "psycopg's own error is not chained in"
        with pytest.raises(ConnectorError) as opened:
            DocCollections(url=url).open("x", Hashed(), create=True)
        assert secret not in str(opened.value)


def test_psycopg_is_imported_only_for_a_postgresql_store(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from shopfloor.connectors.docs import DocCollections\n"
        f"assert DocCollections.under(Path({str(tmp_path)!r})).names() == []\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported for SQLite collections'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

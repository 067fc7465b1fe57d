"""Vectors in sqlite-vec (``_sqlite_vec.py``) and the dense lookups of every store (``DocStore.nearest``,
``vectors_of``): the exact ranking numpy gives, a chunk and its vector written or rolled back together,
a file of float32 blobs migrated on open in one transaction, and what to install when vec0 cannot load."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from shopfloor.connectors.docs import (
    Chunk,
    DocCollections,
    SqliteDocStore,
    StoredDocument,
    collection_path,
    doc_stores,
)
from shopfloor.connectors.docs._sqlite_vec import MAX_NEAREST, connect
from shopfloor.errors import ConfigError

DIM = 16


def _docs(count: int, per_doc: int, seed: int = 0) -> list[StoredDocument]:
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(count):
        vectors = rng.standard_normal((per_doc, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        docs.append(
            StoredDocument(
                source=f"d{d}.md",
                digest=hashlib.sha256(f"{d}-{seed}".encode()).hexdigest(),
                title=f"Doc {d}",
                chunks=[Chunk(heading=f"h{d}.{c}", text=f"text {d} {c}") for c in range(per_doc)],
                vectors=[v.tobytes() for v in vectors],
            )
        )
    return docs


def _exact(docs: list[StoredDocument], ids: list[int], query: np.ndarray, limit: int) -> list[int]:
    """The ranking the numpy path gave: every vector's dot product with the query, best first."""
    matrix = np.frombuffer(b"".join(v for d in docs for v in d.vectors), dtype=np.float32).reshape(-1, DIM)
    scores = matrix @ query
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:limit]]


def test_nearest_is_the_exact_cosine_ranking_and_vectors_of_the_stored_bytes(
    doc_collections: DocCollections,
) -> None:
    docs = _docs(60, 5)
    backend = doc_stores().get(doc_collections.url.partition(":")[0])
    store = backend.open(doc_collections.url, "vec", embedder="random/1")
    try:
        for doc in docs:
            assert store.put(doc) == "added"
        ids = sorted(store.documents_of(range(1, 10_000)))
        assert len(ids) == 300
        rng = np.random.default_rng(7)
        for _ in range(5):
            query = rng.standard_normal(DIM).astype(np.float32)
            query /= np.linalg.norm(query)
            found = store.nearest(query.tobytes(), 20)
            assert [cid for cid, _ in found] == _exact(docs, ids, query, 20)
            stored = store.vectors_of([cid for cid, _ in found])
            for cid, cosine in found:
                assert cosine == pytest.approx(
                    float(np.frombuffer(stored[cid], dtype=np.float32) @ query), abs=1e-5
                )
        assert store.vectors_of([ids[3], 999_999]) == {ids[3]: docs[0].vectors[3]}
        assert store.nearest(query.tobytes(), 0) == []
    finally:
        store.close()


def test_a_replaced_or_removed_document_takes_its_vectors_with_it(tmp_path: Path) -> None:
    store = SqliteDocStore(tmp_path / "c.db", embedder="random/1")
    first, second = _docs(2, 3)
    store.put(first)
    store.put(second)
    store.put(_docs(1, 4, seed=1)[0])  # d0 again, other bytes: replaced
    store.remove_except({"d0.md"})
    vectors = store._conn.execute("SELECT count(*) FROM chunks_vec").fetchone()[0]
    assert store.counts() == (1, 4) and vectors == 4
    store.close()


def test_a_chunk_and_its_vector_are_written_in_one_transaction(tmp_path: Path) -> None:
    store = SqliteDocStore(tmp_path / "c.db", embedder="random/1")
    first, second = _docs(2, 3, seed=2)

    def broken(doc: StoredDocument) -> StoredDocument:
        # the last vector of another dimension: vec0 refuses it after the others were written
        return dataclasses.replace(doc, vectors=[*doc.vectors[:2], doc.vectors[2][:8]])

    for _ in range(2):  # the first write of a fresh file too: its table stays, empty
        with pytest.raises(Exception, match=r"[Dd]imension"):
            store.put(broken(first))
        assert store.counts() == (0, 0)
        assert store._conn.execute("SELECT count(*) FROM chunks_vec").fetchone() == (0,)
    assert store.put(first) == "added"
    with pytest.raises(Exception, match=r"[Dd]imension"):
        store.put(broken(second))
    assert store.counts() == (1, 3)
    assert store._conn.execute("SELECT count(*) FROM chunks_vec").fetchone() == (3,)
    assert store.put(second) == "added"
    store.close()


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


def _old_file(path: Path, docs: list[StoredDocument]) -> None:
    """A collection file as the code before sqlite-vec wrote it (the interpreter's own sqlite3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(_OLD_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('embedder', 'random/1')")
        for doc in docs:
            doc_id = conn.execute(
                "INSERT INTO documents (source, digest, title, chunks, added_at) VALUES (?, ?, ?, ?, 0)",
                (doc.source, doc.digest, doc.title, len(doc.chunks)),
            ).lastrowid
            for ord_, (chunk, vector) in enumerate(zip(doc.chunks, doc.vectors, strict=True)):
                chunk_id = conn.execute(
                    "INSERT INTO chunks (doc_id, ord, heading, text, vector) VALUES (?, ?, ?, ?, ?)",
                    (doc_id, ord_, chunk.heading, chunk.text, vector),
                ).lastrowid
                conn.execute(
                    "INSERT INTO chunks_fts (rowid, text, heading) VALUES (?, ?, ?)",
                    (chunk_id, chunk.text, chunk.heading),
                )
    conn.close()


def test_a_file_of_blobs_is_migrated_on_open_and_ranks_as_before(tmp_path: Path) -> None:
    path = collection_path(tmp_path, "old")
    docs = _docs(40, 4)
    _old_file(path, docs)
    store = SqliteDocStore(path, embedder="random/1")
    conn = store._conn
    assert conn.execute("SELECT value FROM meta WHERE key = 'vectors'").fetchone() == ("vec0",)
    assert conn.execute("SELECT count(*) FROM chunks WHERE length(vector) > 0").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM chunks_vec").fetchone() == (160,)
    ids = list(range(1, 161))
    query = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    query /= np.linalg.norm(query)
    assert [cid for cid, _ in store.nearest(query.tobytes(), 25)] == _exact(docs, ids, query, 25)
    assert store.vectors_of([5]) == {5: docs[1].vectors[0]}
    store.close()
    reopened = SqliteDocStore(path, embedder="random/1")  # migrated once: nothing moves again
    assert reopened._vec.migrate() == 0
    assert reopened.counts() == (40, 160)
    reopened.close()


def test_a_migration_that_fails_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = collection_path(tmp_path, "broken")
    docs = _docs(3, 2)
    _old_file(path, docs)
    with sqlite3.connect(path) as conn:  # one blob of another length: vec0 refuses it mid-copy
        conn.execute("UPDATE chunks SET vector = ? WHERE chunk_id = 4", (b"\0" * 12,))
    conn.close()
    with pytest.raises(Exception, match=r"[Dd]imension"):
        SqliteDocStore(path, embedder="random/1")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM chunks WHERE length(vector) > 0").fetchone() == (6,)
        assert conn.execute("SELECT count(*) FROM meta WHERE key = 'vectors'").fetchone() == (0,)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "chunks_vec" not in names


def test_more_candidates_than_vec0_gives_are_a_config_error(tmp_path: Path) -> None:
    store = SqliteDocStore(tmp_path / "c.db", embedder="random/1")
    store.put(_docs(1, 1)[0])
    with pytest.raises(ConfigError, match=f"at most {MAX_NEAREST}"):
        store.nearest(b"\0" * DIM * 4, MAX_NEAREST + 1)
    store.close()


def test_the_file_is_opened_with_the_settings_of_every_sqlite_store(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "c.db"))
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert conn.execute("SELECT vec_version()").fetchone()[0].startswith("v")
    conn.close()


def test_without_sqlite_vec_or_a_binding_that_loads_it_opening_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sqlite_vec", None)  # not installed: import fails
    with pytest.raises(ConfigError, match=r"sqlite-vec: pip install 'shopfloor\[retrieval\]'"):
        SqliteDocStore(tmp_path / "a.db", embedder="random/1")
    monkeypatch.delitem(sys.modules, "sqlite_vec")
    monkeypatch.setitem(sys.modules, "pysqlite3", None)
    monkeypatch.setitem(sys.modules, "pysqlite3.dbapi2", None)
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        conn = connect(str(tmp_path / "b.db"))  # this Python's own sqlite3 loads it
        assert conn.execute("SELECT vec_version()").fetchone()[0].startswith("v")
        conn.close()
    else:
        with pytest.raises(ConfigError, match=r"cannot: pip install 'shopfloor\[retrieval\]'"):
            SqliteDocStore(tmp_path / "b.db", embedder="random/1")

"""``file://DIR``: one SQLite file per collection (``DIR/NAME.db``), the embedded default. FTS5 over the
chunks' text and heading (porter stemming) ranks by BM25; vectors are in a sqlite-vec ``vec0`` table
(``_sqlite_vec.py``: the file opened through a SQLite that loads it; a file made with blobs in
``chunks.vector`` migrated when opened). Writers serialise on ``BEGIN IMMEDIATE`` (one per file, across
processes), and each checks the digest again inside it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shopfloor.connectors.docs._ingests import IngestRecord, IngestSource, fingerprint
from shopfloor.connectors.docs._rank import Ranking, fts_match
from shopfloor.connectors.docs._sqlite_vec import VecTable, connect
from shopfloor.connectors.docs._store import (
    DocStore,
    DocumentChunks,
    Passage,
    Stored,
    StoredDocument,
    check_collection_name,
)
from shopfloor.errors import ConfigError

__all__ = ["SqliteDocStore", "collection_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id INTEGER PRIMARY KEY, source TEXT NOT NULL UNIQUE, digest TEXT NOT NULL,
    title TEXT NOT NULL, chunks INTEGER NOT NULL, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ord INTEGER NOT NULL, heading TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, heading, content='chunks', content_rowid='chunk_id', tokenize='porter unicode61');
CREATE TABLE IF NOT EXISTS ingests (
    version INTEGER PRIMARY KEY, at REAL NOT NULL, source TEXT NOT NULL, added INTEGER NOT NULL,
    replaced INTEGER NOT NULL, unchanged INTEGER NOT NULL, removed INTEGER NOT NULL,
    failed INTEGER NOT NULL, fingerprint TEXT NOT NULL, digests TEXT);
"""


def collection_path(home: Path, name: str) -> Path:
    """The file of the collection ``name`` in the default store under ``home``."""
    return home / "docs" / f"{check_collection_name(name)}.db"


def _directory(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/"):
        raise ConfigError(f"document store URL {url!r}: write file:///absolute/path (three slashes)")
    return Path(unquote(parts.path))


class SqliteDocStore(DocStore):
    def __init__(self, path: Path, *, embedder: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.name = path.stem
        self.where = str(path)
        self.vectors = "sqlite-vec"
        self._lock = threading.Lock()
        self._conn = connect(str(path))
        self._conn.executescript(_SCHEMA)
        self._vec = VecTable(self._conn)
        try:
            self._vec.migrate()
        except BaseException:
            self._conn.close()
            raise
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('embedder', ?)", (embedder,))
        self.embedder = str(self._conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()[0])

    @classmethod
    def open(cls, url: str, name: str, *, embedder: str) -> SqliteDocStore:
        return cls(_directory(url) / f"{check_collection_name(name)}.db", embedder=embedder)

    @classmethod
    def names(cls, url: str) -> list[str]:
        root = _directory(url)
        return sorted(p.stem for p in root.glob("*.db")) if root.is_dir() else []

    def put(self, doc: StoredDocument) -> Stored:
        with self._lock:
            if doc.vectors:
                self._vec.make(len(doc.vectors[0]))
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                old = self._conn.execute(
                    "SELECT doc_id, digest FROM documents WHERE source = ?", (doc.source,)
                ).fetchone()
                if old is not None and old[1] == doc.digest:
                    self._conn.execute("COMMIT")
                    return "unchanged"
                if old is not None:
                    self._delete(old[0])
                doc_id = self._conn.execute(
                    "INSERT INTO documents (source, digest, title, chunks, added_at) VALUES (?, ?, ?, ?, ?)",
                    (doc.source, doc.digest, doc.title, len(doc.chunks), time.time()),
                ).lastrowid
                for ord_, (chunk, vector) in enumerate(zip(doc.chunks, doc.vectors, strict=True)):
                    chunk_id = self._conn.execute(
                        "INSERT INTO chunks (doc_id, ord, heading, text, vector) VALUES (?, ?, ?, ?, ?)",
                        (doc_id, ord_, chunk.heading, chunk.text, b""),
                    ).lastrowid
                    self._vec.put(chunk_id, vector)
                    self._conn.execute(
                        "INSERT INTO chunks_fts (rowid, text, heading) VALUES (?, ?, ?)",
                        (chunk_id, chunk.text, chunk.heading),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return "added" if old is None else "replaced"

    def remove_except(self, keep: Collection[str]) -> list[str]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                gone = [
                    (doc_id, source)
                    for doc_id, source in self._conn.execute(
                        "SELECT doc_id, source FROM documents"
                    ).fetchall()
                    if source not in keep
                ]
                for doc_id, _ in gone:
                    self._delete(doc_id)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return sorted(source for _, source in gone)

    def _delete(self, doc_id: int) -> None:
        rows = self._conn.execute(
            "SELECT chunk_id, text, heading FROM chunks WHERE doc_id = ?", (doc_id,)
        ).fetchall()
        for chunk_id, text, heading in rows:
            self._conn.execute(
                "INSERT INTO chunks_fts (chunks_fts, rowid, text, heading) VALUES ('delete', ?, ?, ?)",
                (chunk_id, text, heading),
            )
        self._vec.delete([row[0] for row in rows])
        self._conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        self._conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))

    def counts(self) -> tuple[int, int]:
        documents, chunks = self._conn.execute(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)"
        ).fetchone()
        return int(documents), int(chunks)

    def size(self) -> int:
        # the file and its write-ahead log (recent writes live there until a checkpoint)
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def version(self) -> object:
        # Another connection's commit (an ingest by another process or handle) changes data_version;
        # this connection's own commits do not, so they are counted apart.
        return (self._conn.execute("PRAGMA data_version").fetchone()[0], self._conn.total_changes)

    def nearest(self, vector: bytes, limit: int) -> list[tuple[int, float]]:
        return self._vec.nearest(vector, limit)

    def vectors_of(self, chunk_ids: Sequence[int]) -> dict[int, bytes]:
        return self._vec.vectors_of(chunk_ids)

    def bm25(self, terms: Sequence[str], ranking: Ranking, limit: int) -> list[int]:
        rows = self._conn.execute(
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts, ?, ?) LIMIT ?",
            (fts_match(terms), ranking.text_weight, ranking.heading_weight, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def documents_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        marks = ",".join("?" * len(chunk_ids))
        return dict(
            self._conn.execute(
                f"SELECT chunk_id, doc_id FROM chunks WHERE chunk_id IN ({marks})", list(chunk_ids)
            ).fetchall()
        )

    def passages(self, chunk_ids: Sequence[int]) -> dict[int, Passage]:
        marks = ",".join("?" * len(chunk_ids))
        return {
            r[0]: (r[1], r[2], r[3], r[4])
            for r in self._conn.execute(
                "SELECT c.chunk_id, d.source, d.title, c.heading, c.text FROM chunks c "
                f"JOIN documents d ON d.doc_id = c.doc_id WHERE c.chunk_id IN ({marks})",
                list(chunk_ids),
            )
        }

    def document(self, chunk_id: int) -> DocumentChunks | None:
        row = self._conn.execute(
            "SELECT d.doc_id, d.source, d.title FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
            "WHERE c.chunk_id = ?",
            (chunk_id,),
        ).fetchone()
        if row is None:
            return None
        chunks = self._conn.execute(
            "SELECT chunk_id, heading, text FROM chunks WHERE doc_id = ? ORDER BY ord", (row[0],)
        ).fetchall()
        return row[1], row[2], [(c[0], c[1], c[2]) for c in chunks]

    def digests(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT source, digest FROM documents").fetchall())

    def add_ingest(
        self,
        *,
        at: float,
        source: IngestSource,
        added: int,
        replaced: int,
        unchanged: int,
        removed: int,
        failed: int,
    ) -> IngestRecord:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                version = int(
                    self._conn.execute("SELECT coalesce(max(version), 0) + 1 FROM ingests").fetchone()[0]
                )
                digests = self.digests()
                made = fingerprint(digests)
                previous = self._conn.execute(
                    "SELECT fingerprint FROM ingests ORDER BY version DESC LIMIT 1"
                ).fetchone()
                self._conn.execute(
                    "INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        version,
                        at,
                        json.dumps(source.to_json()),
                        added,
                        replaced,
                        unchanged,
                        removed,
                        failed,
                        made,
                        None if previous is not None and previous[0] == made else json.dumps(digests),
                    ),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return IngestRecord.from_row(
            (version, at, source.to_json(), added, replaced, unchanged, removed, failed, digests)
        )

    def ingests(self, limit: int | None = None) -> list[IngestRecord]:
        rows = self._conn.execute(
            "SELECT version, at, source, added, replaced, unchanged, removed, failed, digests "
            "FROM ingests ORDER BY version DESC LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        return IngestRecord.from_rows(rows, self._older_digests)

    def _older_digests(self, version: int) -> object:
        row = self._conn.execute(
            "SELECT digests FROM ingests WHERE version < ? AND digests IS NOT NULL "
            "ORDER BY version DESC LIMIT 1",
            (version,),
        ).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self._conn.close()

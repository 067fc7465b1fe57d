"""``postgresql://``: collections as rows of three tables keyed by collection, through psycopg 3.

Tables keyed by collection rather than a schema per collection: the tables are made once (no DDL, and
no right to run it, when a collection is added), every collection is one query away (``names``), and a
collection is removed by deleting its row. Full text: a generated ``tsvector`` column (the ``english``
configuration: Snowball stemming, as FTS5's porter; the heading weighted ``A``, the text ``B``) under a
GIN index, ranked by ``ts_rank_cd`` (cover density, divided by one plus the log of the chunk's length)
over the query's words each made a ``plainto_tsquery`` and OR-ed, so no query is ever tsquery syntax.
Vectors (``_pg_vectors.py``) are in a pgvector column searched exactly in the server where the server
has the extension, else float32 ``bytea`` scored exactly in numpy in the client (the collection's matrix
read once and again only when its ``version`` changed); ``vectors`` says which. A write first bumps the
collection's ``version`` row, whose row lock serialises the writers of one collection across processes
(SQLite's ``BEGIN IMMEDIATE``); readers never wait for it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shopfloor.connectors.docs._ingests import IngestRecord, IngestSource, fingerprint
from shopfloor.connectors.docs._pg_vectors import VectorColumn, choose
from shopfloor.connectors.docs._rank import Ranking
from shopfloor.connectors.docs._store import (
    DocStore,
    DocumentChunks,
    Passage,
    Stored,
    StoredDocument,
    check_collection_name,
)
from shopfloor.errors import ConfigError, ConnectorError

__all__ = ["PostgresDocStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shopfloor_doc_collections (
    collection_id serial PRIMARY KEY, name text NOT NULL UNIQUE, embedder text NOT NULL,
    version bigint NOT NULL DEFAULT 0, created_at double precision NOT NULL);
CREATE TABLE IF NOT EXISTS shopfloor_doc_documents (
    doc_id bigserial PRIMARY KEY,
    collection_id integer NOT NULL REFERENCES shopfloor_doc_collections ON DELETE CASCADE,
    source text NOT NULL, digest text NOT NULL, title text NOT NULL, chunks integer NOT NULL,
    added_at double precision NOT NULL, UNIQUE (collection_id, source));
CREATE TABLE IF NOT EXISTS shopfloor_doc_chunks (
    chunk_id bigserial PRIMARY KEY, collection_id integer NOT NULL,
    doc_id bigint NOT NULL REFERENCES shopfloor_doc_documents ON DELETE CASCADE,
    ord integer NOT NULL, heading text NOT NULL, text text NOT NULL, vector bytea NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, heading), 'A')
        || setweight(to_tsvector('english'::regconfig, text), 'B')) STORED);
CREATE INDEX IF NOT EXISTS shopfloor_doc_chunks_doc ON shopfloor_doc_chunks (doc_id);
CREATE INDEX IF NOT EXISTS shopfloor_doc_chunks_collection ON shopfloor_doc_chunks (collection_id, chunk_id);
CREATE INDEX IF NOT EXISTS shopfloor_doc_chunks_tsv ON shopfloor_doc_chunks USING gin (tsv);
CREATE TABLE IF NOT EXISTS shopfloor_doc_ingests (
    collection_id integer NOT NULL REFERENCES shopfloor_doc_collections ON DELETE CASCADE,
    version integer NOT NULL, at double precision NOT NULL, source jsonb NOT NULL,
    added integer NOT NULL, replaced integer NOT NULL, unchanged integer NOT NULL,
    removed integer NOT NULL, failed integer NOT NULL, fingerprint text NOT NULL, digests jsonb,
    PRIMARY KEY (collection_id, version));
"""
#: ``ts_rank_cd``'s normalisation: divided by 1 + log(length), so a long chunk does not win by length
_NORMALISE = 1


def _conninfo(url: str) -> tuple[str, str, str]:
    """(what psycopg connects with, the URL with its password hidden, the password)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # its text could hold a password: not repeated
        raise ConfigError("[docs] url: not a postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE URL") from None
    return (
        parsed.set(drivername="postgresql").render_as_string(hide_password=False),
        parsed.render_as_string(hide_password=True),
        parsed.password or "",
    )


def _connect(url: str) -> tuple[psycopg.Connection[Any], str]:
    """An autocommit connection to ``url`` with the tables made, and the URL to show; an error never
    carries the password."""
    conninfo, shown, password = _conninfo(url)
    conn = None
    try:
        conn = psycopg.connect(
            conninfo, autocommit=True, connect_timeout=10, application_name="shopfloor_docs"
        )
        # the table added last: a database made before it gets it (every statement is IF NOT EXISTS)
        made = conn.execute("SELECT to_regclass('shopfloor_doc_ingests')").fetchone()
        if made is None or made[0] is None:  # a user without the right to create tables can use them
            with conn.transaction():
                # CREATE ... IF NOT EXISTS is not safe against itself from two processes at once
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('shopfloor_doc_schema'))")
                conn.execute(_SCHEMA)
    except psycopg.Error as exc:
        if conn is not None:
            conn.close()
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        if password:
            first = first.replace(password, "***")
        raise ConnectorError(f"document store {shown}: {first}") from None
    return conn, shown


class PostgresDocStore(DocStore):
    def __init__(
        self, conn: psycopg.Connection[Any], *, shown: str, name: str, embedder: str, column: VectorColumn
    ) -> None:
        self._conn = conn
        self.where = f"{shown} collection {name}"
        self.name = name
        self._column = column
        self.vectors = column.kind
        # one connection, used by one thread at a time (a transaction is the connection's)
        self._lock = threading.Lock()
        conn.execute(
            "INSERT INTO shopfloor_doc_collections (name, embedder, created_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO NOTHING",
            [name, embedder, time.time()],
        )
        row = conn.execute(
            "SELECT collection_id, embedder FROM shopfloor_doc_collections WHERE name = %s", [name]
        ).fetchone()
        assert row is not None
        self._collection, self.embedder = int(row[0]), str(row[1])

    @classmethod
    def open(cls, url: str, name: str, *, embedder: str) -> PostgresDocStore:
        check_collection_name(name)
        conn, shown = _connect(url)
        try:
            try:
                column = choose(conn, shown)
            except psycopg.Error as exc:  # a server error: it never holds the password
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise ConnectorError(f"document store {shown}: vectors: {first}") from None
            return cls(conn, shown=shown, name=name, embedder=embedder, column=column)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def names(cls, url: str) -> list[str]:
        conn, _ = _connect(url)
        with conn:
            return [r[0] for r in conn.execute("SELECT name FROM shopfloor_doc_collections ORDER BY name")]

    @contextmanager
    def _writing(self) -> Iterator[psycopg.Cursor[Any]]:
        """A transaction holding the collection's row lock: one writer of a collection at a time."""
        with self._lock, self._conn.transaction(), self._conn.cursor() as cursor:
            cursor.execute(
                "UPDATE shopfloor_doc_collections SET version = version + 1 WHERE collection_id = %s",
                [self._collection],
            )
            yield cursor

    def put(self, doc: StoredDocument) -> Stored:
        try:
            with self._writing() as cursor:
                old = cursor.execute(
                    "SELECT doc_id, digest FROM shopfloor_doc_documents "
                    "WHERE collection_id = %s AND source = %s",
                    [self._collection, doc.source],
                ).fetchone()
                if old is not None and old[1] == doc.digest:
                    raise psycopg.Rollback()  # another writer stored it meanwhile: nothing to write
                if old is not None:
                    cursor.execute("DELETE FROM shopfloor_doc_documents WHERE doc_id = %s", [old[0]])
                doc_id = cursor.execute(
                    "INSERT INTO shopfloor_doc_documents "
                    "(collection_id, source, digest, title, chunks, added_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s) RETURNING doc_id",
                    [self._collection, doc.source, doc.digest, doc.title, len(doc.chunks), time.time()],
                ).fetchone()
                assert doc_id is not None
                column, encode = self._column.column, self._column.encode
                with cursor.copy(
                    "COPY shopfloor_doc_chunks (collection_id, doc_id, ord, heading, text, "
                    f"{column}) FROM STDIN"
                ) as copy:
                    for ord_, (chunk, vector) in enumerate(zip(doc.chunks, doc.vectors, strict=True)):
                        copy.write_row(
                            (self._collection, doc_id[0], ord_, chunk.heading, chunk.text, encode(vector))
                        )
                return "added" if old is None else "replaced"
        except psycopg.DataError as exc:  # text PostgreSQL cannot hold (a NUL character)
            raise ConnectorError(f"{doc.source}: {(str(exc).splitlines() or ['bad data'])[0]}") from None
        return "unchanged"

    def remove_except(self, keep: Collection[str]) -> list[str]:
        with self._writing() as cursor:
            gone = [
                (doc_id, source)
                for doc_id, source in cursor.execute(
                    "SELECT doc_id, source FROM shopfloor_doc_documents WHERE collection_id = %s",
                    [self._collection],
                ).fetchall()
                if source not in keep
            ]
            if not gone:
                raise psycopg.Rollback()
            cursor.execute(
                "DELETE FROM shopfloor_doc_documents WHERE doc_id = ANY(%s)", [[doc_id for doc_id, _ in gone]]
            )
        return sorted(source for _, source in gone)

    def _one(self, query: str, params: Any) -> Any:
        with self._lock:
            row = self._conn.execute(query, params).fetchone()
        assert row is not None
        return row

    def counts(self) -> tuple[int, int]:
        documents, chunks = self._one(
            "SELECT (SELECT count(*) FROM shopfloor_doc_documents WHERE collection_id = %(c)s), "
            "(SELECT count(*) FROM shopfloor_doc_chunks WHERE collection_id = %(c)s)",
            {"c": self._collection},
        )
        return int(documents), int(chunks)

    def size(self) -> int:
        # the rows' bytes (the indexes, shared by every collection, are not counted)
        return int(
            self._one(
                "SELECT coalesce((SELECT sum(pg_column_size(d.*)) FROM shopfloor_doc_documents d "
                "WHERE collection_id = %(c)s), 0) + coalesce((SELECT sum(pg_column_size(c.*)) "
                "FROM shopfloor_doc_chunks c WHERE collection_id = %(c)s), 0)",
                {"c": self._collection},
            )[0]
        )

    def version(self) -> object:
        return self._one(
            "SELECT version FROM shopfloor_doc_collections WHERE collection_id = %s", [self._collection]
        )[0]

    def nearest(self, vector: bytes, limit: int) -> list[tuple[int, float]]:
        version = self.version()
        with self._lock:
            return self._column.nearest(self._conn, self._collection, version, vector, limit)

    def vectors_of(self, chunk_ids: Sequence[int]) -> dict[int, bytes]:
        with self._lock:
            return self._column.vectors_of(self._conn, self._collection, chunk_ids)

    def bm25(self, terms: Sequence[str], ranking: Ranking, limit: int) -> list[int]:
        # ts_rank_cd's weights are at most 1: the two scaled together keep the order they give
        top = max(ranking.text_weight, ranking.heading_weight) or 1.0
        weights = [0.0, 0.0, ranking.text_weight / top, ranking.heading_weight / top]  # D, C, B, A
        query = " || ".join(["plainto_tsquery('english'::regconfig, %s)"] * len(terms))
        with self._lock:
            rows = self._conn.execute(
                f"WITH q AS (SELECT {query} AS query) "
                "SELECT c.chunk_id FROM shopfloor_doc_chunks c, q "
                "WHERE numnode(q.query) > 0 AND c.collection_id = %s AND c.tsv @@ q.query "
                "ORDER BY ts_rank_cd(%s::real[], c.tsv, q.query, %s) DESC, c.chunk_id LIMIT %s",
                [*terms, self._collection, weights, _NORMALISE, limit],
            ).fetchall()
        return [r[0] for r in rows]

    def documents_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT chunk_id, doc_id FROM shopfloor_doc_chunks "
                "WHERE collection_id = %s AND chunk_id = ANY(%s)",
                [self._collection, list(chunk_ids)],
            ).fetchall()
        return {int(a): int(b) for a, b in rows}

    def passages(self, chunk_ids: Sequence[int]) -> dict[int, Passage]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT c.chunk_id, d.source, d.title, c.heading, c.text FROM shopfloor_doc_chunks c "
                "JOIN shopfloor_doc_documents d ON d.doc_id = c.doc_id "
                "WHERE c.collection_id = %s AND c.chunk_id = ANY(%s)",
                [self._collection, list(chunk_ids)],
            ).fetchall()
        return {int(r[0]): (r[1], r[2], r[3], r[4]) for r in rows}

    def document(self, chunk_id: int) -> DocumentChunks | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT d.doc_id, d.source, d.title FROM shopfloor_doc_chunks c "
                "JOIN shopfloor_doc_documents d ON d.doc_id = c.doc_id "
                "WHERE c.collection_id = %s AND c.chunk_id = %s",
                [self._collection, chunk_id],
            ).fetchone()
            if row is None:
                return None
            chunks = self._conn.execute(
                "SELECT chunk_id, heading, text FROM shopfloor_doc_chunks WHERE doc_id = %s ORDER BY ord",
                [row[0]],
            ).fetchall()
        return str(row[1]), str(row[2]), [(int(c[0]), str(c[1]), str(c[2])) for c in chunks]

    def _digests(self, cursor: psycopg.Cursor[Any] | psycopg.Connection[Any]) -> dict[str, str]:
        rows = cursor.execute(
            "SELECT source, digest FROM shopfloor_doc_documents WHERE collection_id = %s", [self._collection]
        ).fetchall()
        return {str(source): str(digest) for source, digest in rows}

    def digests(self) -> dict[str, str]:
        with self._lock:
            return self._digests(self._conn)

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
        with self._writing() as cursor:  # the collection's row lock: versions are taken one at a time
            version = int(
                cursor.execute(
                    "SELECT coalesce(max(version), 0) + 1 FROM shopfloor_doc_ingests "
                    "WHERE collection_id = %s",
                    [self._collection],
                ).fetchone()[0]  # type: ignore[index]
            )
            digests = self._digests(cursor)
            made = fingerprint(digests)
            previous = cursor.execute(
                "SELECT fingerprint FROM shopfloor_doc_ingests WHERE collection_id = %s "
                "ORDER BY version DESC LIMIT 1",
                [self._collection],
            ).fetchone()
            row = (version, at, source.to_json(), added, replaced, unchanged, removed, failed, digests)
            cursor.execute(
                "INSERT INTO shopfloor_doc_ingests (collection_id, version, at, source, added, replaced, "
                "unchanged, removed, failed, fingerprint, digests) "
                "VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s::jsonb)",
                [
                    self._collection,
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
                ],
            )
        return IngestRecord.from_row(row)

    def ingests(self, limit: int | None = None) -> list[IngestRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT version, at, source, added, replaced, unchanged, removed, failed, digests "
                "FROM shopfloor_doc_ingests WHERE collection_id = %s ORDER BY version DESC LIMIT %s",
                [self._collection, limit],
            ).fetchall()
            return IngestRecord.from_rows(rows, self._older_digests)

    def _older_digests(self, version: int) -> object:
        row = self._conn.execute(
            "SELECT digests FROM shopfloor_doc_ingests WHERE collection_id = %s AND version < %s "
            "AND digests IS NOT NULL ORDER BY version DESC LIMIT 1",
            [self._collection, version],
        ).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self._conn.close()

"""How a PostgreSQL document store keeps and searches its chunks' vectors: ``pgvector`` where the server
has it, float32 ``bytea`` scored in numpy in the client where it has not.

``choose`` decides once per open and says why: where ``vector`` is in ``pg_available_extensions`` it is
created if missing (``CREATE EXTENSION IF NOT EXISTS vector``, under an advisory lock; a user without
the right to is told what to run and stays on the client path), and a ``shopfloor_doc_chunks`` made
before (a ``vector bytea`` column) is migrated in one transaction: an ``embedding vector`` column is
added, filled from the blobs, and the blobs dropped; a user who may not alter the table keeps reading
the blobs. The column has no fixed dimension (``vector``, not ``vector(384)``) because one table holds
every collection and collections may have embedders of different dimensions; a collection's rows all
have its embedder's. The extension's schema qualifies its type and operator, so a search path without
it still finds them.

``nearest`` on pgvector is exact (a sequential scan of the collection's rows, ``ORDER BY embedding <=>
query``, no approximate index), so it returns the chunks the numpy path returns, in the same order.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

__all__ = ["ClientVectors", "PgVectors", "VectorColumn", "choose"]

log = logging.getLogger("shopfloor.connectors.docs")
#: the chunks a migration reads at a time
_BATCH = 5000


class VectorColumn(ABC):
    """The chunks' vector column of one connection's tables, and the searches over it."""

    #: what ``stats`` and ``docs ls`` show: ``pgvector`` or ``client``
    kind: str
    #: the column ``COPY`` writes a chunk's vector into
    column: str

    @abstractmethod
    def encode(self, vector: bytes) -> object:
        """A float32 vector as ``COPY`` writes it into ``column``."""

    @abstractmethod
    def nearest(
        self, conn: psycopg.Connection[Any], collection: int, version: object, vector: bytes, limit: int
    ) -> list[tuple[int, float]]:
        """The ``limit`` chunks of ``collection`` nearest ``vector``, best first: (chunk id, cosine)."""

    @abstractmethod
    def vectors_of(
        self, conn: psycopg.Connection[Any], collection: int, chunk_ids: Sequence[int]
    ) -> dict[int, bytes]:
        """Chunk id -> its vector (float32 bytes)."""


def _literal(vector: bytes) -> str:
    # repr of each float32 (as a double) parses back to the same float32 in pgvector's strtof
    return "[" + ",".join(map(repr, np.frombuffer(vector, dtype="<f4").tolist())) + "]"


class PgVectors(VectorColumn):
    """Vectors in ``embedding``, a pgvector column whose type lives in ``schema``."""

    kind = "pgvector"
    column = "embedding"

    def __init__(self, schema: str) -> None:
        ext = sql.Identifier(schema)
        self._nearest = sql.SQL(
            "SELECT chunk_id, 1 - (embedding OPERATOR({ext}.<=>) %s::{ext}.vector) FROM shopfloor_doc_chunks "
            "WHERE collection_id = %s ORDER BY embedding OPERATOR({ext}.<=>) %s::{ext}.vector, chunk_id "
            "LIMIT %s"
        ).format(ext=ext)
        self._send = sql.SQL(
            "SELECT chunk_id, {ext}.vector_send(embedding) FROM shopfloor_doc_chunks "
            "WHERE collection_id = %s AND chunk_id = ANY(%s)"
        ).format(ext=ext)

    def encode(self, vector: bytes) -> object:
        return _literal(vector)

    def nearest(
        self, conn: psycopg.Connection[Any], collection: int, version: object, vector: bytes, limit: int
    ) -> list[tuple[int, float]]:
        if limit < 1:
            return []
        query = _literal(vector)
        rows = conn.execute(self._nearest, [query, collection, query, limit]).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def vectors_of(
        self, conn: psycopg.Connection[Any], collection: int, chunk_ids: Sequence[int]
    ) -> dict[int, bytes]:
        rows = conn.execute(self._send, [collection, list(chunk_ids)]).fetchall()
        # vector_send: int16 dimension, int16 unused, then big-endian float32s
        return {int(r[0]): np.frombuffer(bytes(r[1]), ">f4", offset=4).astype("<f4").tobytes() for r in rows}


class ClientVectors(VectorColumn):
    """Vectors as float32 ``bytea`` in ``vector``: a collection's matrix read once (again after a write)
    and scored exactly in numpy."""

    kind = "client"
    column = "vector"

    def __init__(self) -> None:
        #: collection -> (version, chunk ids ascending, their vectors as rows)
        self._matrices: dict[int, tuple[object, Any, Any]] = {}

    def encode(self, vector: bytes) -> object:
        return vector

    def _matrix(
        self, conn: psycopg.Connection[Any], collection: int, version: object, dim: int
    ) -> tuple[Any, Any]:
        cached = self._matrices.get(collection)
        if cached is None or cached[0] != version:
            rows = conn.execute(
                "SELECT chunk_id, vector FROM shopfloor_doc_chunks WHERE collection_id = %s "
                "ORDER BY chunk_id",
                [collection],
            ).fetchall()
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            cached = self._matrices[collection] = (version, ids, matrix)
        return cached[1], cached[2]

    def nearest(
        self, conn: psycopg.Connection[Any], collection: int, version: object, vector: bytes, limit: int
    ) -> list[tuple[int, float]]:
        query = np.frombuffer(vector, dtype=np.float32)
        ids, matrix = self._matrix(conn, collection, version, len(query))
        if len(ids) == 0 or limit < 1:
            return []
        scores = matrix @ query
        top = min(limit, len(ids))
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best])]
        return [(int(ids[i]), float(scores[i])) for i in best]

    def vectors_of(
        self, conn: psycopg.Connection[Any], collection: int, chunk_ids: Sequence[int]
    ) -> dict[int, bytes]:
        rows = conn.execute(
            "SELECT chunk_id, vector FROM shopfloor_doc_chunks "
            "WHERE collection_id = %s AND chunk_id = ANY(%s)",
            [collection, list(chunk_ids)],
        ).fetchall()
        return {int(r[0]): bytes(r[1]) for r in rows}


def _extension_schema(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    ).fetchone()
    return None if row is None else str(row[0])


def _has_column(conn: psycopg.Connection[Any], column: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('shopfloor_doc_chunks') "
        "AND attname = %s AND NOT attisdropped",
        [column],
    ).fetchone()
    return row is not None


def _create_extension(conn: psycopg.Connection[Any]) -> str | None:
    """The schema of the ``vector`` extension, made here if the server has it; None when it has not, or
    this user may not make it (said in the log with what to run)."""
    schema = _extension_schema(conn)
    if schema is not None:
        return schema
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
        log.info("pgvector is not installed on this PostgreSQL server: vectors are scored in the client")
        return None
    try:
        with conn.transaction():
            # CREATE EXTENSION IF NOT EXISTS is not safe against itself from two processes at once
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('shopfloor_doc_schema'))")
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege:
        log.warning(
            "pgvector is available on this PostgreSQL server but not created in this database, and this "
            "user may not create it: vectors are scored in the client until a database owner or "
            "superuser runs CREATE EXTENSION vector"
        )
        return None
    return _extension_schema(conn)


def _migrate(conn: psycopg.Connection[Any], schema: str) -> int:
    """Move the ``bytea`` vectors of tables made before into an ``embedding`` pgvector column, in one
    transaction; the chunks moved."""
    ext = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('shopfloor_doc_schema'))")
        if _has_column(conn, "embedding"):
            return 0  # another process migrated them meanwhile
        # MAIN: kept in the row, not in TOAST (6 more page reads a row made the exact scan 4x slower)
        conn.execute(
            sql.SQL(
                "ALTER TABLE shopfloor_doc_chunks ADD COLUMN embedding {ext}.vector, "
                "ALTER COLUMN embedding SET STORAGE MAIN"
            ).format(ext=ext)
        )
        conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE shopfloor_doc_moved (chunk_id bigint, embedding {ext}.vector) "
                "ON COMMIT DROP"
            ).format(ext=ext)
        )
        moved = 0
        # a batch read, then written: one connection cannot fetch from a cursor while it copies
        with conn.cursor(name="shopfloor_doc_blobs") as blobs, conn.cursor() as writer:
            blobs.execute("SELECT chunk_id, vector FROM shopfloor_doc_chunks")
            while batch := blobs.fetchmany(_BATCH):
                with writer.copy("COPY shopfloor_doc_moved (chunk_id, embedding) FROM STDIN") as copy:
                    for chunk_id, blob in batch:
                        copy.write_row((chunk_id, _literal(bytes(blob))))
                moved += len(batch)
        conn.execute(
            "UPDATE shopfloor_doc_chunks c SET embedding = m.embedding FROM shopfloor_doc_moved m "
            "WHERE c.chunk_id = m.chunk_id"
        )
        conn.execute(
            "ALTER TABLE shopfloor_doc_chunks ALTER COLUMN embedding SET NOT NULL, DROP COLUMN vector"
        )
    return moved


def choose(conn: psycopg.Connection[Any], where: str) -> VectorColumn:
    """The vector column of the tables ``conn`` sees, pgvector where the server has it (the tables
    migrated to it first), said in the log once."""
    schema = _create_extension(conn)
    if schema is not None and not _has_column(conn, "embedding"):
        try:
            moved = _migrate(conn, schema)
        except psycopg.errors.InsufficientPrivilege:
            log.warning(
                "%s: pgvector is available but this user may not alter shopfloor_doc_chunks to move its "
                "vectors into it: they are scored in the client until the table's owner opens it",
                where,
            )
        else:
            if moved:
                log.info("%s: %d chunks' vectors moved into pgvector", where, moved)
    chosen: VectorColumn
    if _has_column(conn, "embedding"):
        found = _extension_schema(conn)
        assert found is not None  # dropping the extension drops the column with it
        chosen = PgVectors(found)
    else:
        chosen = ClientVectors()
    log.info("%s: vectors: %s", where, chosen.kind)
    return chosen

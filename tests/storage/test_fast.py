"""The stores' fast paths: point reads on a per-thread raw connection, large values streamed in."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path

import pytest
import sqlalchemy as sa

from shopfloor.errors import WorkspaceNotFoundError
from shopfloor.storage import Engines, make_engine, reader, stream_insert
from shopfloor.workspace import SqlStore

MiB = 1 << 20


class _Zeros:
    """``size`` bytes of a repeating pattern, made a chunk at a time (never whole in memory)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.done = 0

    def read(self, n: int = -1, /) -> bytes:
        n = self.size - self.done if n < 0 else min(n, self.size - self.done)
        self.done += n
        return (b"0123456789abcdef" * (n // 16 + 1))[:n]

    def seek(self, offset: int, whence: int = 0, /) -> int:
        self.done = offset
        return offset

    def tell(self) -> int:
        return self.done


def test_sqlite_reads_see_every_commit_from_any_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'objects.db'}"
    writer, store = SqlStore(url), SqlStore(url)
    try:
        with pytest.raises(WorkspaceNotFoundError):
            store.get("blobs/a")
        writer.put("blobs/a", b"one")  # committed through another store's engine
        assert store.get("blobs/a") == b"one" and store.exists("blobs/a")
        seen: dict[str, object] = {}

        def read() -> None:
            seen["data"] = store.get("blobs/a")
            seen["ref"] = store.get_ref("main")

        writer.set_ref("main", "c1", expected=None)
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
        assert seen["data"] == b"one" and seen["ref"] is not None
        assert store.get_ref("main") == seen["ref"]
        assert not store.exists("blobs/b") and store.get_ref("other") is None
    finally:
        writer.close()
        store.close()


def test_a_closed_reader_refuses_new_connections(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        table = sa.Table("t", sa.MetaData(), sa.Column("k", sa.Text, primary_key=True))
        table.create(engine)
        reads = reader(engine)
        query = sa.select(sa.literal(1)).where(table.c.k == sa.bindparam("k"))
        assert reads.scalar(query, {"k": "x"}) is None
        reads.close()
        errors: list[BaseException] = []

        def late() -> None:
            try:
                reads.scalar(query, {"k": "x"})
            except Exception as exc:
                errors.append(exc)

        thread = threading.Thread(target=late)
        thread.start()
        thread.join()
        assert errors and "closed" in str(errors[0])
    finally:
        engine.dispose()


def test_rows_are_tuples_in_the_statements_column_order_on_either_path(sql_url: str) -> None:
    engine = make_engine(sql_url)
    reads = reader(engine)
    try:
        table = sa.Table(
            "pairs", sa.MetaData(), sa.Column("k", sa.Text, primary_key=True), sa.Column("n", sa.Integer)
        )
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(table), [{"k": f"k{n}", "n": n} for n in range(5)])
        query = (
            sa.select(table.c.n, table.c.k)
            .where(table.c.n >= sa.bindparam("low"))
            .order_by(table.c.n)
            .limit(sa.bindparam("most"))
        )
        assert reads.rows(query, {"low": 1, "most": 3}) == [(1, "k1"), (2, "k2"), (3, "k3")]
        assert reads.rows(query, {"low": 9, "most": 3}) == []
    finally:
        reads.close()
        engine.dispose()


def test_put_file_streams_a_large_object_in_bounded_memory(sql_url: str) -> None:
    size = 48 * MiB + 3
    store = SqlStore(sql_url)
    try:
        tracemalloc.start()
        try:
            store.put_file("blobs/big", _Zeros(size), size)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # One chunk (1 MiB, 2 MiB as PostgreSQL's hex) at a time, not the object.
        assert peak < 8 * MiB, f"put_file held {peak / MiB:.1f} MiB"
        data = store.get("blobs/big")
        assert len(data) == size and data[:16] == b"0123456789abcdef" and data[-3:] == b"012"
        assert [o.size for o in store.list("blobs/")] == [size]
        store.put_file("blobs/big", _Zeros(1), 1)  # there already: nothing read, nothing changed
        assert len(store.get("blobs/big")) == size
    finally:
        store.close()


def test_stream_insert_skips_an_existing_key(sql_url: str) -> None:
    engine = make_engine(sql_url)
    try:
        table = sa.Table(
            "blobs",
            sa.MetaData(),
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("data", sa.LargeBinary, nullable=False),
        )
        table.create(engine)
        with engine.begin() as conn:
            assert stream_insert(conn, table, {"key": "k\t1"}, "data", [b"ab", b"c"], 3)
        with engine.begin() as conn:
            assert not stream_insert(conn, table, {"key": "k\t1"}, "data", [b"xyz"], 3)
        with engine.connect() as conn:
            assert conn.execute(sa.select(table.c.key, table.c.data)).all() == [("k\t1", b"abc")]
    finally:
        engine.dispose()


def test_engines_are_one_per_database(tmp_path: Path) -> None:
    engines = Engines()
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first = engines.get(url)
    assert engines.get(url) is first
    assert engines.get(url, durability="normal") is not first
    assert engines.get(f"sqlite:///{tmp_path / 'b.db'}") is not first
    assert len(engines) == 3
    engines.close()
    assert len(engines) == 0 and engines.get(url) is not first
    engines.close()

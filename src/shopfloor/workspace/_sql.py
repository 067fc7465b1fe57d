"""``sqlite:///FILE`` and ``postgresql://...``: every object and ref in two SQL tables.

The engine comes from the one storage seam (``shopfloor.storage.make_engine``): on SQLite, WAL with
``synchronous=FULL`` makes each transaction durable at ~0.1 ms and a busy timeout makes writers of
several processes wait for each other. Point reads (objects, existence, refs) take the database's
cheapest path (``storage.reader``: raw ``sqlite3`` on SQLite, one connection per thread), and
``put_file`` streams a large object in (``storage.stream_insert``). A ref compare-and-swap is one
conditional statement (an ``UPDATE ... WHERE value = expected``, or an insert that skips an
existing name), atomic on every database, so two writers can never both win.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

from shopfloor.errors import ConfigError, WorkspaceConflictError, WorkspaceNotFoundError
from shopfloor.storage import create_tables, insert_ignore, make_engine, reader, starts_with, stream_insert
from shopfloor.workspace._store import CHUNK, Exactly, ObjectStore, Readable, RefValue, StoredObject

__all__ = ["SqlStore"]


def _tables(prefix: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    """The two tables, named ``{prefix}objects`` and ``{prefix}refs``; with no prefix, the SQLite
    backend's original schema (TEXT, BLOB, REAL), so existing files open unchanged."""
    meta = sa.MetaData()
    objects = sa.Table(
        f"{prefix}objects",
        meta,
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    refs = sa.Table(
        f"{prefix}refs",
        meta,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    return meta, objects, refs


class SqlStore(ObjectStore):
    """Objects and refs in a SQL database; ``tables`` prefixes the table names, so that stores with
    separate lifetimes (workspaces, published skills) can share one database without one's garbage
    collection seeing the other's objects."""

    def __init__(self, url: str, *, tables: str = "", engine: sa.Engine | None = None) -> None:
        """``engine``: the database's shared engine (``storage.Engines``), which ``close`` leaves open."""
        self.url = url
        self._owns_engine = engine is None
        self._engine = engine if engine is not None else make_engine(url)
        meta, self._objects, self._refs = _tables(tables)
        create_tables(self._engine, meta)
        # Statements are built once, with bound parameters: building one costs more than running it.
        objects, refs = self._objects.c, self._refs.c
        self._insert_objects = insert_ignore(self._engine, self._objects, ["key"])
        self._get = sa.select(objects.data).where(objects.key == sa.bindparam("key"))
        self._exists = sa.select(sa.literal(1)).where(objects.key == sa.bindparam("key"))
        self._get_ref = sa.select(refs.value).where(refs.name == sa.bindparam("name"))
        # RETURNING says whether the statement wrote the row (drivers' rowcounts differ: psycopg
        # reports -1 for an insert that skipped a conflict).
        self._create_ref = insert_ignore(self._engine, self._refs, ["name"]).returning(refs.name)
        self._swap_ref = (
            sa.update(self._refs)
            .where(refs.name == sa.bindparam("ref"), refs.value == sa.bindparam("expected"))
            .values(value=sa.bindparam("new"))
            .returning(refs.name)
        )
        self._delete_ref = sa.delete(self._refs).where(refs.name == sa.bindparam("name"))
        self._reads = reader(self._engine)

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    @classmethod
    def from_url(cls, url: str, options: dict[str, str]) -> SqlStore:
        parts = urlsplit(url)
        if parts.scheme != "sqlite":
            return cls(url)
        # sqlite:///path is the file /path here (the workspace URL names a path, as file:// does).
        path = unquote(parts.netloc + parts.path)
        if not path or path == "/":
            raise ConfigError(
                f"workspace store URL {url!r} names no file; write sqlite:///path/to/workspaces.db"
            )
        file = Path(path).expanduser()
        file.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{file}")

    def put(self, key: str, data: bytes) -> None:
        self.put_many([(key, data)])

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        now = time.time()
        rows = [{"key": key, "data": data, "created": now} for key, data in items]
        if rows:
            with self._engine.begin() as conn:
                conn.execute(self._insert_objects, rows)

    def put_file(self, key: str, source: Readable, size: int) -> None:
        # One chunk in memory at a time; read through Exactly, so a source of another size raises
        # inside the transaction and nothing is stored. Capture has checked the size against the quota.
        if self.exists(key):
            return
        exact = Exactly(source, size, key)
        values = {"key": key, "created": time.time()}
        with self._engine.begin() as conn:
            stream_insert(conn, self._objects, values, "data", iter(lambda: exact.read(CHUNK), b""), size)

    def get(self, key: str) -> bytes:
        data = self._reads.scalar(self._get, {"key": key})
        if data is None:
            raise WorkspaceNotFoundError(f"object {key} is not in {self.url}")
        return bytes(data)

    def exists(self, key: str) -> bool:
        return self._reads.scalar(self._exists, {"key": key}) is not None

    def list(self, prefix: str) -> Iterator[StoredObject]:
        query = sa.select(
            self._objects.c.key, sa.func.length(self._objects.c.data), self._objects.c.created
        ).where(starts_with(self._engine, self._objects.c.key, prefix))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        for key, size, created in rows:
            yield StoredObject(key=key, size=size, mtime=created)

    def delete(self, keys: Iterable[str]) -> int:
        batch = list(keys)
        if not batch:
            return 0
        with self._engine.begin() as conn:
            return sum(
                conn.execute(
                    sa.delete(self._objects).where(self._objects.c.key.in_(batch[i : i + 500]))
                ).rowcount
                for i in range(0, len(batch), 500)
            )

    def get_ref(self, name: str) -> RefValue | None:
        value = self._reads.scalar(self._get_ref, {"name": name})
        return None if value is None else RefValue(value=value, token=value)

    def set_ref(self, name: str, value: str, *, expected: RefValue | None) -> RefValue:
        with self._engine.begin() as conn:
            if expected is None:
                written = conn.execute(self._create_ref, {"name": name, "value": value})
            else:
                swap = {"ref": name, "expected": expected.token, "new": value}
                written = conn.execute(self._swap_ref, swap)
            won = written.first() is not None
        if not won:
            current = self.get_ref(name)
            raise WorkspaceConflictError(
                f"ref {name} moved to {current.value[:12] if current else 'nothing'} meanwhile; "
                "reload the head and retry"
            )
        return RefValue(value=value, token=value)

    def delete_ref(self, name: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(self._delete_ref, {"name": name})

    def list_refs(self, prefix: str) -> dict[str, str]:
        query = sa.select(self._refs.c.name, self._refs.c.value).where(
            starts_with(self._engine, self._refs.c.name, prefix)
        )
        with self._engine.connect() as conn:
            return {name: value for name, value in conn.execute(query)}

    def close(self) -> None:
        self._reads.close()
        if self._owns_engine:
            self._engine.dispose()

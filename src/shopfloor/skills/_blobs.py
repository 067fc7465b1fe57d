"""Where the registry keeps published skills' files: the content-addressed object store of the
workspaces (``ObjectStore``), here a ``SqlStore`` in the registry's own database.

Files are stored once per content, under ``blobs/SHA256`` as workspace blobs are, in tables of their
own (``skill_objects``, ``skill_refs``) so that a workspace store opened on the same database never
garbage-collects them. Registries written before kept the files in a ``skill_blobs`` table; opening
one moves them over once.
"""

from __future__ import annotations

import sqlalchemy as sa

from shopfloor.workspace import ObjectStore, SqlStore

__all__ = ["blob_key", "open_blob_store"]

_LEGACY = "skill_blobs"
_BATCH = 200


def blob_key(sha256: str) -> str:
    return f"blobs/{sha256}"


def open_blob_store(url: str, engine: sa.Engine | None = None) -> ObjectStore:
    store = SqlStore(url, tables="skill_", engine=engine)
    _adopt_legacy_blobs(store.engine, store)
    return store


def _adopt_legacy_blobs(engine: sa.Engine, store: ObjectStore) -> None:
    if not sa.inspect(engine).has_table(_LEGACY):
        return
    legacy = sa.Table(_LEGACY, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(legacy.c.sha256, legacy.c.content)).yield_per(_BATCH)
        batch: list[tuple[str, bytes]] = []
        for sha256, content in rows:
            batch.append((blob_key(sha256), bytes(content)))
            if len(batch) >= _BATCH:
                store.put_many(batch)
                batch.clear()
        store.put_many(batch)
    with engine.begin() as conn:
        legacy.drop(conn)

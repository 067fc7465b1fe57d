"""Published skills' files live in the workspaces' content-addressed object store (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import sqlalchemy as sa

from shopfloor.config import Settings
from shopfloor.skills import KeyPair, SkillRegistry, TrustPolicy, sign_skill
from shopfloor.storage import make_engine
from shopfloor.workspace import SqlStore, Workspaces


def _publish(sql_url: str, skill_dir: Path, key: KeyPair, policy: TrustPolicy, settings: Settings) -> None:
    sign_skill(skill_dir, key.private_path)
    registry = SkillRegistry(sql_url, settings.home / "skills", policy)
    try:
        registry.publish(skill_dir)
    finally:
        registry.close()


def _assert_resolves_from_a_fresh_cache(
    sql_url: str, skill_dir: Path, policy: TrustPolicy, cache: Path
) -> None:
    registry = SkillRegistry(sql_url, cache, policy)
    try:
        resolved = registry.resolve("hello@0.1.0")
        for path in skill_dir.rglob("*"):
            if path.is_file():
                assert (resolved / path.relative_to(skill_dir)).read_bytes() == path.read_bytes()
    finally:
        registry.close()


def test_files_are_blobs_of_the_object_store_that_workspace_gc_never_sees(
    sql_url: str, skill_dir: Path, key: KeyPair, policy: TrustPolicy, settings: Settings
) -> None:
    _publish(sql_url, skill_dir, key, policy, settings)
    store = SqlStore(sql_url, tables="skill_")
    try:
        keys = {item.key for item in store.list("blobs/")}
        files = [path for path in skill_dir.rglob("*") if path.is_file()]
        assert keys == {f"blobs/{hashlib.sha256(path.read_bytes()).hexdigest()}" for path in files}
    finally:
        store.close()
    # A workspace store on the same database has tables of its own: its gc cannot drop the skill's files.
    workspaces = Workspaces(SqlStore(sql_url), cache_dir=settings.home / "ws-cache")
    try:
        asyncio.run(workspaces.gc(grace=0))
    finally:
        workspaces.close()
    _assert_resolves_from_a_fresh_cache(sql_url, skill_dir, policy, settings.home / "skills-again")


def test_a_registry_of_the_old_layout_is_moved_over_once(
    sql_url: str, skill_dir: Path, key: KeyPair, policy: TrustPolicy, settings: Settings
) -> None:
    """Registries written before kept files in `skill_blobs (sha256, size, content)`."""
    _publish(sql_url, skill_dir, key, policy, settings)
    engine = make_engine(sql_url)
    meta = sa.MetaData()
    legacy = sa.Table(
        "skill_blobs",
        meta,
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )
    objects = sa.Table("skill_objects", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        meta.create_all(conn)
        rows = conn.execute(sa.select(objects.c.key, objects.c.data)).all()
        conn.execute(
            legacy.insert(),
            [{"sha256": k.removeprefix("blobs/"), "size": len(d), "content": d} for k, d in rows],
        )
        conn.execute(objects.delete())
    _assert_resolves_from_a_fresh_cache(sql_url, skill_dir, policy, settings.home / "skills-after")
    assert not sa.inspect(engine).has_table("skill_blobs")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(objects)).scalar_one() == len(rows)
    engine.dispose()

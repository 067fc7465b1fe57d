"""The one engine factory: URL normalisation, per-connection settings and dialect differences."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from shopfloor.config import Settings
from shopfloor.errors import ConfigError
from shopfloor.runtime import RunStore
from shopfloor.skills import SkillRegistry, TrustPolicy
from shopfloor.storage import (
    create_tables,
    dialect_for,
    engine_url,
    insert_ignore,
    make_engine,
    open_sqlite,
)
from shopfloor.telemetry import TraceStore


def test_postgresql_urls_mean_psycopg3() -> None:
    assert engine_url("postgresql://u:pw@h:5432/db") == "postgresql+psycopg://u:pw@h:5432/db"
    assert engine_url("postgres://u@h/db?sslmode=require") == "postgresql+psycopg://u@h/db?sslmode=require"
    # A driver the user named is the user's choice.
    assert engine_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert engine_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    engine = make_engine("postgresql://u@h/db")  # no connection is made
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    engine.dispose()


def test_unknown_or_broken_urls_say_what_to_write() -> None:
    with pytest.raises(
        ConfigError, match=r"unsupported database 'mysql'; use one of .*postgresql://.*sqlite://"
    ):
        make_engine("mysql://u@h/db")
    with pytest.raises(ConfigError, match="not a URL"):
        dialect_for("not a url")


def _pragmas(engine: sa.Engine) -> tuple[str, int, int, int]:
    with engine.connect() as conn:
        return (
            conn.exec_driver_sql("PRAGMA journal_mode").scalar_one(),
            conn.exec_driver_sql("PRAGMA synchronous").scalar_one(),
            conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one(),
            conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one(),
        )


def test_sqlite_connections_get_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    durable = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    relaxed = make_engine(f"sqlite:///{tmp_path / 'b.db'}", durability="normal")
    assert _pragmas(durable) == ("wal", 2, 30000, 1)  # synchronous 2 = FULL
    assert _pragmas(relaxed) == ("wal", 1, 30000, 1)  # 1 = NORMAL
    durable.dispose()
    relaxed.dispose()


def test_every_sql_store_opens_through_the_factory(tmp_path: Path, settings: Settings) -> None:
    """The run store, the trace store and the skill registry all get the same SQLite set-up
    (the registry used to open a bare engine: rollback journal, no busy timeout)."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    runs = RunStore.open(url)
    traces = TraceStore(url)
    registry = SkillRegistry(url, tmp_path / "skills", TrustPolicy.from_settings(settings))
    try:
        assert _pragmas(runs.engine)[0::2] == ("wal", 30000)
        assert _pragmas(traces.engine) == ("wal", 1, 30000, 1)
        assert _pragmas(registry._engine) == ("wal", 2, 30000, 1)
    finally:
        runs.close()
        traces.close()
        registry.close()


def test_insert_ignore_skips_existing_rows(sql_url: str) -> None:
    meta = sa.MetaData()
    table = sa.Table("t", meta, sa.Column("k", sa.String(8), primary_key=True), sa.Column("v", sa.Integer))
    engine = make_engine(sql_url)
    try:
        meta.create_all(engine)
        insert = insert_ignore(engine, table, ["k"])
        with engine.begin() as conn:
            conn.execute(insert, [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
        with engine.begin() as conn:
            conn.execute(insert, [{"k": "a", "v": 9}, {"k": "c", "v": 3}])
        with engine.connect() as conn:
            assert dict(conn.execute(sa.select(table.c.k, table.c.v)).all()) == {
                "a": 1,
                "b": 2,
                "c": 3,
            }
    finally:
        engine.dispose()


def test_several_processes_create_the_tables_of_a_fresh_database_at_once(sql_url: str) -> None:
    """Writers opening a fresh database at once both issued CREATE TABLE, and one failed ("already
    exists" on SQLite, the catalogue's unique index on PostgreSQL; a flaky two-process workspace test)."""
    metadata = sa.MetaData()
    sa.Table("things", metadata, sa.Column("key", sa.String(64), primary_key=True))
    engines = [make_engine(sql_url) for _ in range(6)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def open_one(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            create_tables(engine, metadata)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with engines[0].connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM things")).scalar_one() == 0
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("driver", ["sqlite3", "pysqlite3.dbapi2"])
def test_connections_racing_to_open_a_fresh_file_all_switch_it_to_wal(tmp_path: Path, driver: str) -> None:
    """SQLite answers "database is locked" at once, without its busy handler, to some of the
    connections switching a fresh file to WAL together (a CI failure: 3-9 of 1,800 opens); the same
    through pysqlite3 (document collections), whose ``OperationalError`` is a class of its own."""
    module = pytest.importorskip(driver)
    errors: list[BaseException] = []
    for trial in range(120):
        path = str(tmp_path / f"fresh-{trial}.db")
        barrier = threading.Barrier(6)

        def open_one(path: str = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                conn = open_sqlite(path, driver=module)
                try:
                    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
                finally:
                    conn.close()
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []

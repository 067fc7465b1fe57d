"""A run store opened on a database an earlier version made (no ``release``, ``track``, ``parent_run_id``
and ``fork_step`` columns) adds them; old rows read back with none, new rows keep them."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from shopfloor.runtime import RunRecord, RunStore
from shopfloor.storage import make_engine


def test_an_older_run_table_gets_the_release_and_track_columns(sql_url: str) -> None:
    engine = make_engine(sql_url)
    try:
        with engine.begin() as conn:  # the table as the release before this one made it
            conn.exec_driver_sql(
                "CREATE TABLE shopfloor_runs (run_id VARCHAR(64) PRIMARY KEY, agent VARCHAR(128) NOT NULL, "
                "spec_path TEXT NOT NULL, release_digest VARCHAR(80) NOT NULL, caller VARCHAR(256) NOT NULL, "
                "status VARCHAR(32) NOT NULL, task TEXT NOT NULL, model VARCHAR(256), output TEXT, "
                "stop_reason VARCHAR(32), error TEXT, input_tokens INTEGER NOT NULL, "
                "output_tokens INTEGER NOT NULL, model_calls INTEGER NOT NULL, steps INTEGER NOT NULL, "
                "faults TEXT, approval TEXT, executor_id VARCHAR(128), workspace_commit VARCHAR(80), "
                "pruned BOOLEAN NOT NULL, created_at FLOAT NOT NULL, started_at FLOAT, finished_at FLOAT)"
            )
            conn.exec_driver_sql(
                "INSERT INTO shopfloor_runs VALUES ('old', 'echo', '/a.yaml', 'sha256:1', 'me', 'completed', "
                "'t', NULL, 'x', NULL, NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL, false, 1.0, NULL, NULL)"
            )
        # Two processes opening it at once: both succeed, the columns are added once.
        errors: list[BaseException] = []

        def open_store() -> None:
            try:
                RunStore(engine, owns_engine=False)
            except BaseException as exc:  # (reported below)
                errors.append(exc)

        openers = [threading.Thread(target=open_store) for _ in range(3)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(timeout=60)
        assert not errors, errors
        store = RunStore(engine, owns_engine=False)
        columns = [c["name"] for c in sa.inspect(engine).get_columns("shopfloor_runs")]
        assert columns.count("release") == 1 and columns.count("track") == 1
        assert columns.count("parent_run_id") == 1 and columns.count("fork_step") == 1
        old = store.get("old")
        assert (old.release, old.track, old.output) == (None, None, "x")
        assert (old.parent_run_id, old.fork_step) == (None, None)
        store.create(
            RunRecord(
                run_id="new",
                agent="echo",
                spec_path="/b.yaml",
                release_digest="sha256:2",
                release="echo@2.0.0",
                track="candidate",
                caller="me",
                status="completed",
                task="t",
                parent_run_id="old",
                fork_step=2,
                created_at=time.time(),
            )
        )
        assert [r.run_id for r in store.by_release("echo", "echo@2.0.0", since=0)] == ["new"]
        new = store.get("new")
        assert (new.track, new.parent_run_id, new.fork_step) == ("candidate", "old", 2)
    finally:
        engine.dispose()

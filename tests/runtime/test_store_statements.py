"""The run store's statements for the step recorder's group commit (``update_statement``,
``append_events_statement``) are compiled once per shape and still carry each call's values."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from shopfloor.runtime import RunRecord, RunStore
from shopfloor.storage import make_engine


def test_statements_of_one_shape_are_compiled_once_and_carry_each_calls_values(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = RunStore(make_engine(f"sqlite:///{path}"))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        run = RunRecord(
            run_id="r1",
            agent="a",
            spec_path="/a",
            release_digest="d",
            caller="me",
            status="queued",
            task="t",
            created_at=1.0,
        )
        store.create(run)
        running = store.update_statement("r1", unless_terminal=True, status="running", started_at=2.0)
        waiting = store.update_statement(
            "r1", unless_terminal=True, status="waiting_approval", started_at=3.0, approval={"step": 1}
        )
        resumed = store.update_statement("r1", unless_terminal=True, status="running", started_at=4.0)
        ended = store.update_statement("r1", status="completed", faults={"model": {"timeout": 1}})
        assert resumed[0] is running[0]  # the same statement, compiled once
        assert waiting[0] != running[0]  # another shape: another statement
        for sql, rows in (running, waiting):
            assert conn.executemany(sql, rows).rowcount == 1
        got = store.get("r1")
        assert (got.status, got.started_at, got.approval) == ("waiting_approval", 3.0, {"step": 1})
        for sql, rows in (ended, resumed):
            conn.executemany(sql, rows)
        got = store.get("r1")  # an ended run is left as it ended: the terminal states are in the statement
        assert (got.status, got.started_at, got.faults) == ("completed", 3.0, {"model": {"timeout": 1}})

        event = {"run_id": "r1", "kind": "step", "step": 0, "data": "{}", "at": 5.0}
        first = store.append_events_statement([{**event, "seq": 0}, {**event, "seq": 1}])
        second = store.append_events_statement(
            [{**event, "seq": 1, "step": 9}, {**event, "seq": 2, "step": 2}]
        )
        assert second[0] is first[0]
        for sql, rows in (first, second):
            conn.executemany(sql, rows)
        assert [(e["seq"], e["step"]) for e in store.read_events("r1")] == [(0, 0), (1, 0), (2, 2)]
    finally:
        conn.close()
        store.close()


def test_a_runs_row_as_a_statement_is_the_row_create_writes(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = RunStore(make_engine(f"sqlite:///{path}"))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        run = RunRecord(
            run_id="r1",
            agent="a",
            spec_path="/a",
            release_digest="d",
            caller="me",
            status="queued",
            task="t",
            release="a@1.0.0",
            track="candidate",
            faults={"model": {"timeout": 1}},
            created_at=1.0,
        )
        store.create(run)
        sql, rows = store.create_statement(replace(run, run_id="r2", task="another", model="test"))
        assert store.create_statement(replace(run, run_id="r3"))[0] is sql  # compiled once
        assert conn.executemany(sql, rows).rowcount == 1
        assert store.get("r2") == replace(run, run_id="r2", task="another", model="test")
        assert store.get("r1") == run
        with pytest.raises(sqlite3.IntegrityError):  # a run id is created once
            conn.executemany(sql, rows)
    finally:
        conn.close()
        store.close()

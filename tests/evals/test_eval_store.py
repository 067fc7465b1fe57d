"""The eval store on SQLite and PostgreSQL: evaluations and their item rows, found by id prefix; items'
results written many at once; the run id derived from an item."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from shopfloor.errors import EvalError
from shopfloor.evals import EvalRecord, EvalStore, ItemResult, item_run_id


def _record(eval_id: str, created: float) -> EvalRecord:
    return EvalRecord(
        eval_id=eval_id,
        suite="s",
        suite_path="/s.yaml",
        suite_digest="sha256:s",
        dataset_digest="sha256:d",
        agent="a",
        agent_path="/a/agent.yaml",
        agent_digest="sha256:a",
        model=None,
        repeat=2,
        executor_id="eval-x",
        status="running",
        config={"scorers": [{"type": "exact"}], "gates": []},
        created_at=created,
    )


def test_evaluations_and_items_round_trip(sql_url: str) -> None:
    store = EvalStore.open(sql_url)
    try:
        items = [("q1", r, {"id": "q1", "input": "x"}) for r in range(2)] + [("q_2", 0, {"id": "q_2"})]
        store.create(_record("abc123", 1.0), items)
        store.create(_record("abd456", 2.0), [])
        assert [r.eval_id for r in store.list_evals()] == ["abd456", "abc123"]
        assert store.find("abc").config["scorers"] == [{"type": "exact"}]
        with pytest.raises(EvalError, match="more than one"):
            store.find("ab")
        with pytest.raises(EvalError, match="no evaluation 'a_'"):
            store.find("a_")
        rows = store.items("abc123")
        assert [(r.item_id, r.repeat, r.status) for r in rows] == [
            ("q1", 0, "pending"),
            ("q1", 1, "pending"),
            ("q_2", 0, "pending"),
        ]
        metrics = [{"name": "exact", "value": 1.0, "passed": True, "detail": {}}]
        store.update_item(
            "abc123", "q1", 1, status="done", run_id="r1", case={"output": "x"}, metrics=metrics
        )
        store.update("abc123", status="completed", summary={"rows": 3})
        row = store.items("abc123")[1]
        assert (row.status, row.run_id, row.case, row.metrics, row.finished) == (
            "done",
            "r1",
            {"output": "x"},
            metrics,
            True,
        )
        assert store.find("abc123").summary == {"rows": 3}
    finally:
        store.close()


def test_results_of_many_items_are_written_in_one_transaction(sql_url: str) -> None:
    store = EvalStore.open(sql_url)
    try:
        items = [(f"q{n}", 0, {"id": f"q{n}", "input": "x"}) for n in range(5)]
        store.create(_record("e1", 1.0), items)
        commits: list[object] = []
        sa.event.listen(store.engine, "commit", commits.append)
        metrics = [{"name": "exact", "value": 1.0, "passed": True, "detail": {}}]
        store.write_results(
            [
                ItemResult(
                    eval_id="e1",
                    item_id=f"q{n}",
                    repeat=0,
                    status="done" if n else "broken",
                    reason=None if n else "run failed",
                    run_id=item_run_id("e1", f"q{n}", 0) if n else None,
                    case={"output": str(n)} if n else None,
                    metrics=metrics,
                    finished_at=2.0,
                )
                for n in range(4)
            ]
        )
        store.write_results([])
        assert len(commits) == 1
        rows = store.items("e1")
        assert [(r.item_id, r.status) for r in rows] == [
            ("q0", "broken"),
            ("q1", "done"),
            ("q2", "done"),
            ("q3", "done"),
            ("q4", "pending"),
        ]
        assert (rows[0].reason, rows[0].run_id, rows[0].case) == ("run failed", None, None)
        assert (rows[2].run_id, rows[2].case, rows[2].metrics, rows[2].finished_at) == (
            item_run_id("e1", "q2", 0),
            {"output": "2"},
            metrics,
            2.0,
        )
    finally:
        store.close()


def test_an_items_run_id_is_derived_from_the_evaluation_the_item_and_the_repeat() -> None:
    run_id = item_run_id("e1", "q1", 0)
    assert re.fullmatch(r"[0-9a-f]{32}", run_id), "a run id as Runtime.start_run accepts one"
    assert item_run_id("e1", "q1", 0) == run_id
    others = {item_run_id("e2", "q1", 0), item_run_id("e1", "q2", 0), item_run_id("e1", "q1", 1)}
    # ids that would collide if the parts were simply concatenated
    others |= {item_run_id("e1q", "1", 0), item_run_id("e1", "q10", 0), item_run_id("e1", "q1", 10)}
    assert run_id not in others and len(others) == 6

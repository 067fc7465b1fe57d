"""The eval store on SQLite and PostgreSQL: evaluations and their item rows, found by id prefix."""

from __future__ import annotations

import pytest

from shopfloor.errors import EvalError
from shopfloor.evals import EvalRecord, EvalStore


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

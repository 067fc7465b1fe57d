"""``ResultWriter``: items' results written together (by count, by age, at close), off the items' path,
and a failed write raised at close, never dropped."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from shopfloor.evals import EvalRecord, EvalStore, ItemResult, ResultWriter


def _store(tmp_path: Path, items: int) -> EvalStore:
    store = EvalStore.open(f"sqlite:///{tmp_path / 'evals.db'}")
    record = EvalRecord(
        eval_id="e",
        suite="s",
        suite_path="/s.yaml",
        suite_digest="sha256:s",
        dataset_digest="sha256:d",
        agent="a",
        agent_path="/a",
        agent_digest="sha256:a",
        model=None,
        repeat=1,
        executor_id="eval-x",
        status="running",
        config={},
        created_at=1.0,
    )
    store.create(record, [(f"q{n}", 0, {"id": f"q{n}"}) for n in range(items)])
    return store


def _result(n: int, eval_id: str = "e") -> ItemResult:
    return ItemResult(
        eval_id=eval_id,
        item_id=f"q{n}",
        repeat=0,
        status="done",
        reason=None,
        run_id=None,
        case={"n": n},
        metrics=[],
        finished_at=time.time(),
    )


def _written(store: EvalStore) -> list[str]:
    return [row.item_id for row in store.items("e") if row.finished]


async def _until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not written in time"
        await asyncio.sleep(0.01)


async def test_results_are_written_a_batch_at_a_time_and_the_rest_at_close(tmp_path: Path) -> None:
    store = _store(tmp_path, 7)
    commits: list[object] = []
    sa.event.listen(store.engine, "commit", commits.append)
    writer = ResultWriter(store, every=3600, batch=3)
    try:
        writer.add(_result(0))
        writer.add(_result(1))
        await asyncio.sleep(0.2)
        assert _written(store) == [], "two results of a batch of three wait"
        writer.add(_result(2))
        await _until(lambda: _written(store) == ["q0", "q1", "q2"])
        for n in range(3, 7):
            writer.add(_result(n))
        await writer.close()
        assert _written(store) == [f"q{n}" for n in range(7)]
        assert len(commits) == 3, "7 results in 3 transactions (3 + 3 + 1 at close)"
    finally:
        store.close()


async def test_a_result_waits_at_most_every_seconds(tmp_path: Path) -> None:
    store = _store(tmp_path, 2)
    writer = ResultWriter(store, every=0.1, batch=100)
    try:
        writer.add(_result(0))
        await _until(lambda: _written(store) == ["q0"])
        immediate = ResultWriter(store, every=0, batch=100)
        immediate.add(_result(1))
        await _until(lambda: _written(store) == ["q0", "q1"])
        await immediate.close()
        await writer.close()
    finally:
        store.close()


async def test_a_failed_write_is_raised_at_close(tmp_path: Path) -> None:
    store = _store(tmp_path, 1)
    writer = ResultWriter(store, every=0, batch=100)
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE shopfloor_eval_items"))
        writer.add(_result(0))
        with pytest.raises(sa.exc.OperationalError, match="shopfloor_eval_items"):
            await writer.close()
    finally:
        store.close()

"""An item's case is gathered from what its run recorded: the run's row and every event, read in
pages, with no query more than the events need, by the store's cheapest read path (the harness's cost
per item, issue 18), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shopfloor.config import load_settings
from shopfloor.evals import Item, build_case
from shopfloor.evals._case import EVENT_PAGE
from shopfloor.runtime import RunRecord, Runtime, compose
from shopfloor.storage import EngineReader, reader


def _events(run_id: str, calls: int) -> list[dict[str, Any]]:
    """``calls`` calculator calls: each a model reply choosing it and the tool's result."""
    rows = []
    for n in range(calls):
        reply = {"tool": "calculator", "arguments": {"expression": f"{n}+1"}}
        result = {"tool": "calculator", "output": str(n + 1), "error": None}
        for kind, data in (("model_reply", reply), ("tool_result", result)):
            rows.append(
                {
                    "run_id": run_id,
                    "seq": len(rows),
                    "kind": kind,
                    "step": n,
                    "data": json.dumps(data),
                    "at": 1.0,
                }
            )
    return rows


@pytest.fixture
def runtime(tmp_path: Path, sql_url: str) -> Iterator[Runtime]:
    settings = load_settings({"SHOPFLOOR_HOME": str(tmp_path / "home"), "SHOPFLOOR_DATABASE_URL": sql_url})
    runtime = Runtime(compose(settings))
    yield runtime
    runtime.store.close()


def _record(runtime: Runtime, calls: int) -> str:
    run_id = uuid.uuid4().hex
    runtime.store.create(
        RunRecord(
            run_id=run_id,
            agent="a",
            spec_path="/a",
            release_digest="d",
            caller="me",
            status="completed",
            task="t",
            output="done",
            steps=calls,
            created_at=1.0,
            started_at=1.0,
            finished_at=3.5,
        )
    )
    runtime.store.append_events(_events(run_id, calls))
    return run_id


def _reads(runtime: Runtime) -> list[str] | None:
    """The SELECTs the store runs from now on; None where it reads by a path of its own (SQLite's raw
    connections, which no engine event sees)."""
    probe = reader(runtime.store.engine)
    probe.close()
    if not isinstance(probe, EngineReader):
        return None
    reads: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    sa.event.listen(runtime.store.engine, "before_cursor_execute", seen)
    return reads


@pytest.mark.parametrize(
    ("calls", "reads"),
    [
        (2, 1),  # a short run: one read, no empty one after it
        (EVENT_PAGE // 2, 2),  # exactly a page of events: the empty read after it says it was the last
        (EVENT_PAGE + 3, 3),  # more than two pages: every event, in order
    ],
)
async def test_a_case_holds_every_event_read_with_no_extra_query(
    runtime: Runtime, calls: int, reads: int
) -> None:
    run_id = _record(runtime, calls)
    queries = _reads(runtime)

    case = await build_case(runtime, Item(id="q", input="t"), run_id)

    if queries is not None:
        event_reads = [q for q in queries if "shopfloor_run_events" in q]
        assert len(event_reads) == reads, event_reads
        (run_read,) = [q for q in queries if "FROM shopfloor_runs" in q]
        assert "LIKE" not in run_read.upper(), f"the run is read by a prefix scan: {run_read}"
    assert len(case.calls) == calls, "every event, across pages"
    assert [c.output for c in case.calls] == [str(n + 1) for n in range(calls)]
    assert case.calls[-1].arguments == {"expression": f"{calls - 1}+1"}
    assert (case.status, case.output, case.steps, case.latency) == ("completed", "done", calls, 2.5)

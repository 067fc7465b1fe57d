"""A run's events as the event log stores them: each event's data written as JSON text."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopfloor.agent import RunEvent
from shopfloor.runtime._events import EventLog
from shopfloor.runtime._store import RunStore


class _Rows(RunStore):
    """A store that keeps the rows it is given (the event log's only use of it here)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append_events(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)


_LEAF = st.one_of(
    st.text(),
    st.sampled_from(["sk-" + "a" * 20, 'password="hunter2"', "Bearer abcdefghijkl", "\u017f", "é\u2028"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.binary(max_size=4),
    st.just(math.nan),
    st.just(object),  # written as its ``str``
)
_KEY = st.one_of(st.text(max_size=6), st.integers(), st.floats(allow_nan=True), st.booleans(), st.none())
_DATA = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        _LEAF,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.tuples(inner, inner), st.dictionaries(_KEY, inner, max_size=3)
        ),
        max_leaves=12,
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_DATA)
async def test_an_events_stored_text_is_json_dumps_of_its_data(data: dict[str, Any]) -> None:
    """The text stored for an event is ``json.dumps(data, default=str, separators=(",", ":"))`` of its
    data, whatever the data holds (keys that are not strings, NaN, bytes, nesting, text shaped like a
    secret: redaction is the loop's, before the event reaches the log)."""
    store = _Rows()
    log = EventLog(store)
    log.sink("r1")(RunEvent(kind="tool_result", run_id="r1", step=1, data=data))
    await log.close()
    (row,) = store.rows
    assert row["data"] == json.dumps(data, default=str, separators=(",", ":"))


class _Batches(RunStore):
    """A store that keeps each batch it is given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def append_events(self, rows: list[dict[str, Any]]) -> None:
        self.batches.append([row["seq"] for row in rows])


async def test_buffered_events_are_written_an_interval_after_the_first_and_a_flush_writes_them_now() -> None:
    """Events buffered are written together once the interval has passed, without a flush; a flush
    writes what is buffered at once, and nothing is written again for it later."""
    store = _Batches()
    log = EventLog(store, interval=0.05)
    sink = log.sink("r1")
    for step in range(3):
        sink(RunEvent(kind="step", run_id="r1", step=step, data={}))
    assert store.batches == []
    await asyncio.sleep(0.3)
    assert store.batches == [[0, 1, 2]]
    sink(RunEvent(kind="step", run_id="r1", step=3, data={}))
    await log.flush()
    assert store.batches == [[0, 1, 2], [3]]
    await asyncio.sleep(0.3)  # nothing was left due
    sink(RunEvent(kind="step", run_id="r1", step=4, data={}))
    await asyncio.sleep(0.3)
    await log.close()
    assert store.batches == [[0, 1, 2], [3], [4]]

"""Telemetry and replay with the durable runtime: spans nest under DBOS steps; the DBOS record replays."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tel_helpers import by_name

from shopfloor.agent import build_agent
from shopfloor.config import Settings
from shopfloor.ops.replay import replay_run
from shopfloor.runtime import Runtime, compose
from shopfloor.spec import load_spec, spec_resolvers
from shopfloor.telemetry import TraceStore, configure_telemetry, trace_store_url

SPEC = """\
name: durable-calc
model: test
tools:
  - name: calculator
    source: builtin:calculator
"""


async def test_a_durable_run_is_traced_and_replays_the_same_from_dbos(
    settings: Settings, tmp_path: Path
) -> None:
    spec = tmp_path / "agent.yaml"
    spec.write_text(SPEC)
    with configure_telemetry(settings) as telemetry:
        async with Runtime(compose(settings), caller="tester") as runtime:
            run_id = await runtime.start_run(spec, "what is 17*23?")
            async with asyncio.timeout(60):
                record = await runtime.wait(run_id)
            recorded = await runtime.recorded_steps(run_id)
        telemetry.force_flush()
        spans = telemetry.store.run_spans(run_id)
    assert record.status == "completed"
    root = spans[0]
    assert root.name == "invoke_agent durable-calc"
    assert root.attributes["gen_ai.conversation.id"] == run_id
    assert {s.trace_id for s in spans} == {root.trace_id}
    tool = by_name(spans, "execute_tool calculator")[0]
    assert tool.parent_span_id == root.span_id
    assert all(s.run_id == run_id for s in spans)
    assert [s.attributes["shopfloor.step.name"] for s in spans if "shopfloor.step.name" in s.attributes] == [
        r.name for r in recorded
    ]

    report = await replay_run(
        build_agent(load_spec(spec, resolvers=spec_resolvers()), settings),
        record.task,
        recorded,
        run_id=run_id,
        expected_output=record.output,
    )
    assert report.same, report.reason


async def test_runs_are_traced_unless_telemetry_is_off(settings: Settings, tmp_path: Path) -> None:
    spec = tmp_path / "agent.yaml"
    spec.write_text(SPEC)
    stored = []
    for enabled in (True, False):
        configured = settings.model_copy(
            update={"telemetry": settings.telemetry.model_copy(update={"enabled": enabled})}
        )
        async with Runtime(compose(configured)) as runtime:
            run_id = await runtime.start_run(spec, "what is 17*23?")
            async with asyncio.timeout(60):
                record = await runtime.wait(run_id)
            traced = runtime.telemetry is not None
        assert record.status == "completed" and traced == enabled
        stored.append(len(TraceStore(trace_store_url(settings)).run_spans(run_id)))
    assert stored[0] >= 3 and stored[1] == 0

"""The composition root: a run is built from the Services its Runtime was given, nothing process-wide."""

from __future__ import annotations

import asyncio

import pytest
from runtime_support import AgentDir

from shopfloor.config import Settings
from shopfloor.models import Model, ProviderFactory
from shopfloor.runtime import Runtime, compose
from shopfloor.runtime._workflow import Executors
from shopfloor.telemetry import current_telemetry

pytestmark = pytest.mark.usefixtures("db_url")


async def test_a_run_makes_its_model_with_the_providers_of_its_services(
    rt_settings: Settings, agent: AgentDir
) -> None:
    services = compose(rt_settings)
    function: ProviderFactory = services.models.get("function")
    made: list[str] = []

    def counting(name: str, settings: Settings) -> Model:
        made.append(name)
        return function(name, settings)

    services.models.register("function", counting)
    async with Runtime(services) as runtime:
        run_id = await runtime.start_run(agent.path, "ticks=1")
        async with asyncio.timeout(30):
            record = await runtime.wait(run_id)
    assert record.status == "completed", record.error
    assert made == ["agent_tools:script"]
    assert record.release_digest == services.load_spec(agent.path).digest
    # Another process's services are untouched by this one's registration.
    assert compose(rt_settings).models.get("function") is not counting


async def test_a_runtime_shares_its_services_engine_and_traces_to_their_telemetry(
    rt_settings: Settings, agent: AgentDir
) -> None:
    services = compose(rt_settings)
    try:
        assert services.telemetry is services.telemetry is not None  # built once, at first use
        async with services.runtime() as runtime:
            assert runtime.store.engine is services.engines.get(rt_settings.db_url)
            assert current_telemetry() is None  # active only around the runs it executes
            run_id = await runtime.start_run(agent.path, "ticks=1")
            async with asyncio.timeout(30):
                record = await runtime.wait(run_id)
            assert runtime.telemetry is services.telemetry
        assert record.status == "completed", record.error
        assert services.telemetry is not None
        spans = services.telemetry.store.run_spans(run_id)
        assert any(span.name.startswith("invoke_agent") for span in spans)
        registry = services.skill_registry()
        registry.close()  # the shared engine stays open for the rest of the process
        assert runtime.store.list_runs() != []
    finally:
        services.close()
    assert len(services.engines) == 0


def test_telemetry_is_not_built_where_it_is_off(rt_settings: Settings) -> None:
    off = rt_settings.model_copy(
        update={"telemetry": rt_settings.telemetry.model_copy(update={"enabled": False})}
    )
    services = compose(off)
    assert services.telemetry is None
    services.close()


def test_one_runtime_executes_as_each_executor_id() -> None:
    executors = Executors()
    first, second = object(), object()
    leave = executors.enter("exec-1", first)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="exec-1 is executing already"):
        executors.enter("exec-1", second)  # type: ignore[arg-type]
    assert executors.get("exec-1") is first
    leave()
    with pytest.raises(RuntimeError, match="dispatched to executor exec-1, which has no active Runtime"):
        executors.get("exec-1")
    executors.enter("exec-1", second)  # type: ignore[arg-type]
    leave()  # a stale leave does not take out the runtime that came after
    assert executors.get("exec-1") is second

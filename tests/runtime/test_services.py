"""The composition root: a run is built from the Services its Runtime was given, nothing process-wide."""

from __future__ import annotations

import asyncio

import pytest
from runtime_support import AgentDir

from shopfloor.config import Settings
from shopfloor.models import Model, ProviderFactory
from shopfloor.runtime import Runtime, compose

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

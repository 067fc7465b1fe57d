"""An AgentDojo suite's functions as Shopfloor tools, run on the scenario of the run's workspace.

Each call reads the environment the run has reached (``agentdojo/state.json``, else the scenario's
initial one), runs the package's function on it through its ``FunctionsRuntime`` and writes the
environment back; the run commits the file with the step. A call re-executed after a crash (same
idempotency key) gives its recorded result again instead of acting twice.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from shopfloor.errors import ToolError, WorkspaceNotFoundError
from shopfloor.evals._agentdojo import (
    AGENTDOJO_SUITES,
    DEFAULT_VERSION,
    SCENARIO_FILE,
    STATE_FILE,
    Scenario,
    initial_environment,
    task_suite,
)
from shopfloor.tools import Tool, ToolContext

__all__ = ["AgentDojoTool", "agentdojo_tools", "run_function"]


def run_function(suite: Any, environment: Any, name: str, args: dict[str, Any]) -> tuple[str, str | None]:
    """Run the suite's function ``name`` on ``environment`` (changed in place), as AgentDojo's tool
    executor does: (its result as the model sees it, the error or None)."""
    from agentdojo.agent_pipeline.tool_execution import tool_result_to_str
    from agentdojo.functions_runtime import FunctionsRuntime

    result, error = FunctionsRuntime(suite.tools).run_function(environment, name, args)
    return tool_result_to_str(result), error


class AgentDojoTool(Tool):
    """One function of an AgentDojo suite: its name, description and parameters' schema."""

    def __init__(self, suite: str, version: str, function: Any) -> None:
        self.suite = suite
        self.version = version
        self.name = function.name
        self.description = function.description
        self.input_schema = function.parameters.model_json_schema()

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        view = ctx.services.workspace
        if view is None:
            raise ToolError(f"{self.name}: an AgentDojo tool needs the run's workspace (its scenario)")
        try:
            scenario = Scenario.from_dict(json.loads(await view.read(SCENARIO_FILE)))
        except WorkspaceNotFoundError:
            raise ToolError(
                f"{self.name}: no {SCENARIO_FILE} in the workspace: AgentDojo tools run in an "
                "evaluation of an agentdojo dataset, which writes each item's scenario there"
            ) from None
        except ValueError as exc:
            raise ToolError(f"{self.name}: {SCENARIO_FILE} is not a scenario: {exc}") from None
        if (scenario.suite, scenario.version) != (self.suite, self.version):
            raise ToolError(
                f"{self.name}: the scenario is of AgentDojo {scenario.suite} {scenario.version}, "
                f"this tool of {self.suite} {self.version}"
            )
        state: dict[str, Any] | None = None
        if await view.exists(STATE_FILE):
            state = json.loads(await view.read(STATE_FILE))
        assert state is None or isinstance(state, dict)
        done = (state or {}).get("applied", {}).get(ctx.idempotency_key)
        if done is None:
            state, done = await asyncio.to_thread(self._apply, scenario, state, args, ctx.idempotency_key)
            await view.write(STATE_FILE, json.dumps(state, sort_keys=True))
        output, error = done
        if error is not None:
            raise ToolError(error)
        return output

    def _apply(
        self, scenario: Scenario, state: dict[str, Any] | None, args: dict[str, Any], key: str
    ) -> tuple[dict[str, Any], list[str | None]]:
        suite = task_suite(scenario.suite, scenario.version)
        if state is None:
            environment = initial_environment(scenario)
        else:
            environment = suite.environment_type.model_validate(state["environment"])
        output, error = run_function(suite, environment, self.name, args)
        done: list[str | None] = [output, error]
        applied = dict((state or {}).get("applied", {}))
        applied[key] = done
        return {"environment": environment.model_dump(mode="json"), "applied": applied}, done


def agentdojo_tools(suite: str, version: str = DEFAULT_VERSION) -> list[Tool]:
    """Every function of AgentDojo's ``suite`` as a tool (an agent spec's ``tools:`` entry may name a
    module attribute holding this list)."""
    if suite not in AGENTDOJO_SUITES:
        raise ToolError(f"AgentDojo has no suite {suite!r}; suites: {', '.join(AGENTDOJO_SUITES)}")
    return [AgentDojoTool(suite, version, function) for function in task_suite(suite, version).tools]

"""From a loaded agent spec to a ready AgentLoop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shopfloor.agent._builtin import load_tool
from shopfloor.agent._loop import AgentLoop
from shopfloor.config import Settings
from shopfloor.models import Model, resolve_model
from shopfloor.spec import LoadedSpec
from shopfloor.tools import Tool

__all__ = ["build_agent"]


def build_agent(
    loaded: LoadedSpec,
    settings: Settings,
    *,
    model: str | Model | None = None,
    extra_tools: Sequence[Tool] = (),
    services: Mapping[str, Any] | None = None,
) -> AgentLoop:
    """Make the loop for ``loaded``: its model (or ``model``, overriding the spec's for one run),
    its declared tools and ``extra_tools`` (skills, workspace file tools) given by the runtime."""
    spec = loaded.spec
    chosen = model or spec.model
    resolved = chosen if isinstance(chosen, Model) else resolve_model(chosen, settings)
    tools = [load_tool(tool, loaded.base_dir) for tool in spec.tools] + list(extra_tools)
    return AgentLoop(
        model=resolved,
        tools=tools,
        instructions=spec.instructions,
        limits=spec.limits,
        decision=spec.decision,
        approvers=tuple(spec.permissions.approvers),
        services=services,
        name=spec.name,
        trace_attributes={
            "gen_ai.agent.version": spec.version,
            "shopfloor.agent.spec": str(loaded.path),
            "shopfloor.agent.digest": loaded.digest,
        },
    )

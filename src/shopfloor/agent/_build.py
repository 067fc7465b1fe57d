"""From a loaded agent spec to a ready AgentLoop."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shopfloor._registry import Registry
from shopfloor.agent._builtin import BuiltinFactory, load_tool
from shopfloor.agent._loop import AgentLoop
from shopfloor.config import Settings
from shopfloor.errors import SourceLocation, SpecError
from shopfloor.models import Model, ProviderFactory, resolve_model
from shopfloor.security import Admission, Guardrail, Guardrails, Principal, guardrails
from shopfloor.spec import Limits, LoadedSpec
from shopfloor.tools import Tool, ToolServices

__all__ = ["build_agent", "build_guardrails"]


def build_guardrails(
    loaded: LoadedSpec, registry: Registry[Callable[..., Guardrail]] | None = None
) -> Guardrails | None:
    """The spec's ``guardrails``, made by name from ``registry`` (the shipped ones by default)."""
    if not loaded.spec.guardrails:
        return None
    registry = registry or guardrails()
    rails = []
    for index, entry in enumerate(loaded.spec.guardrails):
        try:
            rails.append(registry.get(entry.name)(**entry.options))
        except (KeyError, TypeError, ValueError) as exc:
            where = SourceLocation(file=str(loaded.path))
            raise SpecError([(where, f"guardrails[{index}] ({entry.name}): {exc}")]) from None
    return Guardrails(rails)


def build_agent(
    loaded: LoadedSpec,
    settings: Settings,
    *,
    model: str | Model | None = None,
    extra_tools: Sequence[Tool] = (),
    services: ToolServices | None = None,
    wrap_tool: Callable[[Tool], Tool] | None = None,
    providers: Registry[ProviderFactory] | None = None,
    builtins: Registry[BuiltinFactory] | None = None,
    admission: Admission | None = None,
    limits: Limits | None = None,
) -> AgentLoop:
    """Make the loop for ``loaded``: its model (or ``model``, overriding the spec's for one run),
    its declared tools and ``extra_tools`` (skills) given by the runtime. Built-in tools get
    ``services`` (the run's workspace view...); ``wrap_tool`` wraps every tool (the runtime
    commits the workspace after each call that changed it); ``providers`` make the model from its
    reference and ``builtins`` the ``builtin:NAME`` tools (the built-in ones by default); each model
    call is admitted against ``admission`` (the budgets) as the agent's service identity. ``limits``: the
    run's limits in place of the spec's (a child run's: its share of what its parent had left)."""
    spec = loaded.spec
    chosen = model or spec.model
    resolved = chosen if isinstance(chosen, Model) else resolve_model(chosen, settings, providers)
    tools = [made for tool in spec.tools for made in load_tool(tool, loaded.base_dir, services, builtins)]
    tools += extra_tools
    if wrap_tool is not None:
        tools = [wrap_tool(tool) for tool in tools]
    return AgentLoop(
        model=resolved,
        tools=tools,
        instructions=spec.instructions,
        limits=limits or spec.limits,
        decision=spec.decision,
        answer=spec.answer,
        approvers=tuple(spec.permissions.approvers),
        guardrails=build_guardrails(loaded),
        admission=admission,
        principal=Principal(
            id=f"agent:{spec.name}",
            kind="agent",
            name=spec.name,
            team=spec.permissions.team,
            method="run",
        ),
        services=services,
        # a tool's ``ask_model`` route (the research router's ``hard`` model) made as the spec's model is
        models=lambda ref: resolve_model(ref, settings, providers),
        name=spec.name,
        trace_attributes={
            "gen_ai.agent.version": spec.version,
            "shopfloor.agent.spec": str(loaded.path),
            "shopfloor.agent.digest": loaded.digest,
        },
    )

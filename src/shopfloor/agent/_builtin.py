"""Built-in tools an agent spec can grant as ``builtin:NAME``, and how a spec's tool
sources (``builtin:NAME``, ``FILE.py:ATTR``, ``module:attr``) become Tool objects.

``builtin_tools()`` is a fresh registry of the built-ins; the composition root holds one
(other packages may add to it) and passes it to ``load_tool``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shopfloor._registry import Registry
from shopfloor.errors import ConfigError
from shopfloor.spec import ToolSpec
from shopfloor.tools import FunctionTool, Tool, ToolServices, calculate

__all__ = ["BuiltinFactory", "builtin_tools", "calculate", "import_source", "load_tool"]

#: Makes the tools of a ``builtin:NAME`` entry; ``services`` are the run's (the workspace view...).
BuiltinFactory = Callable[[ToolSpec, ToolServices], Tool | list[Tool]]

#: Longest expression computed on the event loop, in characters: even with every operation at the
#: integer limit it takes well under a millisecond (a longer one, up to ~5 ms at MAX_EXPRESSION, runs in
#: a thread, as any plain function tool's call does).
INLINE_EXPRESSION = 100


def _calculator(spec: ToolSpec, services: ToolServices) -> Tool:
    return FunctionTool(
        calculate,
        name=spec.name,
        description=spec.description or (calculate.__doc__ or ""),
        requires_approval=spec.requires_approval,
        approval_timeout=spec.approval_timeout,
        inline=_short_expression,
        effects=False,  # arithmetic on its arguments: running it again after a crash changes nothing
    )


def _short_expression(args: dict[str, Any]) -> bool:
    return len(args["expression"]) <= INLINE_EXPRESSION


def _workspace_files(spec: ToolSpec, services: ToolServices) -> list[Tool]:
    """read_file, write_file, edit_file, list_files, grep_files over the run's workspace view."""
    from shopfloor.workspace import workspace_tools

    view = services.workspace
    if view is None:
        raise ConfigError(
            f"tool {spec.name!r}: builtin:workspace needs the run's workspace; run the agent with "
            "`shopfloor run`, which opens it"
        )
    return workspace_tools(view)


def builtin_tools() -> Registry[BuiltinFactory]:
    """The ``builtin:NAME`` tools: ``calculator`` and ``workspace`` (the file tools)."""
    return Registry("built-in tool", {"calculator": _calculator, "workspace": _workspace_files})


def import_source(source: str, base_dir: Path) -> Any:
    """The attribute ``FILE.py:NAME`` (relative to ``base_dir``) or ``MODULE:NAME`` names."""
    target, _, attr = source.rpartition(":")
    if target.endswith(".py"):
        path = (base_dir / target).resolve()
        if not path.is_file():
            raise ConfigError(f"tool source {source!r}: no file {path}")
        module_spec = importlib.util.spec_from_file_location(f"shopfloor_agent_tools_{abs(hash(path))}", path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"tool source {source!r}: cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not hasattr(module, attr):
        raise ConfigError(f"tool source {source!r}: {target} has no attribute {attr!r}")
    return getattr(module, attr)


def load_tool(
    spec: ToolSpec,
    base_dir: Path,
    services: ToolServices | None = None,
    builtins: Registry[BuiltinFactory] | None = None,
) -> list[Tool]:
    """Make the tools that a spec's tool entry names (a built-in or a list of tools may give several);
    ``builtin:NAME`` comes from ``builtins`` (``builtin_tools()`` by default)."""
    kind, _, rest = spec.source.partition(":")
    if kind == "builtin":
        builtins = builtins if builtins is not None else builtin_tools()
        if rest not in builtins:
            raise ConfigError(
                f"tool {spec.name!r}: no built-in tool {rest!r}; "
                f"built-ins: {', '.join(sorted(builtins.names()))}"
            )
        made = builtins.get(rest)(spec, services or ToolServices())
        made = made if isinstance(made, list) else [made]
        if spec.effects is not None:  # made for this entry alone: the spec's word is theirs
            for tool in made:
                tool.effects = spec.effects
        return made
    if not rest:
        raise ConfigError(
            f"tool {spec.name!r}: source {spec.source!r} must be builtin:NAME, FILE.py:ATTR or module:attr"
        )
    target = import_source(spec.source, base_dir)
    tools: list[Tool] | None = None
    if isinstance(target, Tool):
        tools = [target]
    # a list of tools gives each of them (a benchmark's whole tool set under one entry)
    elif isinstance(target, list | tuple) and target and all(isinstance(t, Tool) for t in target):
        tools = list(target)
    if tools is not None:
        if spec.effects is not None and any(tool.effects != spec.effects for tool in tools):
            # A Tool object is the module's, shared by every run: its class says what it does.
            raise ConfigError(
                f"tool {spec.name!r}: effects: {str(spec.effects).lower()} is for a function source; "
                f"{spec.source} is a Tool, which declares its own (Tool.effects)"
            )
        return tools
    if callable(target):
        tool = FunctionTool(
            target,
            name=spec.name,
            description=spec.description,
            requires_approval=spec.requires_approval,
            approval_timeout=spec.approval_timeout,
            effects=True if spec.effects is None else spec.effects,
        )
        return [tool]
    raise ConfigError(f"tool {spec.name!r}: {spec.source} is neither a Tool, a list of tools nor a function")

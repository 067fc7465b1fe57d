"""Where the MCP gateway's tools come from: the server's registered agents and configured upstream MCP
servers, each a ``ToolSource`` (the ABC) in the ``tool_sources()`` registry.

A tool carries the permission its call needs and the team that owns it, so that the gateway shows a
principal only what the authoriser and the policy let it call. Names are stable and deterministic:
``agent__NAME`` for an agent, ``SERVER__TOOL`` for an upstream's tool (the connectors' naming), so
adding an upstream never renames another's tools.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shopfloor._registry import Registry
from shopfloor.connectors import Connector, McpTool, Secrets, connector_kinds, tool_name
from shopfloor.errors import AgentNotFoundError, ShopfloorError, ToolError
from shopfloor.gateway.api._store import AgentRecord, ControlStore
from shopfloor.runtime import RunRecord, Runtime
from shopfloor.spec import ConnectorSpec
from shopfloor.tools import Tool, ToolContext

__all__ = [
    "AGENT_PREFIX",
    "AgentTools",
    "CallOutcome",
    "GatewayTool",
    "Progress",
    "ToolSource",
    "UpstreamTools",
    "tool_sources",
    "upstream_source",
    "value_outcome",
]

AGENT_PREFIX = "agent"
_ENDED = frozenset({"completed", "failed", "cancelled", "waiting_approval"})

#: reports progress of a long call: (progress so far, total if known, a message)
Progress = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class GatewayTool:
    """A tool as the gateway serves it."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    #: the permission a call needs, asked on ``team`` (None: the caller's own team)
    permission: str
    team: str | None = None
    #: the source's own handle of the tool (an agent's ``AgentRecord``, the upstream's Tool)
    target: Any = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True)
class CallOutcome:
    """A tool call's answer: its text, a structured value where there is one, and whether it failed."""

    text: str
    structured: dict[str, Any] | None = None
    is_error: bool = False
    #: MCP content blocks (``mcp_types`` text, image, audio, resource...) sent instead of ``text``,
    #: as an upstream answered them
    blocks: tuple[Any, ...] = ()


class ToolSource(ABC):
    """A family of gateway tools."""

    @abstractmethod
    async def tools(self) -> list[GatewayTool]:
        """The tools this source serves now (a source may answer from a cache)."""

    async def find(self, name: str) -> GatewayTool | None:
        """The tool named ``name`` if this source serves it (a source may look it up directly)."""
        return next((tool for tool in await self.tools() if tool.name == name), None)

    @abstractmethod
    async def call(
        self, tool: GatewayTool, args: dict[str, Any], *, caller: str, progress: Progress
    ) -> CallOutcome:
        """Call ``tool`` for ``caller`` (a principal id), its progress reported through ``progress``;
        tool failures are an outcome with ``is_error``, never an exception."""

    async def aclose(self) -> None:  # noqa: B027 - a source holding nothing closes nothing
        """Release what the source holds (upstream sessions)."""


class AgentTools(ToolSource):
    """The agents registered with the server, each a tool taking ``task``: a call is an ordinary durable
    run queued for the server's workers, its caller the principal, its events reported as progress."""

    def __init__(self, *, runtime: Runtime, store: ControlStore, timeout: float) -> None:
        self._runtime = runtime
        self._store = store
        self._timeout = timeout
        self._teams: dict[tuple[str, str], str | None] = {}

    async def tools(self) -> list[GatewayTool]:
        return [await self._tool(agent) for agent in await asyncio.to_thread(self._store.list_agents)]

    async def find(self, name: str) -> GatewayTool | None:
        prefix = tool_name(AGENT_PREFIX, "")
        if not name.startswith(prefix):
            return None
        try:
            agent = await asyncio.to_thread(self._store.agent, name[len(prefix) :])
        except AgentNotFoundError:
            return None
        found = await self._tool(agent)
        return found if found.name == name else None  # (a name the renaming changed: not this one)

    async def _tool(self, agent: AgentRecord) -> GatewayTool:
        return GatewayTool(
            name=tool_name(AGENT_PREFIX, agent.name),
            description=f"Run the agent {agent.name} (version {agent.version}) on a task; "
            "answers with its final answer",
            input_schema={
                "type": "object",
                "properties": {"task": {"type": "string", "description": "what the agent is to do"}},
                "required": ["task"],
                "additionalProperties": False,
            },
            permission="runs:start",
            team=await self._team(agent.spec_path, agent.digest),
            target=agent,
        )

    async def _team(self, spec_path: str, digest: str) -> str | None:
        key = (spec_path, digest)
        if key not in self._teams:
            try:
                loaded = await asyncio.to_thread(self._runtime.services.load_spec, spec_path)
                self._teams[key] = loaded.spec.permissions.team
            except (ShopfloorError, OSError):
                self._teams[key] = None
        return self._teams[key]

    async def call(
        self, tool: GatewayTool, args: dict[str, Any], *, caller: str, progress: Progress
    ) -> CallOutcome:
        task = args.get("task")
        if not isinstance(task, str) or not task:
            return CallOutcome(
                text=f"{tool.name}: the argument 'task' must be a non-empty string", is_error=True
            )
        agent: AgentRecord = tool.target
        # Started by the agent's name: its deployment picks the release (and canary track) for the caller.
        run_id = await self._runtime.start_run(
            agent.spec_path, task, detach=True, caller=caller, agent=agent.name
        )
        try:
            record = await self._until_ended(run_id, progress)
        except TimeoutError:
            return CallOutcome(
                text=f"run {run_id} is still running after {self._timeout:g} s; follow it at "
                f"GET /v1/runs/{run_id}",
                structured={"run_id": run_id, "status": "running"},
                is_error=True,
            )
        return _outcome(record)

    async def _until_ended(self, run_id: str, progress: Progress) -> RunRecord:
        seq, seen = -1, 0
        poll = self._runtime.settings.runtime.poll_interval
        async with asyncio.timeout(self._timeout):
            while True:
                record = await self._runtime.get_run(run_id)
                async for stored in self._runtime.events(run_id, after=seq, follow=False):
                    seq, seen = stored.seq, seen + 1
                    await progress(float(seen), None, f"run {run_id}: {stored.event.kind}")
                if record.status in _ENDED:
                    return record
                await asyncio.sleep(poll)


def _outcome(record: RunRecord) -> CallOutcome:
    structured = {"run_id": record.run_id, "status": record.status, "output": record.output}
    if record.status == "completed":
        return CallOutcome(text=record.output or "", structured=structured)
    if record.status == "waiting_approval":
        return CallOutcome(
            text=f"run {record.run_id} is waiting for an approval (POST /v1/runs/{record.run_id}/approve)",
            structured=structured,
            is_error=True,
        )
    reason = record.error or record.stop_reason or ""
    return CallOutcome(
        text=f"run {record.run_id} {record.status}" + (f": {reason}" if reason else ""),
        structured=structured,
        is_error=True,
    )


class UpstreamTools(ToolSource):
    """An upstream MCP server's tools as ``SERVER__TOOL``, through a connector of the ``connectors``
    layer (its supervised session, reconnected when the server ends it, its timeout, its credentials
    from secrets). The list is asked again once it is older than ``ttl`` seconds; an upstream that
    cannot be listed serves the last list it gave, or none."""

    def __init__(
        self,
        connector: Connector,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connector = connector
        self.name = connector.name
        self._ttl = ttl
        self._clock = clock
        self._listed: list[GatewayTool] = []
        self._listed_at: float | None = None
        self._lock = asyncio.Lock()
        #: the last listing error (shown by the gateway's log and its tests), None after a success
        self.last_error: str | None = None

    async def tools(self) -> list[GatewayTool]:
        async with self._lock:
            now = self._clock()
            if self._listed_at is not None and now - self._listed_at < self._ttl:
                return self._listed
            try:
                found = await self.connector.tools()
            except ToolError as exc:
                self.last_error = str(exc)
                self._listed_at = now  # retried after the TTL, not on every request
                return self._listed
            self.last_error = None
            self._listed = [_upstream_tool(tool) for tool in found]
            self._listed_at = now
            return self._listed

    async def call(
        self, tool: GatewayTool, args: dict[str, Any], *, caller: str, progress: Progress
    ) -> CallOutcome:
        del caller  # the upstream sees the gateway's own credentials, never the caller's
        key = uuid.uuid4().hex
        context = ToolContext(run_id="mcp-gateway", step=0, call_id=key, idempotency_key=key)
        target: Tool = tool.target

        report = progress

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            await report(progress, total, message or "")

        try:
            if not isinstance(target, McpTool):  # the resources and prompts tools answer values
                return value_outcome(await target.call(args, context))
            result = await target.connector.call_tool_result(
                target.remote_name, args, context, progress=relay
            )
        except ToolError as exc:
            return CallOutcome(text=str(exc), is_error=True)
        # relayed whole: images, audio and embedded resources reach the caller as the upstream sent them
        return CallOutcome(
            text="",
            structured=result.structured_content,
            is_error=result.is_error,
            blocks=tuple(_scrubbed(block, target.connector.secrets) for block in result.content),
        )

    async def aclose(self) -> None:
        await self.connector.aclose()


def _scrubbed(block: Any, secrets: Secrets) -> Any:
    """A text block with the upstream's own credentials (resolved secrets) taken out of its text."""
    text = getattr(block, "text", None)
    if getattr(block, "type", None) != "text" or not isinstance(text, str):
        return block
    return block.model_copy(update={"text": secrets.scrub(text)})


def _upstream_tool(tool: Tool) -> GatewayTool:
    return GatewayTool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.server_schema if isinstance(tool, McpTool) else tool.input_schema,
        permission="routes:call",
        target=tool,
    )


def value_outcome(value: Any) -> CallOutcome:
    """A tool's JSON value as an answer: a string as its text, anything else as JSON (an object also
    as the structured content)."""
    if isinstance(value, str):
        return CallOutcome(text=value)
    text = json.dumps(value, default=str)
    return CallOutcome(text=text, structured=value if isinstance(value, dict) else None)


def upstream_source(spec: ConnectorSpec, secrets: Secrets, *, ttl: float) -> UpstreamTools:
    """The source of an upstream described as a connector spec (kind ``mcp``)."""
    return UpstreamTools(connector_kinds().get("mcp")(spec, secrets), ttl=ttl)


def tool_sources() -> Registry[Callable[..., ToolSource]]:
    """The kinds of tool source the gateway builds from its settings, by name."""
    return Registry(
        "MCP gateway tool source",
        {
            "agents": AgentTools,
            "skills": "shopfloor.gateway.mcpgate._skills:SkillTools",
            "upstream": upstream_source,
        },
    )

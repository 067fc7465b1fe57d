"""``SkillTools``: the skills published in the server's skill registry as MCP tools ``skill__NAME``.

Each name is served at its newest published version, and only when its signature verifies against the
server's trusted keys (``trust.trusted_keys``): the gateway requires a signature even where
``trust.require_signed`` lets agents load unsigned skills, since its callers are outside the server. A
call runs the skill's entry point exactly as an agent's call does (``SkillTool``: the same sandbox
backend choice, dependency environment, schema checks of arguments and output), under the sandbox
limits of ``[mcp] skill_sandbox``, in an empty throw-away workspace, as the tenant ``mcp:PRINCIPAL``
(so two callers never share a sandbox uid); a sandbox kill is audited as the caller's. The call needs
``skills:run`` on the caller's team.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.connectors import tool_name
from shopfloor.errors import ShopfloorError, ToolError
from shopfloor.gateway.mcpgate._sources import (
    CallOutcome,
    GatewayTool,
    Progress,
    ToolSource,
    value_outcome,
)
from shopfloor.runtime import audit_event
from shopfloor.sandbox import Sandbox, SandboxPolicy
from shopfloor.skills import PublishedSkill, SkillRegistry, SkillTool, TrustPolicy, open_skill
from shopfloor.storage import Engines
from shopfloor.tools import ToolContext, ToolServices

__all__ = ["SKILL_PREFIX", "SkillTools"]

SKILL_PREFIX = "skill"
logger = logging.getLogger("shopfloor.gateway.mcp")


class SkillTools(ToolSource):
    """The registry's signed skills (newest version of each name); the list is read again once it is
    older than ``ttl`` seconds, and a skill is opened and verified once per digest and set of trusted
    keys."""

    def __init__(
        self,
        *,
        settings: Settings,
        policy: SandboxPolicy,
        ttl: float,
        engines: Engines | None = None,
        backends: Registry[type[Sandbox]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._policy = policy
        self._ttl = ttl
        self._engines = engines
        self._backends = backends
        self._clock = clock
        self._listed: list[GatewayTool] = []
        self._listed_at: float | None = None
        #: (digest, the keys trusted when it was checked) -> the skill's tool, None when it did not verify
        self._opened: dict[tuple[str, frozenset[str]], SkillTool | None] = {}
        self._lock = asyncio.Lock()

    async def tools(self) -> list[GatewayTool]:
        async with self._lock:
            now = self._clock()
            if self._listed_at is None or now - self._listed_at >= self._ttl:
                self._listed = await asyncio.to_thread(self._list)
                self._listed_at = now
            return self._listed

    async def find(self, name: str) -> GatewayTool | None:
        if not name.startswith(tool_name(SKILL_PREFIX, "")):
            return None  # (another source's tool: no need to read the registry)
        return await super().find(name)

    def _list(self) -> list[GatewayTool]:
        registry = SkillRegistry.from_settings(self._settings, self._engines)
        try:
            newest: dict[str, PublishedSkill] = {}
            for published in registry.list():  # oldest first: the last of a name is its newest
                newest[published.name] = published
            trust = dataclasses.replace(registry.policy, require_signed=True)
            tools = [self._open(registry, trust, published) for published in newest.values()]
        finally:
            registry.close()
        return [tool for tool in tools if tool is not None]

    def _open(
        self, registry: SkillRegistry, trust: TrustPolicy, published: PublishedSkill
    ) -> GatewayTool | None:
        key = (published.digest, trust.trusted_keys)  # a key trusted later serves what it signed
        if key not in self._opened:
            ref = f"{published.name}@{published.version}"
            try:
                skill = open_skill(registry.resolve(ref), trust)
            except (ShopfloorError, OSError) as exc:
                logger.warning("MCP gateway: skill %s is not served: %s", ref, exc)
                self._opened[key] = None
            else:
                self._opened[key] = SkillTool(
                    skill, settings=self._settings, policy=self._policy, backends=self._backends
                )
        tool = self._opened[key]
        if tool is None:
            return None
        return GatewayTool(
            name=tool_name(SKILL_PREFIX, tool.name),
            description=tool.description,
            input_schema=tool.input_schema,
            permission="skills:run",
            target=tool,
        )

    async def call(
        self, tool: GatewayTool, args: dict[str, Any], *, caller: str, progress: Progress
    ) -> CallOutcome:
        del progress  # a sandboxed script reports nothing until it ends
        skill: SkillTool = tool.target
        key = uuid.uuid4().hex
        actor = f"mcp:{caller}"
        services = ToolServices(
            tenant=actor, security_event=functools.partial(audit_event, self._settings, actor)
        )
        context = ToolContext(
            run_id=f"mcp-{key}", step=0, call_id=key, idempotency_key=key, services=services
        )
        try:
            value = await skill.call(args, context)
        except ToolError as exc:
            return CallOutcome(text=str(exc), is_error=True)
        return value_outcome(value)

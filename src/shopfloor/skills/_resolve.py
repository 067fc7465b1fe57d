"""From an agent spec's skill references to verified skills and ready tools (what the runtime calls)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.errors import SkillRegistryError
from shopfloor.sandbox import Sandbox, SandboxPolicy
from shopfloor.skills._deps import prepare_environment
from shopfloor.skills._registry import SkillRegistry, parse_ref
from shopfloor.skills._signing import TrustPolicy, open_skill
from shopfloor.skills._skill import Skill
from shopfloor.skills._tool import SkillReferenceTool, SkillTool
from shopfloor.spec import AgentSpec
from shopfloor.storage import Engines
from shopfloor.tools import Tool

if TYPE_CHECKING:
    from shopfloor.workspace import WorkspaceView

__all__ = ["resolve_skill", "skill_tools"]


def resolve_skill(
    ref: str, settings: Settings, *, base_dir: Path | None = None, engines: Engines | None = None
) -> Skill:
    """A directory (relative to ``base_dir``), ``name@version``, ``name@sha256:DIGEST`` or a built-in
    name, loaded in the trust policy's mode and verified; the registry is opened on its database's
    engine in ``engines`` where given. Blocking: async callers use a thread."""
    path = (base_dir or Path.cwd()) / ref
    if "@" not in ref and path.is_dir():
        return open_skill(path, TrustPolicy.from_settings(settings))
    registry = SkillRegistry.from_settings(settings, engines)
    try:
        skill = open_skill(registry.resolve(ref), registry.policy)
    finally:
        registry.close()
    _, _, digest = parse_ref(ref)
    if digest is not None and skill.digest != digest:
        # The registry is keyed by digest, so this only happens if its cache was altered on disk.
        raise SkillRegistryError(f"skill {ref}: resolved to content with digest {skill.digest}")
    return skill


async def skill_tools(
    spec: AgentSpec,
    settings: Settings,
    *,
    base_dir: Path | None = None,
    workspace: WorkspaceView | Path | None = None,
    tenant: str | None = None,
    prepare: bool = True,
    backends: Registry[type[Sandbox]] | None = None,
    engines: Engines | None = None,
) -> list[Tool]:
    """One tool per skill the spec grants, sandboxed with the spec's policy, and ``read_skill_reference``
    when a granted skill has reference files. With ``prepare`` the skills' dependencies are installed
    now, before the run, so that no step spends its timeout on a first ``pip install``."""
    policy = SandboxPolicy.from_spec(spec.sandbox)
    tools: list[SkillTool] = []
    for ref in spec.skills:
        skill = await asyncio.to_thread(resolve_skill, ref.ref, settings, base_dir=base_dir, engines=engines)
        environment = await prepare_environment(skill, settings) if prepare and skill.executable else None
        tools.append(
            SkillTool(
                skill,
                settings=settings,
                policy=policy,
                workspace=workspace,
                tenant=tenant or spec.name,
                requires_approval=ref.requires_approval,
                approval_timeout=ref.approval_timeout,
                environment=environment,
                backends=backends,
            )
        )
    if any(tool.skill.references() for tool in tools):
        return [*tools, SkillReferenceTool(tools)]
    return list(tools)

"""What a run needs around its agent loop: its workspace, its skills, its tools.

``open_environment`` opens the agent's workspace (a named one persists across runs;
an unnamed one lives for the run), copies the spec's seed files in at first use,
resolves the granted skills (verified, dependencies installed before the first step)
and wraps every tool so that a call which changed the workspace becomes the next
commit, stamped with the run id and step. The loop itself knows none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shopfloor.agent import AgentLoop, build_agent
from shopfloor.config import Settings
from shopfloor.connectors import Connectors, ingest_sources, ingest_workspace_sources
from shopfloor.errors import ConfigError, WorkspaceConflictError
from shopfloor.models import Model
from shopfloor.runtime._services import Services
from shopfloor.runtime._threads import Threads
from shopfloor.security import Admission, build_audit_log, build_secret_store
from shopfloor.spec import AgentSpec, Limits, LoadedSpec, seed_path
from shopfloor.telemetry import register_secret
from shopfloor.tools import Children, Proposal, Tool, ToolContext, ToolServices
from shopfloor.workspace import Quota, Workspaces, WorkspaceView, mount_sources

__all__ = ["Branch", "RunEnvironment", "audit_event", "needs_workspace", "open_environment", "workspace_name"]


def needs_workspace(spec: AgentSpec) -> bool:
    """Only agents that name, seed or use a workspace get one (a calculator needs none)."""
    ws = spec.workspace
    return bool(
        ws.name
        or ws.seed
        or ws.mounts
        or spec.skills
        or any(t.source == "builtin:workspace" for t in spec.tools)
    )


def workspace_name(loaded: LoadedSpec, run_id: str) -> str:
    return loaded.spec.workspace.name or f"run-{run_id}"


class _Committing(Tool):
    """Delegates to ``inner``; commits what the call changed in the run's workspace view."""

    def __init__(self, inner: Tool, view: WorkspaceView) -> None:
        self.inner = inner
        self.view = view
        self.name = inner.name
        self.description = inner.description
        self.input_schema = inner.input_schema
        self.output_schema = inner.output_schema
        self.requires_approval = inner.requires_approval
        self.approval_timeout = inner.approval_timeout
        self.proposes = inner.proposes
        self.kind = inner.kind  # type: ignore[misc]

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        output = await self.inner.call(args, ctx)
        if self.view.dirty:
            await self.view.commit(
                f"step {ctx.step}: {self.name}", run_id=ctx.run_id, step=ctx.step, retries=2
            )
        return output

    async def call_child(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        output = await self.inner.call_child(params, ctx)
        if self.view.dirty:  # a child run commits to its own branch
            await self.view.commit(f"child: {self.name}", run_id=ctx.run_id, step=ctx.step, retries=2)
        return output

    async def propose(self, args: dict[str, Any], ctx: ToolContext) -> Proposal | None:
        return await self.inner.propose(args, ctx)  # it only plans: nothing to commit

    def validate(self, args: Any) -> dict[str, Any]:
        return self.inner.validate(args)

    async def details(self) -> str | None:
        return await self.inner.details()

    async def next_schema(
        self, chosen: dict[str, Any], stage: int, *, task: str = ""
    ) -> dict[str, Any] | None:
        return await self.inner.next_schema(chosen, stage, task=task)

    def describe(self) -> str:
        return self.inner.describe()


@dataclass(frozen=True, kw_only=True)
class Branch:
    """Where a child run works: its own ``ref`` of its parent's ``workspace``, made from ``start`` (the
    parent's commit when it started the child; None: an empty workspace) when it does not exist yet."""

    workspace: str
    ref: str
    start: str | None


@dataclass(kw_only=True)
class RunEnvironment:
    loop: AgentLoop
    view: WorkspaceView | None
    workspace: str | None
    workspaces: Workspaces | None = None
    seeded: list[str] = field(default_factory=list)

    @property
    def commit(self) -> str | None:
        """The workspace commit the run has produced so far."""
        return self.view.base if self.view is not None else None

    async def close(self) -> None:
        if self.workspaces is not None:
            await asyncio.to_thread(self.workspaces.close)
        await self.loop.aclose_routes()
        await self.loop.model.aclose()


async def _seed(view: WorkspaceView, loaded: LoadedSpec) -> list[str]:
    """Copy each seed (a file or directory) to the workspace root, where it is not there yet."""
    written: list[str] = []
    for ref in loaded.spec.workspace.seed:
        source = seed_path(ref, loaded.base_dir)
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for file in files:
            rel = source.name if file == source else f"{source.name}/{file.relative_to(source).as_posix()}"
            if not await view.exists(rel):
                await view.write(rel, await asyncio.to_thread(file.read_bytes))
                written.append(rel)
    return written


def granted_secrets(loaded: LoadedSpec, settings: Settings) -> Callable[[], dict[str, str]] | None:
    """The resolver of the secrets ``permissions.secrets`` grants the agent: read at each call as the
    agent's identity (``agent:NAME``, audited), and redacted by value from then on in this process."""
    names = list(loaded.spec.permissions.secrets)
    if not names:
        return None
    actor = f"agent:{loaded.spec.name}"

    def resolve() -> dict[str, str]:
        with build_secret_store(settings, audit=build_audit_log(settings)) as store:
            values = {name: store.reveal(name, actor=actor) for name in names}
        for value in values.values():
            register_secret(value)
        return values

    return resolve


def audit_event(settings: Settings, actor: str, kind: str, details: dict[str, Any]) -> None:
    """A security event of a run or a gateway call (a sandbox kill, a refused tool), appended to the audit
    log as ``actor``'s."""
    with build_audit_log(settings) as audit:
        audit.append(
            kind, actor=actor, outcome="denied", resource=str(details.get("run_id", "")), details=details
        )


async def open_environment(
    loaded: LoadedSpec,
    services: Services,
    *,
    run_id: str,
    model: str | Model | None = None,
    identity: str | None = None,
    connectors: Connectors | None = None,
    admission: Admission | None = None,
    children: Children | None = None,
    branch: Branch | None = None,
    limits: Limits | None = None,
    threads: Threads | None = None,
) -> RunEnvironment:
    """Open the run's workspace, seed it, resolve its skills and build its agent loop; the tools of
    the spec's connectors come from the worker's pool ``connectors``; its model calls are admitted
    against ``admission`` (the runtime's budgets). ``children``: what starts its child runs (lent to
    its tools); ``branch``: a child run's branch of its parent's workspace (the parent ingested the
    connectors' sources already); ``limits``: the run's, in place of the spec's (a child run's);
    ``threads``: where its agent is built (``asyncio.to_thread`` by default)."""
    from shopfloor.skills import skill_tools

    settings = services.settings
    spec = loaded.spec
    # Connectors first: a server that cannot be reached fails the run before its workspace is opened.
    connector_tools: list[Tool] = []
    if spec.connectors:
        if connectors is None:
            raise ConfigError(
                f"agent {spec.name!r} declares connectors ({', '.join(c.name for c in spec.connectors)}), "
                "but this worker was given no connector pool (shopfloor.connectors.build_connectors)"
            )
        for connector in spec.connectors if branch is None else ():
            if connector.docs is not None and connector.docs.workspace is not None:
                from shopfloor.connectors.docs import DocCollections, WorkspaceSource

                source = WorkspaceSource.parse(connector.docs.workspace)
                repo = await asyncio.to_thread(services.workspaces)
                try:
                    await asyncio.to_thread(
                        ingest_workspace_sources,
                        DocCollections.from_settings(settings),
                        connector.docs,
                        repo.workspace(source.workspace),
                    )
                finally:
                    await asyncio.to_thread(repo.close)
            elif connector.docs is not None and connector.docs.sources:
                from shopfloor.connectors.docs import DocCollections, resolve_sources

                paths = resolve_sources(connector.docs, loaded.base_dir).paths
                collections = DocCollections.from_settings(settings)
                await asyncio.to_thread(ingest_sources, collections, connector.docs, paths)
        connector_tools = await connectors.tools(spec.connectors)
    view: WorkspaceView | None = None
    workspaces: Workspaces | None = None
    seeded: list[str] = []
    name: str | None = None
    if spec.permissions.workspace != "none" and needs_workspace(spec):
        workspaces = await asyncio.to_thread(services.workspaces)
        name = branch.workspace if branch is not None else workspace_name(loaded, run_id)
        workspace = workspaces.workspace(name, quota=Quota.from_spec(spec.workspace))
        ref = "main" if spec.workspace.start_from == "last" else f"runs/{run_id}"
        if branch is not None:
            ref = branch.ref
            if branch.start is not None and await workspace.head(ref) is None:
                with contextlib.suppress(WorkspaceConflictError):  # made by this child before a crash
                    await workspace.set_ref(ref, branch.start, create=True)
        view = await workspace.open(
            ref, mounts=mount_sources(spec.workspace.mounts, base_dir=loaded.base_dir)
        )
        seeded = await _seed(view, loaded)
        if seeded:
            await view.commit(
                f"seed: {len(seeded)} files", run_id=run_id, step=0, identity=identity, retries=2
            )
        if spec.permissions.workspace == "read-only":
            mounts = mount_sources(spec.workspace.mounts, base_dir=loaded.base_dir)
            view = await workspace.open(ref, mounts=mounts, read_only=True)
    tenant = spec.name
    skills = await skill_tools(
        spec,
        settings,
        base_dir=loaded.base_dir,
        workspace=view,
        tenant=tenant,
        backends=services.sandboxes,
        engines=services.engines,
    )
    lent = ToolServices(
        workspace=view,
        tenant=tenant,
        secrets=granted_secrets(loaded, settings),
        security_event=functools.partial(audit_event, settings, f"agent:{spec.name}"),
        children=children,
    )
    committing = view if view is not None and not view.read_only else None
    in_thread = threads.call if threads is not None else asyncio.to_thread
    loop = await in_thread(
        build_agent,
        loaded,
        settings,
        model=model,
        extra_tools=[*skills, *connector_tools],
        services=lent,
        wrap_tool=(lambda tool: _Committing(tool, committing)) if committing is not None else None,
        providers=services.models,
        builtins=services.builtins,
        admission=admission,
        limits=limits,
    )
    # Weights load here, in a worker thread, once per process: not at the first token count, on the loop.
    await loop.model.aload()
    return RunEnvironment(
        loop=loop,
        view=view,
        workspace=name,
        workspaces=workspaces,
        seeded=seeded,
    )

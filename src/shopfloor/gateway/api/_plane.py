"""What the control plane's routes work with, passed to each router explicitly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from shopfloor.errors import RunNotFoundError, ShopfloorError
from shopfloor.gateway.api._store import ControlStore
from shopfloor.runtime import Runtime, Services
from shopfloor.security import Authenticator, Governance, KeyStore, Principal, Resource
from shopfloor.telemetry import TraceStore
from shopfloor.workspace import Workspaces

__all__ = ["ControlPlane"]


@dataclass(frozen=True, kw_only=True)
class ControlPlane:
    services: Services
    #: a client of the run store and DBOS; the server's lifespan makes it this process's worker too
    runtime: Runtime
    store: ControlStore
    traces: TraceStore
    workspaces: Workspaces
    #: the FastAPI dependency resolving a request's principal
    principal: Callable[..., Principal]
    #: who proves a request's identity (told of a key revoked here, it refuses the key at once)
    authenticator: Authenticator
    #: the API keys (``/v1/keys``)
    keys: KeyStore
    #: this process's Prometheus metrics (``/metrics``); sub-applications register theirs here too
    registry: CollectorRegistry
    #: the authoriser, approval policy and audit log of this server (built once, closed with it)
    governance: Governance

    async def team_of(self, spec_path: str) -> str | None:
        """The team owning the agent of ``spec_path`` (its ``permissions.team``); None where it names
        none or the spec cannot be read any more."""
        try:
            loaded = await asyncio.to_thread(self.services.load_spec, spec_path)
        except (ShopfloorError, OSError):
            return None
        return loaded.spec.permissions.team

    async def authorize_on(self, caller: Principal, permission: str, *, name: str, spec_path: str) -> None:
        """Ask ``permission`` again on one agent's or run's resource, of the team owning the agent where
        its spec names one (the route's gate asked it on the caller's own team)."""
        team = await self.team_of(spec_path)
        if team is not None:
            kind = permission.partition(":")[0]
            self.governance.authorizer.authorize(
                caller, permission, Resource(kind=kind, name=name, team=team)
            )

    async def may_decide(self, caller: Principal, run_id: str) -> None:
        """The gate of approving and rejecting (the API's and the console's): ``runs:approve`` on the
        caller's team, or being one of the waiting call's named approvers (the runtime's approval policy
        then checks the run's team); else ``PermissionDeniedError``. A run that does not exist is
        refused like one the caller may not decide (nothing is revealed)."""
        authorizer = self.governance.authorizer
        if authorizer.allows(caller, "runs:approve", Resource(kind="runs", team=caller.team)):
            return
        try:
            record = await self.runtime.get_run(run_id)
        except RunNotFoundError:
            record = None
        approvers = [str(a) for a in ((record.approval or {}).get("approvers") or [])] if record else []
        if caller.id not in approvers and caller.name not in approvers:
            authorizer.authorize(caller, "runs:approve", Resource(kind="runs", name=run_id, team=caller.team))

    async def visible(self, caller: Principal, permission: str, spec_paths: list[str]) -> list[bool]:
        """For each spec path, whether ``caller`` may see what it owns (no refusal audited: a listing
        leaves out what is not the caller's)."""
        teams: dict[str, str | None] = {}
        kind = permission.partition(":")[0]
        allowed = []
        for path in spec_paths:
            if path not in teams:
                teams[path] = await self.team_of(path)
            team = teams[path]
            resource = Resource(kind=kind, team=team)
            allowed.append(team is None or self.governance.authorizer.allows(caller, permission, resource))
        return allowed

    async def close(self) -> None:
        await self.runtime.close()
        for close in (
            self.store.close,
            self.keys.close,
            self.traces.close,
            self.workspaces.close,
            self.governance.audit.close,
        ):
            await asyncio.to_thread(close)

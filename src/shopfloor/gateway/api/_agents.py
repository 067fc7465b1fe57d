"""``/v1/agents``: register agents with the server (validated as ``shopfloor validate`` does), read them."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (the local `Caller`
# dependency alias among them) when they are defined.

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends

from shopfloor.errors import SourceLocation, SpecError
from shopfloor.gateway._errors import ERRORS
from shopfloor.gateway.api._models import AgentRegister
from shopfloor.gateway.api._plane import ControlPlane
from shopfloor.gateway.api._store import AgentRecord
from shopfloor.security import Principal, Resource

__all__ = ["agents_router"]


def agents_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=ERRORS)
    services, store, authorizer = plane.services, plane.store, plane.governance.authorizer
    Caller = Annotated[Principal, Depends(plane.principal)]

    def _spec_file(text: str) -> Path:
        """An inline spec's file under the data dir, named by its content (re-sending it is idempotent)."""
        folder = services.settings.home / "agents" / hashlib.sha256(text.encode()).hexdigest()[:24]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "agent.yaml"
        path.write_text(text)
        return path

    def _register(body: AgentRegister, caller: Principal) -> AgentRecord:
        if body.path is not None:
            # An agent directory carries code (tool files) the server's workers will run.
            authorizer.authorize(
                caller, "agents:register-path", Resource(kind="agents", name=body.path, team=caller.team)
            )
        path = Path(body.path) if body.path is not None else _spec_file(body.spec or "")
        report = services.validate(path)
        if report.kind != "agent":
            where = SourceLocation(file=str(path))
            raise SpecError([(where, f"this is a {report.kind}, not an agent spec")])
        loaded = services.load_spec(path)
        team = loaded.spec.permissions.team
        if team is not None:  # registering for a team is writing that team's agents
            authorizer.authorize(
                caller, "agents:write", Resource(kind="agents", name=loaded.spec.name, team=team)
            )
        record = AgentRecord(
            name=loaded.spec.name,
            spec_path=str(loaded.path),
            version=report.version,
            digest=loaded.digest,
            registered_by=caller.id,
            registered_at=time.time(),
        )
        store.register(record)
        return record

    @router.post(
        "",
        status_code=201,
        summary="Register an agent (validated; problems answer 422 with file:line)",
    )
    async def register(body: AgentRegister, caller: Caller) -> AgentRecord:
        return await asyncio.to_thread(_register, body, caller)

    @router.get("", summary="The registered agents")
    async def list_agents(caller: Caller) -> list[AgentRecord]:
        records = await asyncio.to_thread(store.list_agents)
        shown = await plane.visible(caller, "agents:read", [r.spec_path for r in records])
        return [record for record, ok in zip(records, shown, strict=True) if ok]

    @router.get("/{name}", summary="One registered agent")
    async def get_agent(name: str, caller: Caller) -> AgentRecord:
        record = await asyncio.to_thread(store.agent, name)
        await plane.authorize_on(caller, "agents:read", name=record.name, spec_path=record.spec_path)
        return record

    return router

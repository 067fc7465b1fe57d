"""The console's agents: the agents registered with the server, and one agent's spec (its text and
what it grants: model, tools, skills with their signature status, approvers, limits), its registered
and current digest, and its latest runs. Read through the control store and the services' spec loader,
as the API reads them."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from shopfloor.errors import ShopfloorError
from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._sessions import ConsoleSession
from shopfloor.skills import TrustPolicy, fingerprint, resolve_skill, verify_skill

__all__ = ["agent_routes"]

#: a spec file longer than this is not shown
MAX_SPEC = 256 * 1024


def agent_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    plane = console.plane

    @app.get("/console/agents")
    async def agents(request: Request, session: Session) -> Response:
        records = await asyncio.to_thread(plane.store.list_agents)
        shown = await plane.visible(session.principal, "agents:read", [r.spec_path for r in records])
        found = [record for record, ok in zip(records, shown, strict=True) if ok]
        return console.render(request, "agents.html", agents=found)

    @app.get("/console/agents/{name}")
    async def agent(request: Request, session: Session, name: str) -> Response:
        record = await asyncio.to_thread(plane.store.agent, name)
        await plane.authorize_on(
            session.principal, "agents:read", name=record.name, spec_path=record.spec_path
        )

        def read() -> dict[str, Any]:
            found: dict[str, Any] = {
                "text": None,
                "spec": None,
                "digest": None,
                "problem": "",
                "skills": [],
            }
            path = Path(record.spec_path)
            try:
                if path.stat().st_size <= MAX_SPEC:
                    found["text"] = path.read_text(encoding="utf-8", errors="replace")
                loaded = plane.services.load_spec(record.spec_path)
                found["spec"], found["digest"] = loaded.spec, loaded.digest
            except (ShopfloorError, OSError) as exc:
                found["problem"] = str(exc)
                return found
            found["skills"] = [skill_state(ref.ref, loaded.base_dir) for ref in loaded.spec.skills]
            return found

        def skill_state(ref: str, base_dir: Path) -> dict[str, Any]:
            """Whether the skill resolves and its signature verifies under this machine's trust policy, as
            a run would load it (or why not)."""
            settings = plane.services.settings
            try:
                skill = resolve_skill(ref, settings, base_dir=base_dir, engines=plane.services.engines)
                signed = verify_skill(skill, TrustPolicy.from_settings(settings))
            except (ShopfloorError, OSError) as exc:
                return {"ok": False, "state": str(exc)}
            if signed is None:
                return {"ok": True, "state": "unsigned (allowed: trust.require_signed is off)"}
            return {"ok": True, "state": f"signed by key {fingerprint(signed.key)}, verified"}

        spec = await asyncio.to_thread(read)
        runs = []
        if console.can(session.principal, "runs:read"):
            runs = await plane.runtime.list_runs(limit=20, agent=record.name)
        return console.render(request, "agent.html", agent=record, runs=runs, **spec)

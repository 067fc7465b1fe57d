"""The console's releases and deployments: every deployed agent (stable, candidate and canary share), every
release with its verification state, one agent's releases with its deployment history and the actions
(deploy, canary, promote, roll back), and one release (its spec, files, skills, model pins, attached
evaluations) with the diff against another version. Read and changed through the registry
(``shopfloor.ops.releases``) as the command line does, as the signed-in principal, each change audited."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

import asyncio
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response

from shopfloor.errors import DeploymentError, ShopfloorError
from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._sessions import ConsoleSession
from shopfloor.ops.releases import Deployment, Deployments, Release
from shopfloor.security import Principal, Resource

__all__ = ["release_routes", "verification"]

Version = Annotated[str | None, Query(max_length=128)]


def verification(deployments: Deployments, release: Release) -> str:
    """``verified``, or why the release does not verify (its signature against the trusted keys, its
    registry skills and its model pins: the checks a run start makes, no file read)."""
    try:
        deployments.releases.check(release)
    except ShopfloorError as exc:
        return str(exc)
    return "verified"


def _team(release: Release | None) -> str | None:
    if release is None:
        return None
    permissions = release.spec.get("permissions") or {}
    team = permissions.get("team") if isinstance(permissions, dict) else None
    return str(team) if team else None


def release_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    deployments = console.deployments
    releases = deployments.releases
    authorizer = console.plane.governance.authorizer

    def allowed(principal: Principal, permission: str, release: Release | None) -> bool:
        team = _team(release)
        resource = Resource(kind="releases", name=release.ref if release else None, team=team)
        return team is None or authorizer.allows(principal, permission, resource)

    def gate(principal: Principal, permission: str, agent: str) -> None:
        """Ask ``permission`` again on the team owning the agent's newest release (the page's gate asked
        it on the principal's own team); refusals are audited by the authoriser."""
        newest = releases.store.find(agent)
        team = _team(newest)
        if team is not None:
            authorizer.authorize(principal, permission, Resource(kind="releases", name=agent, team=team))

    @app.get("/console/releases")
    async def index(request: Request, session: Session) -> Response:
        def load() -> tuple[list[Deployment], list[dict[str, Any]]]:
            found = releases.list_releases()
            shown = [r for r in found if allowed(session.principal, "releases:read", r)]
            agents = {r.name for r in shown}
            deployed = [d for d in deployments.list_deployments() if d.agent in agents]
            rows = [{"release": r, "state": verification(deployments, r)} for r in shown]
            return deployed, rows

        deployed, rows = await asyncio.to_thread(load)
        return console.render(request, "releases.html", deployments=deployed, rows=rows)

    @app.get("/console/releases/{name}")
    async def agent(request: Request, session: Session, name: str) -> Response:
        def load() -> dict[str, Any]:
            found = releases.list_releases(name)
            if not found:
                raise DeploymentError(f"no release of agent {name!r}; `shopfloor release create` makes one")
            gate(session.principal, "releases:read", name)
            deployment = deployments.store.deployment(name)
            # A canary: both releases' runs since it started, side by side, and what the canary evaluator
            # would decide now (nothing is applied here).
            judged = None
            if deployment is not None and deployment.candidate is not None:
                judged = deployments.evaluate(name, actor=session.principal.id, apply=False)
            return {
                "name": name,
                "deployment": deployment,
                "judged": judged,
                "history": deployments.history(name),
                "rows": [{"release": r, "state": verification(deployments, r)} for r in reversed(found)],
            }

        context = await asyncio.to_thread(load)
        principal = session.principal
        return console.render(
            request,
            "release_agent.html",
            may_deploy=console.can(principal, "releases:deploy"),
            may_rollback=console.can(principal, "releases:rollback"),
            **context,
        )

    @app.get("/console/releases/{name}/{version}")
    async def release(
        request: Request, session: Session, name: str, version: str, against: Version = None
    ) -> Response:
        def load() -> dict[str, Any]:
            gate(session.principal, "releases:read", name)
            found = releases.get(f"{name}@{version}")
            others = [r.version for r in releases.list_releases(name) if r.version != version]
            diff = releases.diff(f"{name}@{against}", found.ref) if against else None
            return {
                "release": found,
                "state": verification(deployments, found),
                "deployment": deployments.store.deployment(name),
                "others": others,
                "against": against or "",
                "diff": diff,
            }

        return console.render(request, "release.html", **await asyncio.to_thread(load))

    def done(name: str) -> RedirectResponse:
        return RedirectResponse(f"/console/releases/{name}", status_code=303)

    @app.post("/console/releases/{name}/deploy")
    async def deploy(request: Request, session: Session, name: str) -> Response:
        form = request.state.form
        version = form.get("version", "").strip()[:128]
        share = form.get("canary", "").strip()[:20]
        if share and not share.isdigit():
            raise DeploymentError(f"canary {share!r}: a whole percentage of callers, 1 to 99")
        await asyncio.to_thread(gate, session.principal, "releases:deploy", name)
        await asyncio.to_thread(
            deployments.deploy,
            f"{name}@{version}",
            actor=session.principal.id,
            canary=int(share) if share else None,
            reason=form.get("reason", "")[:1000],
            ignore_gates=form.get("ignore_gates") == "yes",
        )
        return done(name)

    @app.post("/console/releases/{name}/promote")
    async def promote(request: Request, session: Session, name: str) -> Response:
        await asyncio.to_thread(gate, session.principal, "releases:deploy", name)
        reason = request.state.form.get("reason", "")[:1000] or "promoted from the console"
        await asyncio.to_thread(deployments.promote, name, actor=session.principal.id, reason=reason)
        return done(name)

    @app.post("/console/releases/{name}/rollback")
    async def rollback(request: Request, session: Session, name: str) -> Response:
        form = request.state.form
        await asyncio.to_thread(gate, session.principal, "releases:rollback", name)
        await asyncio.to_thread(
            deployments.rollback,
            name,
            actor=session.principal.id,
            to=form.get("to", "").strip()[:128] or None,
            reason=form.get("reason", "")[:1000],
        )
        return done(name)

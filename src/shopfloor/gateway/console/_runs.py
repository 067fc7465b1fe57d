"""The console's runs: the live list, a run's page (timeline, trace waterfall, input and output,
decisions), the approvals inbox. Read through the runtime, the trace store and the authoriser the API
uses; decided and cancelled through the runtime as the signed-in principal."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from shopfloor.errors import ShopfloorError
from shopfloor.gateway.api import sse_frames
from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._proposals import edit_from_form
from shopfloor.gateway.console._render import WaterfallRow, waterfall
from shopfloor.gateway.console._sessions import ConsoleSession
from shopfloor.ops.releases import Release
from shopfloor.runtime import RunRecord
from shopfloor.security import Principal, Resource
from shopfloor.telemetry import model_cost

__all__ = ["run_routes", "waiting_for"]

STATUSES = ("queued", "running", "waiting_approval", "completed", "failed", "cancelled")
PAGE = 50
#: a run page shows at most this many events (the rest stay in `shopfloor runs logs`)
MAX_EVENTS = 2000
#: a runs list's stream ends after this long (the browser reconnects, and the session is checked again)
STREAM_SECONDS = 300.0
#: a comment line on a quiet stream this often (proxies keep it; a vanished browser is noticed)
KEEPALIVE = 15.0

Status = Annotated[str | None, Query(max_length=32)]
Agent = Annotated[str | None, Query(max_length=128)]
BeforeAt = Annotated[float | None, Query(ge=0)]
BeforeId = Annotated[str | None, Query(max_length=128)]


def _duration(record: RunRecord) -> float | None:
    if record.started_at is None or record.finished_at is None:
        return None
    return record.finished_at - record.started_at


async def waiting_for(console: Console, principal: Principal, *, limit: int = 200) -> list[RunRecord]:
    """The runs waiting for a decision ``principal`` may take: named as an approver, or holding
    ``runs:approve`` on the team owning the run's agent."""
    plane = console.plane
    authorizer = plane.governance.authorizer
    mine = []
    for record in await plane.runtime.list_runs(limit=limit, status="waiting_approval"):
        approvers = [str(a) for a in ((record.approval or {}).get("approvers") or [])]
        if principal.id not in approvers and principal.name not in approvers:
            team = await plane.team_of(record.spec_path)
            resource = Resource(kind="runs", name=record.run_id, team=team or principal.team)
            if not authorizer.allows(principal, "runs:approve", resource):
                continue
        mine.append(record)
    return mine


def _mark(records: list[RunRecord]) -> list[tuple[str, str, int, int]]:
    """What the runs list shows changing: each run's status, tokens and steps."""
    return [(r.run_id, r.status, r.total_tokens, r.steps) for r in records]


def run_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    plane = console.plane
    runtime = plane.runtime
    prices = plane.services.settings.telemetry.prices

    async def page_of(
        principal: Principal, status: str | None, agent: str | None, at: float | None, run_id: str | None
    ) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
        before = (at, run_id) if at is not None and run_id is not None else None
        records = await runtime.list_runs(
            limit=PAGE + 1, status=status or None, agent=agent or None, before=before
        )
        page, more = records[:PAGE], len(records) > PAGE
        shown = await plane.visible(principal, "runs:read", [r.spec_path for r in page])
        found = [r for r, ok in zip(page, shown, strict=True) if ok]
        rows = await asyncio.to_thread(described, found)
        following = None
        if more:
            last = page[-1]
            following = {"before_at": repr(last.created_at), "before_id": last.run_id}
        return rows, following

    def described(records: list[RunRecord]) -> list[dict[str, Any]]:
        """Each run with its duration, the release it ran (``NAME@VERSION``; its digest where it ran an
        unreleased agent) and its cost at ``[telemetry] prices`` (its model's, as the spans are priced)."""
        releases: dict[str, Release | None] = {}
        models: dict[str, str | None] = {}
        rows = []
        for record in records:
            digest = record.release_digest
            if digest not in releases:
                releases[digest] = console.deployments.store.by_agent_digest(digest)
            release = releases[digest]
            if release is not None and release.name != record.agent:
                release = None
            model = record.model
            if model is None and release is not None:
                model = str(release.spec.get("model") or "") or None
            if model is None:
                if record.spec_path not in models:
                    models[record.spec_path] = _spec_model(record.spec_path)
                model = models[record.spec_path]
            cost = model_cost(model, record.input_tokens, record.output_tokens, prices) if model else None
            rows.append(
                {
                    "run": record,
                    "duration": _duration(record),
                    "release": release.ref if release is not None else digest[:19],
                    "cost": cost,
                }
            )
        return rows

    def _spec_model(spec_path: str) -> str | None:
        try:
            return plane.services.load_spec(spec_path).spec.model
        except (ShopfloorError, OSError):
            return None

    @app.get("/console/runs")
    async def runs(
        request: Request,
        session: Session,
        status: Status = None,
        agent: Agent = None,
        before_at: BeforeAt = None,
        before_id: BeforeId = None,
    ) -> Response:
        rows, following = await page_of(session.principal, status, agent, before_at, before_id)
        filters = {"status": status or "", "agent": agent or ""}
        return console.render(
            request,
            "runs.html",
            rows=rows,
            following=following,
            filters=filters,
            statuses=STATUSES,
            live=before_at is None,
            query=str(request.url.query),
        )

    @app.get("/console/runs/rows")
    async def rows(
        request: Request, session: Session, status: Status = None, agent: Agent = None
    ) -> Response:
        found, _ = await page_of(session.principal, status, agent, None, None)
        return console.render(request, "_rows.html", rows=found)

    @app.get("/console/runs/stream")
    async def stream(
        request: Request, session: Session, status: Status = None, agent: Agent = None
    ) -> Response:
        """Server-sent events for the live runs list: a ``runs`` event whenever the first page of the
        filtered list changes for this person (a run added, or one of its runs changed state, tokens or
        steps), read from the run store at the runtime's event poll interval; the browser then fetches
        the rows again."""
        every = runtime.settings.runtime.poll_interval
        principal = session.principal

        async def shown(records: list[RunRecord]) -> list[RunRecord]:
            ok = await plane.visible(principal, "runs:read", [r.spec_path for r in records])
            return [r for r, yes in zip(records, ok, strict=True) if yes]

        async def frames() -> AsyncIterator[str]:
            raw = await runtime.list_runs(limit=PAGE, status=status or None, agent=agent or None)
            last_raw, last = _mark(raw), _mark(await shown(raw))
            started = quiet = time.monotonic()
            yield "retry: 2000\n\n"
            while time.monotonic() - started < STREAM_SECONDS and not await request.is_disconnected():
                await asyncio.sleep(every)
                raw = await runtime.list_runs(limit=PAGE, status=status or None, agent=agent or None)
                if _mark(raw) != last_raw:  # who may see which agent: only once the rows changed
                    last_raw, seen = _mark(raw), _mark(await shown(raw))
                    if seen != last:
                        last, quiet = seen, time.monotonic()
                        yield f"event: runs\ndata: {len(seen)}\n\n"
                if time.monotonic() - quiet > KEEPALIVE:
                    quiet = time.monotonic()
                    yield ": keep-alive\n\n"

        return StreamingResponse(
            frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def run_context(run_id: str, principal: Principal) -> dict[str, Any]:
        record = await runtime.get_run(run_id)
        await plane.authorize_on(principal, "runs:read", name=record.run_id, spec_path=record.spec_path)
        events = []
        async for stored in runtime.events(record.run_id, follow=False):
            events.append(stored.to_dict())
            if len(events) >= MAX_EVENTS:
                break
        # An ended run can be replayed, and forked at one of its recorded steps (``runs:start``).
        may_replay = record.done and not record.pruned and console.can(principal, "runs:start")
        return {
            "run": record,
            "duration": _duration(record),
            "events": events,
            "may_decide": record.status == "waiting_approval" and await _may_decide(principal, record),
            "may_cancel": not record.done and console.can(principal, "runs:cancel"),
            "may_replay": may_replay,
            "steps": await runtime.recorded_steps(record.run_id) if may_replay else [],
            "children": await runtime.children(record.run_id),
        }

    async def _may_decide(principal: Principal, record: RunRecord) -> bool:
        approvers = [str(a) for a in ((record.approval or {}).get("approvers") or [])]
        if principal.id in approvers or principal.name in approvers:
            return True
        return console.can(principal, "runs:approve")

    @app.get("/console/runs/{run_id}")
    async def run(request: Request, session: Session, run_id: str) -> Response:
        context = await run_context(run_id, session.principal)
        record: RunRecord = context["run"]
        spans: list[WaterfallRow] = []
        height = 0
        trace_allowed = console.can(session.principal, "traces:read")
        if trace_allowed:
            records = await asyncio.to_thread(plane.traces.run_spans, record.run_id)
            spans, height = waterfall(records)
        return console.render(
            request, "run.html", spans=spans, height=height, trace_allowed=trace_allowed, **context
        )

    @app.get("/console/runs/{run_id}/events")
    async def events(request: Request, session: Session, run_id: str) -> Response:
        """The run's events as server-sent events (as the API's), for the run page's script: each
        one makes it fetch the page's live part again; the stream ends with the run."""
        record = await runtime.get_run(run_id)
        await plane.authorize_on(
            session.principal, "runs:read", name=record.run_id, spec_path=record.spec_path
        )
        after = request.headers.get("last-event-id", "")
        start = int(after) if after.isdigit() else -1
        return StreamingResponse(
            sse_frames(runtime.events(record.run_id, after=start, follow=True)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/console/runs/{run_id}/live")
    async def live(request: Request, session: Session, run_id: str) -> Response:
        context = await run_context(run_id, session.principal)
        return console.render(request, "_run_live.html", **context)

    def back(request: Request, run_id: str) -> RedirectResponse:
        target = request.state.form.get("back", "")
        if target != "/console/approvals":
            target = f"/console/runs/{run_id}"
        return RedirectResponse(target, status_code=303)

    @app.post("/console/runs/{run_id}/approve")
    async def approve(request: Request, session: Session, run_id: str) -> Response:
        await plane.may_decide(session.principal, run_id)
        reason = request.state.form.get("reason", "")[:4096]
        edited = edit_from_form(request.state.form)
        await runtime.approve(run_id, reason=reason, principal=session.principal, proposal=edited)
        return back(request, run_id)

    @app.post("/console/runs/{run_id}/reject")
    async def reject(request: Request, session: Session, run_id: str) -> Response:
        await plane.may_decide(session.principal, run_id)
        reason = request.state.form.get("reason", "")[:4096]
        await runtime.reject(run_id, reason=reason, principal=session.principal)
        return back(request, run_id)

    @app.post("/console/runs/{run_id}/cancel")
    async def cancel(request: Request, session: Session, run_id: str) -> Response:
        record = await runtime.get_run(run_id)
        await plane.authorize_on(
            session.principal, "runs:cancel", name=record.run_id, spec_path=record.spec_path
        )
        await runtime.cancel(record.run_id, by=session.principal.id)
        return back(request, record.run_id)

    @app.get("/console/approvals")
    async def approvals(request: Request, session: Session) -> Response:
        return console.render(request, "approvals.html", runs=await waiting_for(console, session.principal))

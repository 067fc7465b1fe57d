"""``/v1/runs``: start, list, inspect (and list the child runs of), follow (SSE), approve, reject, cancel
and fork durable runs."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (the local `Caller`
# dependency alias among them) when they are defined.

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from prometheus_client import Gauge

from shopfloor.errors import ForkStepError, RunStateError
from shopfloor.gateway._errors import ERRORS
from shopfloor.gateway.api._models import ApproveIn, DecisionIn, ForkIn, RunCreate, RunPage
from shopfloor.gateway.api._plane import ControlPlane
from shopfloor.gateway.api._store import agent_spec_path
from shopfloor.runtime import RunRecord, StoredEvent
from shopfloor.security import Principal

__all__ = ["runs_router", "sse_frames"]

#: seconds without an event after which an SSE stream sends a comment line
HEARTBEAT = 15.0
#: how long a retried request waits for the first request with its key to create the run
_CLAIM_WAIT = 10.0


def _encode_cursor(record: RunRecord) -> str:
    return base64.urlsafe_b64encode(json.dumps([record.created_at, record.run_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        at, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(at, int | float) or isinstance(at, bool) or not isinstance(run_id, str):
            raise ValueError(cursor)
        return float(at), run_id
    except (ValueError, TypeError, UnicodeError) as exc:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": "not a cursor this API returned", "type": "value_error"}]
        ) from exc


def _sse(stored: StoredEvent) -> str:
    data = json.dumps(stored.to_dict(), default=str, separators=(",", ":"))
    return f"id: {stored.seq}\nevent: {stored.event.kind}\ndata: {data}\n\n"


async def sse_frames(events: AsyncIterator[StoredEvent]) -> AsyncIterator[str]:
    """The events as SSE frames, with a comment line whenever none came for ``HEARTBEAT`` seconds
    (proxies keep the connection, and a vanished client is noticed by the failed write)."""
    pending: asyncio.Future[StoredEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT)
            if not done:
                yield ": keep-alive\n\n"
                continue
            try:
                stored = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield _sse(stored)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await events.aclose()  # type: ignore[attr-defined]


def runs_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=ERRORS)
    runtime, store = plane.runtime, plane.store
    streams = Gauge("shopfloor_sse_streams", "Run event streams open", registry=plane.registry)
    Caller = Annotated[Principal, Depends(plane.principal)]

    async def _create(body: RunCreate, caller: Principal) -> str:
        spec_path, routed = await agent_spec_path(runtime, store, body.agent, caller.id)
        await plane.authorize_on(caller, "runs:start", name=body.agent, spec_path=spec_path)
        return await runtime.start_run(
            spec_path,
            body.input,
            model=body.model,
            detach=True,
            caller=caller.id,
            routed=routed,
            principal=caller,
        )

    async def _idempotent(body: RunCreate, caller: Principal, key: str) -> str:
        request = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        claimed, stored_request, run_id = await asyncio.to_thread(store.claim, caller.id, key, request)
        if stored_request != request:
            raise RunStateError(f"Idempotency-Key {key!r} was used with another request body")
        if claimed:
            try:
                run_id = await _create(body, caller)
            except BaseException:
                await asyncio.to_thread(store.release, caller.id, key)
                raise
            await asyncio.to_thread(store.settle, caller.id, key, run_id)
            return run_id
        async with asyncio.timeout(_CLAIM_WAIT):
            while not run_id:
                await asyncio.sleep(0.05)
                claimed, _, run_id = await asyncio.to_thread(store.claim, caller.id, key, request)
                if claimed:  # the first request failed and released the key: this one creates the run
                    return await _idempotent(body, caller, key)
        return run_id

    @router.post("", status_code=201, summary="Start a durable run of a registered agent")
    async def create_run(
        body: RunCreate,
        caller: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
    ) -> RunRecord:
        if idempotency_key:
            run_id = await _idempotent(body, caller, idempotency_key)
        else:
            run_id = await _create(body, caller)
        return await runtime.get_run(run_id)

    @router.get("", summary="List runs, newest first")
    async def list_runs(
        caller: Caller,
        status: Annotated[str | None, Query(max_length=32)] = None,
        agent: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> RunPage:
        before = _decode_cursor(cursor) if cursor else None
        records = await runtime.list_runs(limit=limit + 1, status=status, agent=agent, before=before)
        page, more = records[:limit], len(records) > limit
        cursor = _encode_cursor(page[-1]) if more else None
        shown = await plane.visible(caller, "runs:read", [r.spec_path for r in page])
        return RunPage(runs=[r for r, ok in zip(page, shown, strict=True) if ok], next_cursor=cursor)

    async def _run(run_id: str, caller: Principal, permission: str) -> RunRecord:
        record = await runtime.get_run(run_id)
        await plane.authorize_on(caller, permission, name=record.run_id, spec_path=record.spec_path)
        return record

    async def may_decide(run_id: str, caller: Caller) -> Principal:
        """The gate of approve and reject (a dependency: it refuses before the body is read):
        ``runs:approve`` on the caller's team, or being one of the waiting call's named approvers (the
        runtime's approval policy then checks the run's team)."""
        await plane.may_decide(caller, run_id)
        return caller

    Decider = Annotated[Principal, Depends(may_decide)]

    @router.get("/{run_id}", summary="One run")
    async def get_run(run_id: str, caller: Caller) -> RunRecord:
        return await _run(run_id, caller, "runs:read")

    @router.get("/{run_id}/children", summary="The run's child runs, oldest first")
    async def children(run_id: str, caller: Caller) -> list[RunRecord]:
        record = await _run(run_id, caller, "runs:read")
        return await runtime.children(record.run_id)

    @router.get(
        "/{run_id}/events",
        summary="The run's events as server-sent events (resumable with Last-Event-ID)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )
    async def events(
        run_id: str,
        caller: Caller,
        last_event_id: Annotated[int | None, Header(ge=-1)] = None,
        follow: bool = True,
    ) -> StreamingResponse:
        record = await _run(run_id, caller, "runs:read")
        after = -1 if last_event_id is None else last_event_id

        async def stream() -> AsyncIterator[str]:
            # The server's send waits while the client's socket is full (backpressure): nothing is
            # read ahead of what the client takes. Starlette cancels this generator when the client
            # goes away, which stops the store polling at once.
            streams.inc()
            try:
                async for frame in sse_frames(runtime.events(record.run_id, after=after, follow=follow)):
                    yield frame
            finally:
                streams.dec()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.post("/{run_id}/approve", summary="Approve the call the run waits on, as the caller")
    async def approve(run_id: str, caller: Decider, body: ApproveIn | None = None) -> RunRecord:
        reason = body.reason if body else ""
        proposal = body.proposal if body else None
        record = await runtime.approve(run_id, reason=reason, principal=caller, proposal=proposal)
        return await runtime.get_run(record.run_id)

    @router.post("/{run_id}/reject", summary="Reject the call the run waits on, as the caller")
    async def reject(run_id: str, caller: Decider, body: DecisionIn | None = None) -> RunRecord:
        reason = body.reason if body else ""
        record = await runtime.reject(run_id, reason=reason, principal=caller)
        return await runtime.get_run(record.run_id)

    @router.post("/{run_id}/cancel", summary="Cancel the run durably")
    async def cancel(run_id: str, caller: Caller) -> RunRecord:
        await _run(run_id, caller, "runs:cancel")
        return await runtime.cancel(run_id, by=caller.id)

    @router.post(
        "/{run_id}/fork",
        status_code=201,
        summary="Fork an ended run at a step: a new durable run, live from that step",
    )
    async def fork(run_id: str, body: ForkIn, caller: Caller) -> RunRecord:
        record = await _run(run_id, caller, "runs:start")
        try:
            fork_id = await runtime.fork_run(
                record.run_id, body.step, detach=True, caller=caller.id, principal=caller
            )
        except ForkStepError as exc:
            raise RequestValidationError(
                [{"loc": ("body", "step"), "msg": str(exc), "type": "value_error", "input": body.step}]
            ) from exc
        return await runtime.get_run(fork_id)

    return router

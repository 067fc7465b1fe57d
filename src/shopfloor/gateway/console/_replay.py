"""The console's replay and fork buttons on an ended run's page: replay feeds the run's recorded step
outputs back through its agent (no model, tool or sandbox is called) and shows, step by step, whether it
came out the same; fork replays up to a chosen step and runs the agent live from there, as a new run
traced to the server's telemetry and, once ended, listed in the run store (it runs inside the request,
not as a durable workflow). Both as ``shopfloor replay`` (``ops.replay``), as the signed-in
principal holding ``runs:start`` on the run's team."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

import asyncio
import contextlib
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from shopfloor.errors import RunError, RunStateError
from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._sessions import ConsoleSession
from shopfloor.ops.replay import Replayed, fork_record, replay_recorded

__all__ = ["replay_routes"]


def replay_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    plane = console.plane

    async def replayed(session: ConsoleSession, run_id: str, at: str | None) -> Replayed:
        record = await plane.runtime.get_run(run_id)
        await plane.authorize_on(
            session.principal, "runs:start", name=record.run_id, spec_path=record.spec_path
        )
        if not record.done:
            raise RunStateError(
                f"run {record.run_id} is {record.status}: replay or fork it once it has ended"
            )
        telemetry = plane.services.telemetry if at is not None else None
        with telemetry.activate() if telemetry is not None else contextlib.nullcontext():
            try:
                return await replay_recorded(plane.services, record.run_id, at=at, runtime=plane.runtime)
            except ValueError as exc:
                raise RunError(f"fork of run {record.run_id}: {exc}") from None

    @app.post("/console/runs/{run_id}/replay")
    async def replay(request: Request, session: Session, run_id: str) -> Response:
        return console.render(
            request, "replay.html", replayed=await replayed(session, run_id, None), listed=False
        )

    @app.post("/console/runs/{run_id}/fork")
    async def fork(request: Request, session: Session, run_id: str) -> Response:
        at = request.state.form.get("step", "").strip()[:128]
        if not at:
            raise RunError("fork: choose the step to run live from")
        done = await replayed(session, run_id, at)
        # The ended fork joins the runs list, its page and trace beside the original's.
        source = await plane.runtime.get_run(run_id)
        record = fork_record(done, caller=session.principal.id, spec_path=source.spec_path)
        if record is not None:
            await asyncio.to_thread(plane.runtime.store.create, record)
        return console.render(request, "replay.html", replayed=done, listed=record is not None)

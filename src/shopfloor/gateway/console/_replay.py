"""The console's replay and fork buttons on an ended run's page: replay feeds the run's recorded step
outputs back through its agent (no model, tool or sandbox is called) and shows, step by step, whether it
came out the same (as ``shopfloor replay``, ``ops.replay``); fork starts a new durable run, as
``POST /v1/runs/{id}/fork`` does, whose steps before the chosen one are the run's recorded outputs and
which runs live from there, and the browser lands on its page, which follows it like any run. Both as
the signed-in principal holding ``runs:start`` on the run's team."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from shopfloor.errors import RunError, RunStateError
from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._sessions import ConsoleSession
from shopfloor.ops.replay import replay_recorded
from shopfloor.runtime import RunRecord

__all__ = ["replay_routes"]

#: the most digits a fork's step may have (a record has far fewer steps)
_STEP_DIGITS = 9


def replay_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    plane = console.plane

    async def ended(session: ConsoleSession, run_id: str) -> RunRecord:
        record = await plane.runtime.get_run(run_id)
        await plane.authorize_on(
            session.principal, "runs:start", name=record.run_id, spec_path=record.spec_path
        )
        if not record.done:
            raise RunStateError(
                f"run {record.run_id} is {record.status}: replay or fork it once it has ended"
            )
        return record

    @app.post("/console/runs/{run_id}/replay")
    async def replay(request: Request, session: Session, run_id: str) -> Response:
        record = await ended(session, run_id)
        replayed = await replay_recorded(plane.services, record.run_id, runtime=plane.runtime)
        return console.render(request, "replay.html", replayed=replayed)

    @app.post("/console/runs/{run_id}/fork")
    async def fork(request: Request, session: Session, run_id: str) -> Response:
        step = request.state.form.get("step", "").strip()
        if not (step.isascii() and step.isdigit()) or len(step) > _STEP_DIGITS:
            raise RunError("fork: choose the step (its number) to run live from")
        record = await ended(session, run_id)
        fork_id = await plane.runtime.fork_run(
            record.run_id,
            int(step),
            detach=True,
            caller=session.principal.id,
            principal=session.principal,
        )
        return RedirectResponse(f"/console/runs/{fork_id}", status_code=303)

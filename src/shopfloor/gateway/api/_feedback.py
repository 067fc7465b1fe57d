"""``POST /v1/runs/{run_id}/feedback``: a person's rating of a run, stored with the release it ran."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (the local `Caller`
# dependency alias among them) when they are defined.

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from shopfloor.gateway._errors import ERRORS
from shopfloor.gateway.api._plane import ControlPlane
from shopfloor.ops.releases import Deployments, Releases
from shopfloor.security import Principal

__all__ = ["FeedbackIn", "feedback_router"]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal[-1, 1] = Field(description="-1 (bad) or 1 (good)")
    comment: str = Field("", max_length=10_000)
    correction: str | None = Field(None, max_length=100_000, description="the answer it should have given")


def feedback_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=ERRORS)
    # The server's audit log (closed with the plane); the object store is never opened for feedback.
    deployments = Deployments(Releases(plane.services, audit=plane.governance.audit))
    Caller = Annotated[Principal, Depends(plane.principal)]

    @router.post(
        "/{run_id}/feedback", status_code=201, summary="Rate a run (-1 or 1), with a comment or a correction"
    )
    async def give_feedback(run_id: str, body: FeedbackIn, caller: Caller) -> dict[str, Any]:
        record = await plane.runtime.get_run(run_id)
        await plane.authorize_on(caller, "runs:feedback", name=record.run_id, spec_path=record.spec_path)
        item = await asyncio.to_thread(
            deployments.feedback,
            record,
            author=caller.id,
            rating=body.rating,
            comment=body.comment,
            correction=body.correction,
        )
        return item.to_json()

    return router

"""``/healthz`` (the process answers) and ``/readyz`` (its database, model files and sandbox layers)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shopfloor.diagnostics import CheckResult, run_checks
from shopfloor.gateway.api._plane import ControlPlane

__all__ = ["health_router"]

#: the doctor lines readiness reads besides the database: a "missing" one makes the server unready
READY_CHECKS = ("models", "sandbox")
#: probes come every few seconds from every kubelet: one check per interval at most
_CACHE_SECONDS = 5.0


class Component(BaseModel):
    status: str
    detail: str


class Readiness(BaseModel):
    ready: bool
    components: dict[str, Component]


def health_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(tags=["health"])
    services, engine = plane.services, plane.store.engine
    cached: dict[str, Any] = {}

    def _database() -> CheckResult:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            return CheckResult(name="database", status="missing", detail=type(exc).__name__)
        return CheckResult(name="database", status="ok", detail=engine.url.get_backend_name())

    def _probe() -> Readiness:
        results = [_database(), *run_checks(services.settings, services.checks, names=list(READY_CHECKS))]
        components = {r.name: Component(status=r.status, detail=r.detail) for r in results}
        return Readiness(ready=all(r.status != "missing" for r in results), components=components)

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: database, model files, sandbox layers (503 when one is missing)",
        response_model=Readiness,
        responses={503: {"model": Readiness}},
    )
    async def readyz() -> JSONResponse:
        if cached.get("until", 0.0) <= time.monotonic():
            cached["value"] = await asyncio.to_thread(_probe)
            cached["until"] = time.monotonic() + _CACHE_SECONDS
        value: Readiness = cached["value"]
        return JSONResponse(value.model_dump(), status_code=200 if value.ready else 503)

    return router

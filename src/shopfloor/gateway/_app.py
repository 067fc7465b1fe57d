"""The server's ASGI application: sub-applications by exact path first, then the control plane's API.

``ShopfloorApp`` is raw ASGI: a request whose path a ``SubApp`` owns goes to it untouched (no routing,
no middleware of FastAPI's), every other request to the FastAPI app of the control plane. Both pass
the body size limit first. The lifespan starts the run worker hosted in this process and each
sub-application, and stops them in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from shopfloor.gateway._canaries import evaluate_canaries
from shopfloor.gateway._errors import ERRORS, install_error_handlers
from shopfloor.gateway._mount import ASGIReceive, ASGIScope, ASGISend, SubApp
from shopfloor.gateway._policy import PolicyWatcher
from shopfloor.gateway.api import (
    ControlPlane,
    agents_router,
    feedback_router,
    health_router,
    keys_router,
    observe_router,
    runs_router,
    workspaces_router,
)

__all__ = ["ShopfloorApp", "create_app"]

VERSION = "0.1.0"
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class ShopfloorApp:
    """Dispatches by exact path to the sub-applications, else to ``api``; bodies over ``max_body``
    bytes get a 413 before any application reads them."""

    def __init__(
        self,
        api: FastAPI,
        sub_apps: Sequence[SubApp],
        *,
        max_body: int,
        on_status: Callable[[str, str], object] | None = None,
    ) -> None:
        self.api = api
        self.on_status = on_status
        self.sub_apps = tuple(sub_apps)
        self.max_body = max_body
        self._routes: dict[str, SubApp] = {}
        self._prefixes: list[tuple[str, SubApp]] = []
        for sub in self.sub_apps:
            for path in sub.paths:
                if path in self._routes:
                    raise ValueError(f"two sub-applications claim the path {path}")
                self._routes[path] = sub
            self._prefixes.extend((prefix, sub) for prefix in sorted(sub.prefixes))

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        limited = await self._limit(scope, receive, send)
        if limited is None:
            return
        path: str = scope["path"]
        target = self._routes.get(path)
        if target is None:
            target = next((sub for prefix, sub in self._prefixes if path.startswith(prefix)), None)
        if target is not None:
            await target(scope, limited, send)
            return
        on_status, method = self.on_status, scope["method"]
        if on_status is None:
            await self.api(scope, limited, send)
            return

        async def counted(message: Any) -> None:
            if message["type"] == "http.response.start":
                on_status(method, str(message["status"]))
            await send(message)

        await self.api(scope, limited, counted)

    async def _limit(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> ASGIReceive | None:
        """``receive`` as the application should use it, or None when a 413 was sent.

        A declared length is checked at once; a chunked body is read here up to the limit (it is
        small by definition) and replayed, so no application sees a partial oversized body."""
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
                break
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                await _too_large(send, self.max_body)
                return None
            return receive
        if scope["method"] in _BODILESS:
            return receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive
            size += len(message.get("body", b""))
            if size > self.max_body:
                await _too_large(send, self.max_body)
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


async def _too_large(send: ASGISend, limit: int) -> None:
    body = json.dumps(
        {"detail": f"the request body is larger than {limit} bytes", "type": "RequestTooLarge"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _metrics_router(plane: ControlPlane, registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["metrics"], responses={401: ERRORS[401]})

    @router.get(
        "/metrics",
        summary="Prometheus metrics of this process",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
        dependencies=[Depends(plane.principal)],
    )
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    plane: ControlPlane,
    *,
    sub_apps: Sequence[SubApp] = (),
    max_body: int,
    worker: bool = True,
    policy: PolicyWatcher | None = None,
) -> ShopfloorApp:
    """The server's application. ``worker``: this process also executes queued runs (and recovers
    those of dead processes); the sub-applications were built with ``plane.registry``; ``policy``:
    follows the GitOps policy file while the server runs."""
    registry = plane.registry
    requests = Counter(
        "shopfloor_api_requests", "Control-plane API requests", ["method", "status"], registry=registry
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(plane.close)
            if worker:
                await plane.runtime.start_executor(worker=True)
                every = plane.services.settings.releases.evaluate_every
                if every > 0:
                    canaries = asyncio.create_task(
                        evaluate_canaries(plane.services, plane.governance.audit, every)
                    )
                    stack.push_async_callback(_cancelled, canaries)
            for sub in sub_apps:
                await sub.startup()
                stack.push_async_callback(sub.shutdown)
            if policy is not None:
                stack.push_async_callback(_cancelled, asyncio.create_task(policy.run()))
            yield

    api = FastAPI(
        title="Shopfloor",
        version=VERSION,
        summary="The control plane of Shopfloor: agents, durable runs, approvals, metrics",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(api)
    api.include_router(health_router(plane))
    api.include_router(agents_router(plane))
    api.include_router(runs_router(plane))
    api.include_router(feedback_router(plane))
    api.include_router(observe_router(plane))
    api.include_router(workspaces_router(plane))
    api.include_router(keys_router(plane))
    api.include_router(_metrics_router(plane, registry))

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(
                title=api.title, version=api.version, summary=api.summary, routes=api.routes
            )
            for sub in sub_apps:
                document.setdefault("paths", {}).update(sub.openapi_paths())
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    return ShopfloorApp(
        api,
        sub_apps,
        max_body=max_body,
        on_status=lambda method, status: requests.labels(method, status).inc(),
    )

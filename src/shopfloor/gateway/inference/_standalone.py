"""``standalone_app``: the gateway as a whole ASGI application of its own (lifespan, ``/metrics``, 404
elsewhere), for the tests and the benchmark until ``shopfloor serve`` mounts it beside the rest of the
control plane."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shopfloor.gateway._mount import ASGIReceive, ASGIScope, ASGISend, SubApp
from shopfloor.gateway.inference._http import error_body, send_bytes

__all__ = ["ASGIApp", "standalone_app"]


class ASGIApp:
    def __init__(self, app: SubApp, registry: CollectorRegistry) -> None:
        self._app = app
        self._registry = registry
        self._paths = app.paths

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "http":
            if scope["path"] in self._paths:
                await self._app(scope, receive, send)
            elif scope["path"] == "/metrics":
                body = generate_latest(self._registry)
                await send_bytes(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])
            else:
                await send_bytes(send, 404, error_body(404, f"no endpoint {scope['path']}"))
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self._app.startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self._app.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return


def standalone_app(app: SubApp, registry: CollectorRegistry) -> ASGIApp:
    return ASGIApp(app, registry)

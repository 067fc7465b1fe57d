"""The console's gateway page: the inference gateway's routes as configured (upstreams, balancing,
timeouts, retries, fallbacks, aliases) and the budgets of ``[[security.limits]]``. Never an upstream's
key: a route shows whether it has one, not what it is."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._sessions import ConsoleSession

__all__ = ["gateway_routes"]


def gateway_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    settings = console.plane.services.settings

    @app.get("/console/gateway")
    async def gateway(request: Request, session: Session) -> Response:
        routes = [
            {
                "name": name,
                "balance": route.balance,
                "timeout": route.timeout,
                "retries": route.retries,
                "fallbacks": route.fallbacks,
                "upstreams": [
                    {
                        "name": up.name or "",
                        "kind": up.kind,
                        "url": up.url or "",
                        "model": up.model,
                        "weight": up.weight,
                        "keyed": up.api_key is not None,
                    }
                    for up in route.upstreams
                ],
            }
            for name, route in sorted(settings.gateway.routes.items())
        ]
        return console.render(
            request,
            "gateway.html",
            routes=routes,
            aliases=sorted(settings.gateway.aliases.items()),
            limits=settings.security.limits,
        )

"""What the gateway serves from its routes' settings, as one value: the route table, the dispatcher over
it, the guardrails per route and the backends they call. A server that reloads its GitOps policy
builds a new ``RouteSet``, starts its backends, and swaps it in with one assignment; each request reads
the set once, so it is served wholly by the old routes or wholly by the new. The old set's backends are
closed once the requests still using them have ended (``retire``)."""

from __future__ import annotations

import asyncio
import contextlib

import orjson

from shopfloor.gateway.inference._backend import Backend
from shopfloor.gateway.inference._dispatch import Dispatcher
from shopfloor.gateway.inference._guard import RouteGuardrails
from shopfloor.gateway.inference._routes import RouteTable

__all__ = ["RouteSet"]

#: how long a retired set waits for its last requests (a stream's longest life) before closing anyway
RETIRE_TIMEOUT = 600.0


class RouteSet:
    def __init__(
        self,
        *,
        table: RouteTable,
        dispatcher: Dispatcher,
        backends: tuple[Backend, ...],
        guardrails: RouteGuardrails | None,
    ) -> None:
        self.table = table
        self.dispatcher = dispatcher
        self.backends = backends
        self.guardrails = guardrails
        #: the body of ``GET /v1/models`` for the routes
        self.models = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"id": n, "object": "model", "created": 0, "owned_by": "shopfloor"} for n in table.names
                ],
            }
        )
        self._active = 0
        #: set once retired and no request uses it (made at ``retire``: a request pays one counter)
        self._idle: asyncio.Event | None = None

    def serving(self) -> RouteSet:
        """Count a request as using this set while it lasts (``with routes.serving():``)."""
        return self

    def __enter__(self) -> RouteSet:
        self._active += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._active -= 1
        if not self._active and self._idle is not None:
            self._idle.set()

    async def start(self) -> None:
        started: list[Backend] = []
        try:
            for backend in self.backends:
                await backend.start()
                started.append(backend)
        except BaseException:
            for backend in started:
                await backend.aclose()
            raise

    async def aclose(self) -> None:
        for backend in self.backends:
            await backend.aclose()

    async def retire(self) -> None:
        """Close the backends once no request uses them (at most ``RETIRE_TIMEOUT`` seconds from now)."""
        self._idle = asyncio.Event()
        if not self._active:
            self._idle.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RETIRE_TIMEOUT):
                await self._idle.wait()
        await self.aclose()

"""A replaced ``RouteSet`` (a reloaded GitOps policy) closes its backends only once the requests still
using it have ended; one nobody uses closes at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry

from shopfloor.gateway.inference._backend import Backend, Endpoint
from shopfloor.gateway.inference._dispatch import Dispatcher
from shopfloor.gateway.inference._metrics import GatewayMetrics
from shopfloor.gateway.inference._routes import RouteTable
from shopfloor.gateway.inference._served import RouteSet
from shopfloor.models import RetryPolicy


class Recorded(Backend):
    """An upstream whose closing is observable (what a real one closes is its connection pool)."""

    name = "recorded"

    def __init__(self) -> None:
        self.closed = 0

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> bytes:
        return b"{}"

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[list[bytes]]:
        yield [b"{}"]

    async def aclose(self) -> None:
        self.closed += 1


def _routes(backend: Backend) -> RouteSet:
    table = RouteTable({}, {})
    dispatcher = Dispatcher(table, GatewayMetrics(CollectorRegistry()), retry=RetryPolicy())
    return RouteSet(table=table, dispatcher=dispatcher, backends=(backend,), guardrails=None)


async def test_retired_routes_close_after_their_last_request() -> None:
    backend = Recorded()
    routes = _routes(backend)
    first, second = routes.serving(), routes.serving()
    first.__enter__()
    second.__enter__()
    retiring = asyncio.create_task(routes.retire())
    for _ in range(20):  # the loop runs the task: it waits, nothing closes while requests use the set
        await asyncio.sleep(0)
    assert not retiring.done() and backend.closed == 0
    first.__exit__(None, None, None)
    for _ in range(20):
        await asyncio.sleep(0)
    assert backend.closed == 0, "one request still uses it"
    second.__exit__(None, None, None)
    async with asyncio.timeout(30):
        await retiring
    assert backend.closed == 1


async def test_unused_routes_close_at_once() -> None:
    backend = Recorded()
    async with asyncio.timeout(30):
        await _routes(backend).retire()
    assert backend.closed == 1

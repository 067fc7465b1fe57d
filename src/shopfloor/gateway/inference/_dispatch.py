"""One request's attempts: retries with backoff, fallbacks to other routes, per-route timeouts, the
replicas' circuit breakers. The same loop for every backend kind and for streamed and whole answers.

A failed attempt is retried (on another replica where there is one) after a backoff, or after the
upstream's ``Retry-After`` up to a cap, while the route has retries left; then the route's fallbacks
are tried in order. A stream is retried or falls back only until its first chunk reached the client:
after that a failure is a cut, which the caller turns into an SSE error event (never a short answer
passed off as whole).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

from shopfloor.errors import UpstreamError
from shopfloor.gateway.inference._backend import Endpoint
from shopfloor.gateway.inference._metrics import GatewayMetrics
from shopfloor.gateway.inference._routes import Replica, Route, RouteTable
from shopfloor.models import RetryPolicy

__all__ = ["Dispatcher", "Outcome", "StreamCut"]


@dataclass(eq=False, kw_only=True)
class Outcome:
    """What served a request, filled in as it goes (read by metering, spans and metrics)."""

    route: str = ""
    upstream: str = ""
    #: chunks passed to the client so far (a stream is committed from the first one)
    chunks: int = 0


class StreamCut(UpstreamError):
    """A stream failed after some of it reached the client: end it with an error event."""


class Dispatcher:
    def __init__(
        self,
        table: RouteTable,
        metrics: GatewayMetrics,
        *,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._table = table
        self._metrics = metrics
        self._retry = retry
        self._sleep = sleep

    async def complete(
        self, route: Route, endpoint: Endpoint, body: dict[str, Any], outcome: Outcome
    ) -> bytes:
        """The response body of the first attempt that succeeds."""

        async def attempt(current: Route, replica: Replica) -> bytes:
            async with asyncio.timeout(current.timeout):
                return await replica.backend.complete(endpoint, dict(body))

        result: bytes = await self._run(route, outcome, attempt)
        return result

    async def stream(
        self,
        route: Route,
        endpoint: Endpoint,
        body: dict[str, Any],
        emit: Callable[[list[bytes]], Awaitable[None]],
        outcome: Outcome,
    ) -> None:
        """Pass the events of the first attempt that succeeds to ``emit``, in batches (it counts
        ``outcome.chunks``);
        ``StreamCut`` when an attempt fails after its first chunk went out. ``route.timeout`` bounds the
        wait for each chunk; the time ``emit`` takes (a slow client) does not count."""

        async def attempt(current: Route, replica: Replica) -> None:
            events = cast(AsyncGenerator[list[bytes], None], replica.backend.stream(endpoint, dict(body)))
            async with aclosing(events):
                while True:
                    async with asyncio.timeout(current.timeout):
                        data = await anext(events, None)
                    if data is None:
                        return
                    await emit(data)

        await self._run(route, outcome, attempt)

    async def _run(
        self, route: Route, outcome: Outcome, attempt: Callable[[Route, Replica], Awaitable[Any]]
    ) -> Any:
        last: UpstreamError | None = None
        for current in self._table.chain(route):
            tried: list[Replica] = []
            for number in range(current.retries + 1):
                replica = current.pick(tried)
                if replica is None:
                    last = UpstreamError(f"route {current.name}: every upstream's circuit breaker is open")
                    break
                tried.append(replica)
                outcome.route, outcome.upstream = current.name, replica.backend.name
                replica.in_flight += 1
                try:
                    result = await attempt(current, replica)
                except UpstreamError as exc:
                    if exc.retryable:
                        self._failed(replica, "error")
                    if outcome.chunks:
                        raise StreamCut(f"{exc}; the stream was cut after {outcome.chunks} chunks") from exc
                    if not exc.retryable:
                        raise
                    last = exc
                except TimeoutError as exc:
                    self._failed(replica, "timeout")
                    message = f"upstream {replica.backend.name} timed out after {current.timeout:g} s"
                    if outcome.chunks:
                        raise StreamCut(
                            f"{message}; the stream was cut after {outcome.chunks} chunks"
                        ) from exc
                    last = UpstreamError(message, status=504)
                else:
                    replica.breaker.success()
                    return result
                finally:
                    replica.in_flight -= 1
                if number < current.retries:
                    await self._sleep(self._retry.delay(number, last.retry_after))
        assert last is not None
        raise UpstreamError(
            f"model {route.name!r}: no upstream answered (last: {last})",
            status=last.status if last.status in (502, 504) else 502,
        ) from last

    def _failed(self, replica: Replica, reason: str) -> None:
        replica.breaker.failure()
        self._metrics.attempts.labels(replica.backend.name, reason).inc()

"""The gateway's Prometheus metrics, registered on the ``CollectorRegistry`` the server passes in (the
server owns ``GET /metrics``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics", "RouteMetrics"]


@dataclass(frozen=True, kw_only=True)
class RouteMetrics:
    """One route's labelled series, looked up once (``labels()`` costs more than the update itself)."""

    latency: Any
    first_token: Any
    tokens_in: Any
    tokens_out: Any


_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "shopfloor_gateway_requests",
            "Inference requests by route, upstream and HTTP status",
            ("route", "upstream", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "shopfloor_gateway_request_seconds",
            "Inference request latency, to the last byte",
            ("route",),
            buckets=_LATENCY,
            registry=registry,
        )
        self.first_token = Histogram(
            "shopfloor_gateway_time_to_first_token_seconds",
            "Time to the first streamed chunk",
            ("route",),
            buckets=_LATENCY,
            registry=registry,
        )
        self.tokens = Counter(
            "shopfloor_gateway_tokens",
            "Tokens through the gateway by route and direction (in, out)",
            ("route", "direction"),
            registry=registry,
        )
        self.attempts = Counter(
            "shopfloor_gateway_upstream_failures",
            "Failed upstream attempts (retried, fallen back or given up) by upstream and reason",
            ("upstream", "reason"),
            registry=registry,
        )
        self.breaker_open = Gauge(
            "shopfloor_gateway_breaker_open",
            "1 while an upstream replica's circuit breaker is open",
            ("upstream",),
            registry=registry,
        )
        self.local_queue_depth = Gauge(
            "shopfloor_gateway_local_queue_depth",
            "Requests waiting for an embedded model",
            ("model",),
            registry=registry,
        )
        self.local_queue_wait = Histogram(
            "shopfloor_gateway_local_queue_wait_seconds",
            "How long requests waited for an embedded model",
            ("model",),
            buckets=_LATENCY,
            registry=registry,
        )
        self.meter_pending = Gauge(
            "shopfloor_gateway_meter_pending",
            "Metering records not yet written to the database",
            registry=registry,
        )
        self._routes: dict[str, RouteMetrics] = {}
        self._requests: dict[tuple[str, str, int], Any] = {}
        self.meter_dropped = Counter(
            "shopfloor_gateway_meter_dropped",
            "Metering records dropped because the buffer was full while the database was unreachable",
            registry=registry,
        )

    def route(self, route: str) -> RouteMetrics:
        found = self._routes.get(route)
        if found is None:
            found = self._routes[route] = RouteMetrics(
                latency=self.latency.labels(route),
                first_token=self.first_token.labels(route),
                tokens_in=self.tokens.labels(route, "in"),
                tokens_out=self.tokens.labels(route, "out"),
            )
        return found

    def count(self, route: str, upstream: str, status: int) -> None:
        key = (route, upstream, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(route, upstream, str(status))
        counter.inc()

"""``build_inference_app``: the gateway's routes from settings, with its dependencies passed in.

With no ``[gateway.routes]`` at all, every installed embedded model is served as ``local:NAME``;
configured routes of the same name win. Where ``shopfloor serve`` builds its application, it calls
this with the server's authenticator, admission, metrics registry and secret lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from shopfloor._registry import Registry
from shopfloor.config import RouteSettings, Settings, UpstreamSettings
from shopfloor.errors import ConfigError
from shopfloor.gateway._governance import ServerGovernance
from shopfloor.gateway.inference._agents import AgentModels
from shopfloor.gateway.inference._app import InferenceApp
from shopfloor.gateway.inference._backend import Backend, BackendContext, BackendFactory, gateway_backends
from shopfloor.gateway.inference._dispatch import Dispatcher
from shopfloor.gateway.inference._guard import build_route_guardrails
from shopfloor.gateway.inference._meter import Meter, MeterStore
from shopfloor.gateway.inference._metrics import GatewayMetrics
from shopfloor.gateway.inference._routes import CircuitBreaker, Replica, Route, RouteTable
from shopfloor.gateway.inference._served import RouteSet
from shopfloor.models import RetryPolicy, list_models, resolve_model
from shopfloor.security import Admission, Authenticator, Authorizer

__all__ = ["build_inference_app", "build_routes", "route_settings"]


def route_settings(settings: Settings) -> dict[str, RouteSettings]:
    """The configured routes, plus ``local:NAME`` for each installed embedded model (when enabled)."""
    routes: dict[str, RouteSettings] = {}
    if settings.gateway.serve_local_models:
        for status in list_models(settings):
            if status.installed:
                ref = f"local:{status.name}"
                routes[ref] = RouteSettings(upstreams=[UpstreamSettings(kind="model", model=ref)])
    return routes | settings.gateway.routes


def build_inference_app(
    settings: Settings,
    *,
    authenticator: Authenticator,
    registry: CollectorRegistry,
    authorizer: Authorizer | None = None,
    audit: ServerGovernance | None = None,
    admission: Admission | None = None,
    resolve_secret: Callable[[str], str] | None = None,
    make_model: Callable[[str], Any] | None = None,
    backends: Registry[BackendFactory] | None = None,
    meter: bool = True,
    on_shutdown: Sequence[Callable[[], None]] = (),
    agents: AgentModels | None = None,
) -> InferenceApp:
    """The ``SubApp`` serving ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` and
    ``/v1/models``. ``make_model`` makes a Shopfloor model from a reference (default: the built-in
    providers); ``meter=False`` keeps no metering records (benchmarks of the bare path). ``authorizer``:
    each route's permission of ``ROUTE_PERMISSIONS`` is asked (``shopfloor serve`` always passes the
    server's; None only for a bare gateway); ``audit``: authentication outcomes are audited; ``agents``:
    ``agent/NAME`` models run the server's registered agents (None: no agents served)."""
    gateway = settings.gateway
    metrics = GatewayMetrics(registry)
    kinds = backends if backends is not None else gateway_backends()

    def rebuild(current: Settings) -> RouteSet:
        context = BackendContext(
            settings=current,
            resolve_secret=resolve_secret,
            make_model=make_model or (lambda ref: resolve_model(ref, current)),
            shared={},
            metrics=metrics,
        )
        return build_routes(current, kinds=kinds, context=context, metrics=metrics)

    store = MeterStore(gateway.meter_url or settings.db_url) if meter else None
    return InferenceApp(
        routes=rebuild(settings),
        rebuild=rebuild,
        authenticator=authenticator,
        authorizer=authorizer,
        audit=audit,
        admission=admission,
        metrics=metrics,
        meter=Meter(store, metrics, interval=gateway.meter_flush_interval) if store is not None else None,
        max_body_bytes=gateway.max_body_bytes,
        on_shutdown=on_shutdown,
        agents=agents,
    )


def build_routes(
    settings: Settings, *, kinds: Registry[BackendFactory], context: BackendContext, metrics: GatewayMetrics
) -> RouteSet:
    """The routes, aliases and route guardrails of ``settings`` with their backends (not started)."""
    gateway = settings.gateway
    made: list[Backend] = []
    routes: dict[str, Route] = {}
    for name, route in route_settings(settings).items():
        replicas = []
        for index, upstream in enumerate(route.upstreams):
            if upstream.kind not in kinds:
                raise ConfigError(
                    f"gateway.routes.{name}.upstreams[{index}].kind: unknown kind {upstream.kind!r}; "
                    f"use one of {', '.join(sorted(kinds.names()))}"
                )
            backend = kinds.get(upstream.kind)(upstream, context)
            made.append(backend)
            breaker = CircuitBreaker(
                failures=gateway.breaker_failures,
                cooldown=gateway.breaker_cooldown,
                gauge=metrics.breaker_open.labels(backend.name),
            )
            replicas.append(Replica(backend=backend, weight=upstream.weight, breaker=breaker))
        routes[name] = Route(
            name=name,
            replicas=tuple(replicas),
            balance=route.balance,
            timeout=route.timeout,
            retries=route.retries,
            fallbacks=tuple(route.fallbacks),
        )
    table = RouteTable(routes, gateway.aliases)
    retry = RetryPolicy(base_delay=gateway.retry_base_delay, max_retry_after=gateway.max_retry_after)
    return RouteSet(
        table=table,
        dispatcher=Dispatcher(table, metrics, retry=retry),
        backends=tuple(made),
        guardrails=build_route_guardrails(settings),
    )

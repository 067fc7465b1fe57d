"""The inference gateway: OpenAI-compatible ``/v1/chat/completions`` (streamed and not),
``/v1/completions``, ``/v1/embeddings`` and ``/v1/models`` as one ``SubApp``, routing to OpenAI-compatible
upstreams and embedded models with balancing, retries, fallbacks, timeouts and circuit breakers, metered
off the request path."""

from shopfloor.gateway.inference._agents import AgentModels
from shopfloor.gateway.inference._app import InferenceApp
from shopfloor.gateway.inference._backend import (
    Backend,
    BackendContext,
    BackendFactory,
    Endpoint,
    gateway_backends,
)
from shopfloor.gateway.inference._build import build_inference_app, route_settings
from shopfloor.gateway.inference._client import HttpPool, UpstreamResponse
from shopfloor.gateway.inference._dispatch import Dispatcher, Outcome, StreamCut
from shopfloor.gateway.inference._guard import RouteGuardrails, build_route_guardrails
from shopfloor.gateway.inference._local import ModelBackend
from shopfloor.gateway.inference._meter import Meter, MeterRecord, MeterStore
from shopfloor.gateway.inference._metrics import GatewayMetrics
from shopfloor.gateway.inference._routes import CircuitBreaker, Replica, Route, RouteTable
from shopfloor.gateway.inference._standalone import ASGIApp, standalone_app
from shopfloor.gateway.inference._upstream import OpenAIBackend

__all__ = [
    "ASGIApp",
    "AgentModels",
    "Backend",
    "BackendContext",
    "BackendFactory",
    "CircuitBreaker",
    "Dispatcher",
    "Endpoint",
    "GatewayMetrics",
    "HttpPool",
    "InferenceApp",
    "Meter",
    "MeterRecord",
    "MeterStore",
    "ModelBackend",
    "OpenAIBackend",
    "Outcome",
    "Replica",
    "Route",
    "RouteGuardrails",
    "RouteTable",
    "StreamCut",
    "UpstreamResponse",
    "build_inference_app",
    "build_route_guardrails",
    "gateway_backends",
    "route_settings",
    "standalone_app",
]

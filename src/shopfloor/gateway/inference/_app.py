"""``InferenceApp``: the OpenAI-compatible endpoints as one raw ASGI sub-application.

Per request: authenticate (401), read the body under its size limit (413), validate it (400 naming the
field), find the route (404), admit it against the budgets once (429 with ``Retry-After``), dispatch it
with retries and fallbacks, answer (JSON, or SSE passed on chunk by chunk with backpressure: the next
chunk is read from the upstream only once the client took the last), settle the budget once, and queue
a metering record. A streaming client that disconnects cancels the request, and with it the upstream
call, at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry.trace import SpanKind

from shopfloor.config import Settings
from shopfloor.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    GatewayRequestError,
    PermissionDeniedError,
    UpstreamError,
)
from shopfloor.gateway._governance import ServerGovernance, authenticate_request
from shopfloor.gateway._mount import ASGIReceive, ASGIScope, ASGISend, PolicySwap, SubApp
from shopfloor.gateway._permissions import ROUTE_PERMISSIONS
from shopfloor.gateway.inference._agents import PREFIX, AgentModels
from shopfloor.gateway.inference._backend import Endpoint
from shopfloor.gateway.inference._dispatch import Dispatcher, Outcome
from shopfloor.gateway.inference._http import (
    SSE_HEADERS,
    ClientGone,
    error_body,
    header,
    read_body,
    send_bytes,
)
from shopfloor.gateway.inference._meter import Meter, MeterRecord
from shopfloor.gateway.inference._metrics import GatewayMetrics
from shopfloor.gateway.inference._openapi import openapi_paths
from shopfloor.gateway.inference._schema import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_request,
)
from shopfloor.gateway.inference._served import RouteSet
from shopfloor.security import (
    Admission,
    Authenticator,
    Authorizer,
    Budgets,
    Principal,
    Resource,
    Usage,
    UsageRequest,
    limits_from_settings,
)
from shopfloor.telemetry import INPUT_TOKENS, OPERATION_NAME, OUTPUT_TOKENS, REQUEST_MODEL, open_span

__all__ = ["InferenceApp"]

_ENDPOINTS: dict[str, tuple[Endpoint, Any]] = {
    "/v1/chat/completions": ("chat/completions", ChatRequest),
    "/v1/completions": ("completions", CompletionRequest),
    "/v1/embeddings": ("embeddings", EmbeddingRequest),
}
_OPERATIONS = {"chat/completions": "chat", "completions": "text_completion", "embeddings": "embeddings"}
_DONE = b"data: [DONE]\n\n"
_CLIENT_CLOSED = 499  # nginx's "client closed request": metering only, never sent


class _Tally:
    """Tokens and timings of one request, filled in while it runs."""

    __slots__ = ("first_chunk", "started", "tokens_in", "tokens_out")

    def __init__(self) -> None:
        self.tokens_in = 0
        self.tokens_out = 0
        self.first_chunk: float | None = None
        self.started = False  # the response's status line went out

    def take_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            self.tokens_in = prompt if isinstance(prompt, int) else self.tokens_in
            self.tokens_out = completion if isinstance(completion, int) else self.tokens_out


class InferenceApp(SubApp):
    paths = frozenset({"/v1/models", *_ENDPOINTS})

    def __init__(
        self,
        *,
        routes: RouteSet,
        authenticator: Authenticator,
        authorizer: Authorizer | None = None,
        audit: ServerGovernance | None = None,
        admission: Admission | None,
        metrics: GatewayMetrics,
        meter: Meter | None,
        max_body_bytes: int,
        on_shutdown: Sequence[Callable[[], None]] = (),
        agents: AgentModels | None = None,
        rebuild: Callable[[Settings], RouteSet] | None = None,
    ) -> None:
        self._routes = routes
        #: builds the routes of other settings (``prepare_routes``)
        self._rebuild = rebuild
        self._retiring: set[asyncio.Task[None]] = set()
        self._agents = agents
        self._auth = authenticator
        self._authorizer = authorizer
        self._audit = audit
        self._admission = admission
        self._metrics = metrics
        self._meter = meter
        self._limit = max_body_bytes
        self._on_shutdown = tuple(on_shutdown)

    def openapi_paths(self) -> dict[str, Any]:
        return openapi_paths()

    @property
    def routes(self) -> RouteSet:
        return self._routes

    async def prepare_policy(self, settings: Settings) -> PolicySwap:
        """The routes, aliases, route guardrails and request limits of ``settings``, ready to serve."""
        routes = await self.prepare_routes(settings)
        budgets = self._admission if isinstance(self._admission, Budgets) else None
        limits = limits_from_settings(settings)

        def commit() -> None:
            self.use_routes(routes)
            if budgets is not None:
                budgets.set_limits(limits)

        return PolicySwap(commit=commit, abandon=routes.aclose)

    async def prepare_routes(self, settings: Settings) -> RouteSet:
        """The routes, aliases and guardrails of ``settings``, built and their backends started (not served
        yet: ``use_routes``); ConfigError where they are wrong."""
        if self._rebuild is None:
            raise ConfigError("this gateway was built without a way to rebuild its routes")
        routes = self._rebuild(settings)
        await routes.start()
        return routes

    def use_routes(self, routes: RouteSet) -> None:
        """Serve ``routes`` from the next request on; the old ones' backends close once the requests
        using them have ended."""
        old, self._routes = self._routes, routes
        task = asyncio.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, routes: RouteSet) -> None:
        try:
            await routes.retire()
        except asyncio.CancelledError:
            await routes.aclose()  # (the server is stopping: close now)
            raise

    async def startup(self) -> None:
        await self._routes.start()
        if self._meter is not None:
            await self._meter.start()

    async def shutdown(self) -> None:
        if self._meter is not None:
            await self._meter.stop()
        for retiring in list(self._retiring):
            retiring.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self._routes.aclose()
        for close in self._on_shutdown:  # what the server lent it: budgets' counters
            await asyncio.to_thread(close)

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        start = time.perf_counter()
        tally = _Tally()
        try:
            principal = await self._authenticate(scope)
            path = scope["path"]
            if path == "/v1/models":
                if scope["method"] != "GET":
                    raise GatewayRequestError(f"{path} takes GET", status=405, code="method_not_allowed")
                self._authorize(principal, "GET", path)
                await send_bytes(send, 200, await self._model_list(principal))
                return
            if scope["method"] != "POST":
                raise GatewayRequestError(f"{path} takes POST", status=405, code="method_not_allowed")
            self._authorize(principal, "POST", path)
            endpoint, schema = _ENDPOINTS[path]
            body = await read_body(scope, receive, self._limit)
            data, parsed = parse_request(body, schema)
            model: str = data["model"]  # (every endpoint's schema requires it, a string)
            if self._agents is not None and endpoint == "chat/completions" and model.startswith(PREFIX):
                await self._serve_agent(self._agents, principal, data, model, send)
                return
            with self._routes.serving() as routes:  # (wholly on the routes of this moment)
                await self._serve(routes, principal, endpoint, data, parsed, receive, send, start, tally)
        except ClientGone:
            return
        except (GatewayRequestError, AuthenticationError, PermissionDeniedError, BudgetExceededError) as exc:
            await self._refuse(send, exc, tally)
        except UpstreamError as exc:
            await self._refuse(send, exc, tally)

    async def _authenticate(self, scope: ASGIScope) -> Principal:
        return await authenticate_request(
            self._auth, self._audit, header(scope, b"authorization"), _client(scope)
        )

    def _authorize(self, principal: Principal, method: str, path: str) -> None:
        """The route's permission (``routes:call`` to call a model) on the caller's team; the refusal
        is audited by the authoriser. Without an authoriser (a bare gateway of the benchmark), none."""
        if self._authorizer is None:
            return
        permission = ROUTE_PERMISSIONS[(method, path)]
        if permission is not None:
            kind = permission.partition(":")[0]
            self._authorizer.authorize(principal, permission, Resource(kind=kind, team=principal.team))

    async def _refuse(self, send: ASGISend, exc: Exception, tally: _Tally) -> None:
        if tally.started:  # a stream under way: end it with an error event the clients raise on
            event = error_body(502, str(exc), code="upstream_error")
            await send(
                {"type": "http.response.body", "body": b"data: " + event + b"\n\n", "more_body": False}
            )
            return
        status, body, headers = _error_response(exc)
        await send_bytes(send, status, body, headers)

    async def _serve(
        self,
        routes: RouteSet,
        principal: Principal,
        endpoint: Endpoint,
        data: dict[str, Any],
        parsed: Any,
        receive: ASGIReceive,
        send: ASGISend,
        start: float,
        tally: _Tally,
    ) -> None:
        route = routes.table.get(parsed.model)
        grant = None
        if self._admission is not None:
            grant = self._admission.admit(
                UsageRequest(principal=principal, route=parsed.model, estimated_tokens=_estimate(data))
            )
        outcome = Outcome(route=route.name)
        status = 200
        attributes = {OPERATION_NAME: _OPERATIONS[endpoint], REQUEST_MODEL: parsed.model}
        with open_span(f"{_OPERATIONS[endpoint]} {parsed.model}", attributes, kind=SpanKind.SERVER) as span:
            try:
                rails = routes.guardrails
                if rails is not None and route.name not in rails:
                    rails = None
                if rails is not None:
                    rails.check_request(route.name, endpoint, data, span)
                if data.get("stream"):
                    status = await self._stream(
                        routes.dispatcher, route, endpoint, data, receive, send, outcome, tally
                    )
                else:
                    result = await routes.dispatcher.complete(route, endpoint, data, outcome)
                    if b'"usage"' in result:
                        tally.take_usage(_usage_of(result))
                    if rails is not None:
                        result = rails.check_answer(route.name, endpoint, result, span)
                    await send_bytes(send, 200, result)
            except (UpstreamError, GatewayRequestError) as exc:
                status = exc.status
                raise
            except BaseException:
                status = 500 if status == 200 else status
                raise
            finally:
                if grant is not None:
                    grant.settle(Usage(tokens_in=tally.tokens_in, tokens_out=tally.tokens_out))
                if span is not None:
                    span.set_attribute(INPUT_TOKENS, tally.tokens_in)
                    span.set_attribute(OUTPUT_TOKENS, tally.tokens_out)
                self._account(principal, endpoint, data, outcome, status, start, tally)

    async def _model_list(self, principal: Principal) -> bytes:
        if self._agents is None:
            return self._routes.models
        names = await self._agents.names(principal)
        listed = orjson.loads(self._routes.models)
        listed["data"] += [{"id": n, "object": "model", "created": 0, "owned_by": "shopfloor"} for n in names]
        return orjson.dumps(listed)

    async def _serve_agent(
        self, agents: AgentModels, principal: Principal, data: dict[str, Any], model: str, send: ASGISend
    ) -> None:
        """Run the agent durably and answer with its final answer (streamed: its steps as SSE comments;
        an error after the stream began goes out as an error event, then the stream ends)."""
        run_id = await agents.start(principal, model, data)
        if not data.get("stream"):
            await send_bytes(send, 200, await agents.answer(run_id, model))
            return
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})

        async def emit(frame: bytes) -> None:
            await send({"type": "http.response.body", "body": frame, "more_body": True})

        try:
            await agents.stream(run_id, model, emit)
        except GatewayRequestError as exc:
            event = error_body(exc.status, str(exc), code=exc.code)
            await send(
                {"type": "http.response.body", "body": b"data: " + event + b"\n\n", "more_body": False}
            )
            return
        await send({"type": "http.response.body", "body": _DONE, "more_body": False})

    async def _stream(
        self,
        dispatcher: Dispatcher,
        route: Any,
        endpoint: Endpoint,
        data: dict[str, Any],
        receive: ASGIReceive,
        send: ASGISend,
        outcome: Outcome,
        tally: _Tally,
    ) -> int:
        wants_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        if endpoint != "embeddings":
            data["stream_options"] = {"include_usage": True}  # metering reads the upstream's count

        async def emit(batch: list[bytes]) -> None:
            out = []
            for chunk in batch:
                if b'"usage"' in chunk:
                    try:
                        event = orjson.loads(chunk)
                    except orjson.JSONDecodeError:
                        event = None  # not ours to judge: passed on as the upstream sent it
                    if isinstance(event, dict):
                        tally.take_usage(event.get("usage"))
                        if not event.get("choices") and not wants_usage:
                            continue  # the usage chunk the client did not ask for
                out.append(b"data: " + chunk + b"\n\n")
            if not out:
                return
            if not tally.started:
                tally.started = True
                tally.first_chunk = time.perf_counter()
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            outcome.chunks += len(out)
            body = out[0] if len(out) == 1 else b"".join(out)
            await send({"type": "http.response.body", "body": body, "more_body": True})

        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            task.cancel()  # the upstream attempt is cancelled with the request

        watcher = asyncio.create_task(watch())
        try:
            await dispatcher.stream(route, endpoint, data, emit, outcome)
        except asyncio.CancelledError:
            if not gone.is_set():
                raise
            task.uncancel()
            return _CLIENT_CLOSED
        finally:
            watcher.cancel()
        if not tally.started:
            tally.started = True
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": _DONE, "more_body": False})
        if not tally.tokens_out:
            tally.tokens_out = outcome.chunks
        return 200

    def _account(
        self,
        principal: Principal,
        endpoint: Endpoint,
        data: dict[str, Any],
        outcome: Outcome,
        status: int,
        start: float,
        tally: _Tally,
    ) -> None:
        end = time.perf_counter()
        self._metrics.count(outcome.route, outcome.upstream, status)
        series = self._metrics.route(outcome.route)
        series.latency.observe(end - start)
        if tally.tokens_in:
            series.tokens_in.inc(tally.tokens_in)
        if tally.tokens_out:
            series.tokens_out.inc(tally.tokens_out)
        first = None if tally.first_chunk is None else tally.first_chunk - start
        if first is not None:
            series.first_token.observe(first)
        if self._meter is None:
            return
        decode = end - (tally.first_chunk or start)
        self._meter.record(
            MeterRecord(
                at=datetime.now(UTC),
                principal=principal.id,
                route=outcome.route,
                upstream=outcome.upstream,
                endpoint=endpoint,
                stream=bool(data.get("stream")),
                status=status,
                tokens_in=tally.tokens_in,
                tokens_out=tally.tokens_out,
                latency=end - start,
                time_to_first_token=first,
                tokens_per_second=(tally.tokens_out / decode) if tally.tokens_out and decode > 0 else None,
            )
        )


def _client(scope: ASGIScope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _usage_of(answer: bytes) -> Any:
    try:
        parsed = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    return parsed.get("usage") if isinstance(parsed, dict) else None


def _estimate(data: dict[str, Any]) -> int:
    """An upper-ish bound of a request's tokens for token budgets: ~4 characters a token, plus its
    ``max_tokens``."""
    text = 0
    for message in data.get("messages") or ():
        content = message.get("content")
        text += len(content) if isinstance(content, str) else len(orjson.dumps(content))
    prompt = data.get("prompt") or data.get("input")
    if prompt is not None:
        text += len(prompt) if isinstance(prompt, str) else len(orjson.dumps(prompt))
    limit = data.get("max_completion_tokens") or data.get("max_tokens") or 0
    return text // 4 + 1 + int(limit)


def _error_response(exc: Exception) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    headers = [(b"content-type", b"application/json")]
    if isinstance(exc, GatewayRequestError):
        return exc.status, error_body(exc.status, str(exc), param=exc.param, code=exc.code), headers
    if isinstance(exc, AuthenticationError):
        headers.append((b"www-authenticate", b"Bearer"))
        return 401, error_body(401, str(exc), code="invalid_api_key"), headers
    if isinstance(exc, PermissionDeniedError):
        return 403, error_body(403, str(exc), code="permission_denied"), headers
    if isinstance(exc, BudgetExceededError):
        if exc.retry_after is not None:
            headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
        return 429, error_body(429, str(exc), code="budget_exceeded"), headers
    assert isinstance(exc, UpstreamError)
    if exc.body is not None and exc.status < 500:  # the upstream refused the request itself: say why
        return exc.status, exc.body, headers
    return exc.status, error_body(exc.status, str(exc), code="upstream_error"), headers

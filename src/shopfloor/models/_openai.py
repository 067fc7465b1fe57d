"""``openai:<model>``: any OpenAI-compatible chat-completions server (OpenAI, NIM, vLLM, llama.cpp server).

It speaks HTTP through ``httpx.AsyncClient`` directly (no SDK): the wire format is
small, and owning it lets us stream, time the first token, retry and report errors
the same way for every server. Tests inject faults through the ``transport`` seam.

A request is retried (backoff with jitter, ``Retry-After`` honoured) on connection
errors, timeouts, 408/409/429 and 5xx, but only while nothing has been streamed to
the caller: once text has been yielded, a failure is final, because a retry would
repeat it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

import httpx

from shopfloor.config import Settings
from shopfloor.errors import ModelRequestError, ModelUnavailableError, UnknownModelError
from shopfloor.models._base import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    TextDelta,
    UsageMeter,
    check_model_requests_allowed,
)
from shopfloor.models._retry import RetryPolicy, parse_retry_after
from shopfloor.models._sse import ServerFault, StreamParser, iter_sse_data
from shopfloor.security import resolve_setting
from shopfloor.telemetry import redact, register_secret

__all__ = ["OpenAIModel", "make_openai_model"]


class _Retryable(Exception):
    """One try failed in a way another try may fix."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class OpenAIModel(Model):
    provider = "openai"
    supports_native_tools = True

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        context_length: int = 4096,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
        structured_output: Literal["json_schema", "json_object"] = "json_schema",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(name, context_length=context_length)
        # Making a TLS context loads the CA bundle (tens of ms); a provider passes one shared by its models.
        self._tls: ssl.SSLContext | bool = tls if tls is not None else True
        self.structured_output = structured_output
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._headers = {"Accept": "text/event-stream, application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> httpx.AsyncClient:
        # A client's connection pool belongs to the event loop that opened it.
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            self._http = httpx.AsyncClient(
                base_url=self.base_url + "/",
                headers=self._headers,
                timeout=httpx.Timeout(self.timeout),
                transport=self._transport,
                verify=self._tls,
            )
            self._http_loop = loop
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        body: dict[str, Any] = {
            "model": self.name,
            "messages": [_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.json_schema is not None and self.structured_output == "json_object":
            body["response_format"] = {"type": "json_object", "schema": request.json_schema}
        elif request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": request.json_schema, "strict": False},
            }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
        return body

    async def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        check_model_requests_allowed(self.ref)
        body = self.request_body(request)
        tries = self.retry.max_retries + 1
        for attempt in range(tries):
            yielded = False
            try:
                # aclosing: a caller that stops early releases the HTTP connection now, not at GC.
                async with aclosing(self._attempt(request, body)) as events:
                    async for event in events:
                        yielded = True
                        yield event
                return
            except _Retryable as failure:
                if yielded:
                    raise ModelUnavailableError(f"{self._where()}: {failure.reason} mid-stream") from failure
                if attempt + 1 == tries:
                    raise ModelUnavailableError(
                        f"{self._where()}: {failure.reason}; gave up after {tries} tries"
                    ) from failure
                await asyncio.sleep(self.retry.delay(attempt, failure.retry_after))

    def _where(self) -> str:
        # A base URL may carry credentials (http://user:password@host): errors never show them.
        return f"model {self.ref} at {redact(self.base_url)}"

    async def _attempt(
        self, request: ModelRequest, body: dict[str, Any]
    ) -> AsyncGenerator[TextDelta | ModelResponse, None]:
        meter = UsageMeter()
        parser = StreamParser()
        try:
            async with self._client().stream("POST", "chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._raise_for_status(response)
                if response.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignores ``stream`` answers with one completion object.
                    await response.aread()
                    parser.feed_completion(_json_body(response))
                else:
                    async for data in iter_sse_data(response.aiter_lines()):
                        text = parser.feed(data)
                        if text:
                            meter.first_token()
                            yield TextDelta(text=text)
                    parser.check_complete()
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out after {self.timeout:g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from exc
        except ServerFault as exc:
            raise _Retryable(f"server error in stream: {exc}") from exc
        text = parser.text
        if text and not parser.saw_text:
            meter.first_token()
            yield TextDelta(text=text)
        input_tokens, output_tokens = parser.usage_counts()
        yield ModelResponse(
            text=text,
            model=self.name,
            provider=self.provider,
            finish_reason=parser.finish_reason or "stop",
            usage=meter.usage(
                input_tokens if input_tokens is not None else self.count_message_tokens(request.messages),
                output_tokens if output_tokens is not None else self.count_tokens(text),
            ),
            tool_calls=parser.tool_calls(),
        )

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        message = _error_message(response)
        if self.retry.should_retry_status(status):
            # OpenAI also sends the finer ``retry-after-ms``; prefer it when present.
            wait_ms = parse_retry_after(response.headers.get("retry-after-ms"))
            wait = (
                wait_ms / 1000
                if wait_ms is not None
                else parse_retry_after(response.headers.get("retry-after"))
            )
            raise _Retryable(f"HTTP {status}: {message}", wait)
        hint = _HINTS.get(status, "")
        raise ModelRequestError(
            f"{self._where()} refused the request: HTTP {status}: {message}{hint}", status=status
        )


_HINTS = {
    401: " (check the API key: settings openai.api_key or OPENAI_API_KEY)",
    403: " (the API key may lack access to this model)",
    404: " (check the model name and the base URL: settings openai.base_url or OPENAI_BASE_URL)",
}


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise ServerFault(f"invalid JSON body: {response.text[:200]!r}") from exc
    if not isinstance(data, dict):
        raise ServerFault(f"unexpected JSON body: {response.text[:200]!r}")
    return data


def _error_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI's ``{"error": {"message"}}``, FastAPI's ``detail``, or the raw text."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            parts = [str(error.get("message") or json.dumps(error))]
            parts += [f"{k}={error[k]}" for k in ("type", "code", "param") if error.get(k)]
            return " ".join(parts)[:500]
        if error is not None:
            return str(error)[:500]
    return json.dumps(data)[:500]


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return out


def make_openai_model(name: str, settings: Settings, *, tls: ssl.SSLContext | None = None) -> Model:
    """``openai:NAME`` from ``settings.openai``; ``tls`` is the TLS context its HTTP client uses (one made
    for it when None)."""
    if not name:
        raise UnknownModelError("'openai:' needs a model name, for example 'openai:gpt-4o-mini'")
    cfg = settings.openai
    # `api_key = "secret:NAME"`: read when the model is made, redacted by value from then on
    api_key = resolve_setting(settings, cfg.api_key, actor=f"model:openai:{name}")
    if api_key is not None and api_key != cfg.api_key:
        register_secret(api_key)
    return OpenAIModel(
        name,
        base_url=cfg.base_url,
        api_key=api_key,
        timeout=cfg.timeout,
        retry=RetryPolicy(max_retries=cfg.max_retries),
        context_length=settings.models.context_length,
        structured_output=cfg.structured_output,
        tls=tls,
    )

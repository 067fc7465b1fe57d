"""``kind = "openai"``: a replica that is an OpenAI-compatible server (OpenAI, NIM, vLLM, llama.cpp's
server), called through the gateway's own HTTP client (``_client.py``; measured against aiohttp and
httpx in ``benchmarks/bench_gateway.py``).

The key is the replica's own, from configuration (a ``secret:NAME`` reference resolved when the gateway
is built); the caller's ``Authorization`` header never reaches an upstream. All replicas of a gateway
share one connection pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

from shopfloor.config import UpstreamSettings
from shopfloor.errors import ConfigError, UpstreamError
from shopfloor.gateway.inference._backend import Backend, BackendContext, Endpoint
from shopfloor.gateway.inference._client import HttpPool, UpstreamResponse
from shopfloor.models import RETRYABLE_STATUS, parse_retry_after

__all__ = ["OpenAIBackend", "make_openai_backend"]

#: at most this much of an upstream's error body is read (and passed on to the caller)
_MAX_ERROR_BODY = 64 * 1024
#: an SSE event longer than this (a runaway upstream) ends the stream as failed
_MAX_EVENT = 8 * 1024 * 1024
#: a whole (non-streamed) answer longer than this is refused rather than held in memory
_MAX_ANSWER = 64 * 1024 * 1024
#: what fails one attempt at the transport level (refused, reset, TLS, a malformed answer)
_TRANSPORT_ERRORS = (OSError, httptools.HttpParserError, ValueError)


async def _failure(response: UpstreamResponse, name: str) -> UpstreamError:
    status = response.status
    try:
        error = await response.read(_MAX_ERROR_BODY)
    except (*_TRANSPORT_ERRORS,):
        error = b""
    retryable = status in RETRYABLE_STATUS or status >= 500
    retry_after = response.headers.get(b"retry-after")
    return UpstreamError(
        f"upstream {name} answered HTTP {status}",
        status=status if not retryable else 502,
        retryable=retryable,
        retry_after=parse_retry_after(retry_after.decode("latin-1") if retry_after else None),
        body=None if retryable else error,
    )


class OpenAIBackend(Backend):
    def __init__(self, *, name: str, url: str, model: str, api_key: str | None, pool: HttpPool) -> None:
        self.name = name
        self._base = url.rstrip("/") + "/"
        self._model = model
        self._pool = pool
        headers = b"Content-Type: application/json\r\nAccept-Encoding: identity\r\n"
        if api_key:
            headers += f"Authorization: Bearer {api_key}\r\n".encode()
        self._headers = headers

    async def aclose(self) -> None:
        await self._pool.aclose()  # shared: the first replica closes it, the others find it empty

    async def _post(self, endpoint: Endpoint, body: dict[str, Any]) -> UpstreamResponse:
        body["model"] = self._model
        try:
            response = await self._pool.post(self._base + endpoint, orjson.dumps(body), self._headers)
        except _TRANSPORT_ERRORS as exc:
            raise UpstreamError(f"upstream {self.name}: {type(exc).__name__}: {exc}") from exc
        if response.status != 200:
            try:
                raise await _failure(response, self.name)
            finally:
                response.close()
        return response

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> bytes:
        response = await self._post(endpoint, body)
        try:
            return await response.read(_MAX_ANSWER)
        except _TRANSPORT_ERRORS as exc:
            raise UpstreamError(f"upstream {self.name}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.close()

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[list[bytes]]:
        response = await self._post(endpoint, body)
        try:
            async for batch in _events(response.chunks()):
                if b"[DONE]" in batch:
                    before = batch[: batch.index(b"[DONE]")]
                    if before:
                        yield before
                    return
                yield batch
        except _TRANSPORT_ERRORS as exc:
            raise UpstreamError(f"upstream {self.name}: stream failed: {type(exc).__name__}: {exc}") from exc
        finally:
            response.close()  # not read to the end: the connection is closed, ending the upstream request
        raise UpstreamError(f"upstream {self.name}: the stream ended before [DONE]")


async def _events(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The data of the SSE events each network read completed (multi-line data joined by newlines);
    comments and other fields skipped."""
    buffer = b""
    async for chunk in chunks:
        buffer = buffer + chunk if buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        start = 0
        batch = []
        while (end := buffer.find(b"\n\n", start)) >= 0:
            data = _data(buffer[start:end])
            start = end + 2
            if data is not None:
                batch.append(data)
        if batch:
            yield batch
        buffer = buffer[start:]
        if len(buffer) > _MAX_EVENT:
            raise ValueError(f"an SSE event over {_MAX_EVENT} bytes")
    if buffer.strip():
        data = _data(buffer.strip(b"\n"))
        if data is not None:
            yield [data]


def _data(event: bytes) -> bytes | None:
    if event.startswith(b"data: ") and b"\n" not in event:  # the common case: one data line
        return event[6:]
    lines = [
        line[6:] if line.startswith(b"data: ") else line[5:]
        for line in event.split(b"\n")
        if line.startswith(b"data:")
    ]
    return b"\n".join(lines) if lines else None


def make_openai_backend(upstream: UpstreamSettings, context: BackendContext) -> Backend:
    key = upstream.api_key
    if key is not None and key.startswith("secret:"):
        if context.resolve_secret is None:
            raise ConfigError(
                f"gateway upstream {upstream.url}: api_key {key!r} names a secret, and no secret store "
                "is configured to resolve it"
            )
        key = context.resolve_secret(key.removeprefix("secret:"))
    if key is not None and ("\r" in key or "\n" in key):
        raise ConfigError(f"gateway upstream {upstream.url}: api_key contains a line break")
    pool = context.shared.setdefault("http", HttpPool())
    assert upstream.url is not None  # checked by UpstreamSettings
    parts = urlsplit(upstream.url)
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # never a password in a name
    return OpenAIBackend(
        name=upstream.name or f"{shown}#{upstream.model}",
        url=upstream.url,
        model=upstream.model,
        api_key=key,
        pool=pool,
    )

"""A lean HTTP/1.1 client for the upstream hop: keep-alive connections per upstream, one write per
request, httptools (llhttp) parsing the answer, and flow control for streams.

Measured in ``benchmarks/bench_gateway.py`` (``--compare``) against aiohttp's and httpx's clients: the
gateway's own cost per request is mostly its upstream client, and this one does only what an
OpenAI-compatible upstream needs (POST of a JSON body; a JSON or SSE answer, chunked or with a length;
no cookies, redirects or compression). A connection whose answer was not read to its end (a client that
left, a timeout) is closed, never reused, so the upstream sees the request end at once.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

__all__ = ["HttpPool", "UpstreamResponse"]

#: buffered answer bytes past which the socket stops being read until the consumer catches up
_HIGH_WATER = 256 * 1024


class UpstreamResponse:
    """One answer: ``status`` and ``headers`` (lower-case names) once ``HttpPool.post`` returns; the
    body through ``read`` or ``chunks``; ``close`` when done (releases or closes the connection)."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- fed by the connection
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER:
            self._connection.pause()
        self._wake()

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._complete:
            return
        self._error = error
        if not self.head.done():
            self.head.set_exception(error)
        self._wake()

    # -- read by the caller
    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; ConnectionError if the connection ends before the body does."""
        while True:
            if self._chunks:
                data = self._chunks.popleft()
                self._buffered -= len(data)
                if self._buffered <= _HIGH_WATER // 2:
                    self._connection.resume()
                yield data
                continue
            if self._complete:
                return
            if self._error is not None:
                raise ConnectionError(f"the upstream connection ended mid-answer: {self._error}")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None

    async def read(self, limit: int) -> bytes:
        """The whole body; ValueError past ``limit`` bytes."""
        parts = []
        size = 0
        async for data in self.chunks():
            size += len(data)
            if size > limit:
                raise ValueError(f"an answer over {limit} bytes")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._connection.done(reusable=self._complete and self._error is None)


class _Connection(asyncio.Protocol):
    def __init__(self, pool: HttpPool, key: tuple[str, int, bool]) -> None:
        self._pool = pool
        self._key = key
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.closed = False
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.response is not None:
                self.response._fail(exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is None:
            return
        headers = response.headers
        if (
            exc is None
            and response.head.done()
            and b"content-length" not in headers
            and headers.get(b"transfer-encoding") != b"chunked"
        ):
            response._finish()  # an answer delimited by the end of the connection
        else:
            response._fail(exc or ConnectionResetError("closed by the upstream"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response.status = self._parser.get_status_code()
            if not self.response.head.done():
                self.response.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response._finish()
        if not self._parser.should_keep_alive():
            self.closed = True  # closed once the caller is done with it

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def send(self, request: bytes) -> UpstreamResponse:
        self.response = UpstreamResponse(self)
        assert self.transport is not None
        self.transport.write(request)
        return self.response

    def done(self, *, reusable: bool) -> None:
        self.response = None
        if reusable and not self.closed and not self._paused:
            self._pool._idle[self._key].append(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    """Keep-alive connections by upstream host; made in the running loop, closed by ``aclose``."""

    def __init__(self) -> None:
        self._idle: collections.defaultdict[tuple[str, int, bool], list[_Connection]] = (
            collections.defaultdict(list)
        )
        self._ssl: ssl.SSLContext | None = None

    async def _connect(self, key: tuple[str, int, bool]) -> _Connection:
        host, port, tls = key
        if tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: _Connection(self, key), host, port, ssl=self._ssl if tls else None
        )
        return protocol

    async def post(self, url: str, body: bytes, headers: bytes) -> UpstreamResponse:
        """POST ``body`` with the raw header lines ``headers`` (each ending in CRLF) and return once the
        answer's status and headers are in. A kept-alive connection the upstream closed meanwhile is
        replaced by a fresh one, once."""
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        key = (parts.hostname or "localhost", parts.port or (443 if tls else 80), tls)
        host = parts.netloc.rpartition("@")[2].encode()  # credentials in a URL are not a Host
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = b"".join(
            (
                b"POST ", path.encode(), b" HTTP/1.1\r\nHost: ", host,
                b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n", headers, b"\r\n", body,
            )
        )  # fmt: skip
        idle = self._idle[key]
        while idle:
            connection = idle.pop()
            if connection.closed:
                continue
            response = connection.send(request)
            try:
                await response.head
                return response
            except (ConnectionError, httptools.HttpParserError):
                connection.done(reusable=False)  # closed under us: try a fresh connection
                break
            except BaseException:
                connection.done(reusable=False)
                raise
        connection = await self._connect(key)
        response = connection.send(request)
        try:
            await response.head
        except BaseException:
            connection.done(reusable=False)
            raise
        return response

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

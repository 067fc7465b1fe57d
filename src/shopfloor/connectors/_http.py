"""The HTTP client of a Streamable HTTP MCP server, with a bound on what one answer may hold.

The SDK bounds a server-sent event but reads a JSON answer whole; this transport stops reading
a body past ``max_message_bytes`` with a ``StreamError``, which the SDK turns into a parse error
of that one request (and so a clear tool error), never a worker that runs out of memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx2

__all__ = ["bounded_client"]


class _BoundedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, limit: int) -> None:
        self.inner = inner
        self.limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.inner:
            seen += len(chunk)
            if seen > self.limit:
                raise httpx2.StreamError(f"the server sent a message over {self.limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class _BoundedTransport(httpx2.AsyncBaseTransport):
    def __init__(self, limit: int) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.limit = limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        stream = response.stream
        assert isinstance(stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_BoundedStream(stream, self.limit),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def bounded_client(headers: Mapping[str, str], *, max_message_bytes: int) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` sending ``headers`` whose response bodies stop at ``max_message_bytes``."""
    return httpx2.AsyncClient(
        headers=dict(headers),
        timeout=httpx2.Timeout(30.0, read=300.0),
        transport=_BoundedTransport(max_message_bytes),
    )

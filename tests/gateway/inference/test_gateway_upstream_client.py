"""The upstream hop against servers that frame their answers in the other legal ways: SSE with CRLF,
comments, multi-line data and events split across reads; a body delimited by the connection's end; a
chunked body. Real sockets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from shopfloor.config import UpstreamSettings
from shopfloor.errors import UpstreamError
from shopfloor.gateway.inference import HttpPool, OpenAIBackend


async def _raw_server(answer: list[bytes], pause: float = 0.0) -> tuple[asyncio.Server, str]:
    """A server that reads one request and writes ``answer`` piece by piece, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            for piece in answer:
                writer.write(piece)
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)
        except ConnectionError:
            pass  # the client went away first: fine for these tests
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1"


def _backend(url: str, pool: HttpPool) -> OpenAIBackend:
    return OpenAIBackend(name="raw", url=url, model="m", api_key="k", pool=pool)


async def _collect(events: AsyncIterator[list[bytes]]) -> list[bytes]:
    return [data async for batch in events for data in batch]


async def test_sse_framing_in_its_legal_variants() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    events = (
        b": keep-alive comment\r\n\r\n"
        b'data: {"a": 1}\r\n\r\n'
        b'data:{"b":\ndata: 2}\n\n'
        b"event: ignored\nid: 7\ndata: [DONE]\n\n"
    )
    pieces = [events[i : i + 7] for i in range(0, len(events), 7)]  # split mid-line and mid-CRLF
    body = [head, *(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces), b"0\r\n\r\n"]
    server, url = await _raw_server(body, pause=0.001)
    pool = HttpPool()
    try:
        got = await _collect(_backend(url, pool).stream("chat/completions", {"model": "x", "messages": []}))
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
    assert got == [b'{"a": 1}', b'{"b":\n2}']


async def test_a_body_ended_by_the_connection_and_a_stream_without_done() -> None:
    whole = b'{"choices": []}'
    server, url = await _raw_server([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", whole])
    pool = HttpPool()
    try:
        assert await _backend(url, pool).complete("chat/completions", {"messages": []}) == whole
    finally:
        server.close()
        await server.wait_closed()
    cut = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
        b"data: {}\n\n",
    ]
    server, url = await _raw_server(cut)
    try:
        with pytest.raises(UpstreamError, match="before \\[DONE\\]"):
            await _collect(_backend(url, pool).stream("chat/completions", {"messages": []}))
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()


async def test_a_length_the_body_does_not_reach_and_garbage_are_failures() -> None:
    short = [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"{}"]
    garbage = [b"NOT HTTP AT ALL\r\n\r\n"]
    for answer in (short, garbage):
        server, url = await _raw_server(answer)
        pool = HttpPool()
        try:
            with pytest.raises(UpstreamError) as caught:
                await _backend(url, pool).complete("chat/completions", {"messages": []})
            assert caught.value.retryable
        finally:
            await pool.aclose()
            server.close()
        await server.wait_closed()


def test_an_api_key_with_a_line_break_is_refused() -> None:
    from shopfloor.config import Settings
    from shopfloor.errors import ConfigError
    from shopfloor.gateway.inference import BackendContext
    from shopfloor.gateway.inference._upstream import make_openai_backend

    upstream = UpstreamSettings(url="http://127.0.0.1:9/v1", model="m", api_key="k\r\nX-Injected: 1")
    context = BackendContext(
        settings=Settings(home="/nonexistent"), resolve_secret=None, make_model=str, shared={}, metrics=None
    )
    with pytest.raises(ConfigError, match="line break"):
        make_openai_backend(upstream, context)

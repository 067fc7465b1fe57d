"""Real loopback servers for the gateway tests: the gateway under uvicorn in a thread, and a fake
OpenAI-compatible upstream (a real HTTP server too) that misbehaves on request."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from shopfloor.errors import AuthenticationError, BudgetExceededError
from shopfloor.security import Admission, Authenticator, Grant, Principal, Usage, UsageRequest

KEY = "test-key-0123456789"


class KeyAuthenticator(Authenticator):
    """Accepts ``Bearer <KEY>`` only (the real key authenticator comes with the identity work)."""

    def authenticate(self, authorization: str | None) -> Principal:
        if authorization != f"Bearer {KEY}":
            raise AuthenticationError("a valid API key is required (Authorization: Bearer ...)")
        return Principal(id="key:test", kind="program", name="test program")


class _Grant(Grant):
    def __init__(self, owner: CountingAdmission) -> None:
        self._owner = owner

    def settle(self, usage: Usage) -> None:
        self._owner.settled.append(usage)


class CountingAdmission(Admission):
    """Admits ``limit`` requests, then refuses with ``retry_after``; records every settlement."""

    def __init__(self, limit: int, retry_after: float = 7.0) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.admitted: list[UsageRequest] = []
        self.settled: list[Usage] = []

    def admit(self, request: UsageRequest) -> Grant:
        if len(self.admitted) >= self.limit:
            raise BudgetExceededError(f"key:test requests/min ({self.limit})", retry_after=self.retry_after)
        self.admitted.append(request)
        return _Grant(self)


@contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """Run ASGI ``app`` with uvicorn on a free loopback port in a thread; yields ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="auto", timeout_graceful_shutdown=5, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the loopback server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass(kw_only=True)
class Behaviour:
    """What the fake upstream does with one request."""

    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0  # before the answer (or before the first chunk)
    chunks: int = 3  # of a streamed answer
    chunk_delay: float = 0.0  # between chunks (the first is sent at once)
    cut_after: int | None = None  # close a stream after this many chunks, without [DONE]
    chunk_size: int = 0  # pad each chunk's text to this many characters


@dataclass
class FakeUpstream:
    """An OpenAI-compatible server: answers ``chat/completions``, ``completions``, ``embeddings``
    following ``plan`` (one ``Behaviour`` per request, then ``default``)."""

    name: str = "fake"
    plan: list[Behaviour] = field(default_factory=list)
    default: Behaviour = field(default_factory=Behaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)  # when a client left mid-stream
    bytes_sent: int = 0
    in_flight: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        data = json.loads(body)
        self.requests.append(data)
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        behaviour = self.plan.pop(0) if self.plan else self.default
        self.in_flight += 1
        try:
            await self._answer(scope["path"], data, behaviour, receive, send)
        finally:
            self.in_flight -= 1

    async def _answer(self, path: str, data: dict[str, Any], b: Behaviour, receive: Any, send: Any) -> None:
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.status != 200:
            headers = [(b"content-type", b"application/json")]
            if b.retry_after is not None:
                headers.append((b"retry-after", b.retry_after.encode()))
            error = {"error": {"message": f"{self.name} says {b.status}", "type": "server_error"}}
            await send({"type": "http.response.start", "status": b.status, "headers": headers})
            await send({"type": "http.response.body", "body": json.dumps(error).encode()})
            return
        text = f"hello from {self.name}"
        if path.endswith("/embeddings"):
            inputs = data["input"] if isinstance(data["input"], list) else [data["input"]]
            answer: dict[str, Any] = {
                "object": "list",
                "model": data["model"],
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.5, 0.25]} for i in range(len(inputs))
                ],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        elif not data.get("stream"):
            answer = {
                "id": "cmpl-1",
                "object": "chat.completion" if "messages" in data else "text_completion",
                "created": 1,
                "model": data["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    if "messages" in data
                    else {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
            }
        else:
            await self._stream(data, b, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    async def _stream(self, data: dict[str, Any], b: Behaviour, receive: Any, send: Any) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnects.append(time.monotonic())
            gone.set()

        watcher = asyncio.create_task(watch())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        try:
            for index in range(b.chunks):
                if gone.is_set():
                    return
                if b.cut_after is not None and index == b.cut_after:
                    return  # the connection ends without [DONE]
                if b.chunk_delay and index:
                    await asyncio.sleep(b.chunk_delay)
                piece = f"part{index} " + "x" * b.chunk_size
                chunk = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": data["model"],
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
                payload = b"data: " + json.dumps(chunk).encode() + b"\n\n"
                self.bytes_sent += len(payload)
                await send({"type": "http.response.body", "body": payload, "more_body": True})
            final = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": data["model"],
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            tail = b"data: " + json.dumps(final).encode() + b"\n\n"
            if (data.get("stream_options") or {}).get("include_usage"):
                usage = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": data["model"]}
                usage |= {
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 7,
                        "completion_tokens": b.chunks,
                        "total_tokens": 7 + b.chunks,
                    },
                }
                tail += b"data: " + json.dumps(usage).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n", "more_body": False})
        finally:
            watcher.cancel()

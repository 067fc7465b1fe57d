"""A small OpenAI-compatible HTTP server on loopback, scripted per request.

It is a real server (stdlib ``http.server`` in a thread) so the provider's HTTP,
SSE framing, timeouts and connection handling are exercised for real. Each
request takes the next scripted ``Reply``; with none left it streams an echo.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(kw_only=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # sent as JSON when set
    chunks: list[Any] | None = None  # sent as SSE events (dicts as JSON), then [DONE]
    delay: float = 0.0  # before the status line
    stall_after: int | None = None  # stop sending after this many chunks and hang
    drop: bool = False  # close the connection without answering
    done: bool = True  # send data: [DONE] at the end


@dataclass(kw_only=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


def chunk(content: str | None = None, *, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def text_stream(*pieces: str, prompt: int = 11, completion: int | None = None) -> list[Any]:
    return [
        chunk(role="assistant"),
        *(chunk(p) for p in pieces),
        chunk(finish="stop"),
        usage_chunk(prompt, len(pieces) if completion is None else completion),
    ]


class FakeOpenAIServer:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Recorded] = []
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                server.requests.append(
                    Recorded(
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=json.loads(raw or b"{}"),
                        at=time.monotonic(),
                    )
                )
                reply = server.replies.popleft() if server.replies else server.echo(server.requests[-1].body)
                server.answer(self, reply)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def echo(self, body: dict[str, Any]) -> Reply:
        last = str(body["messages"][-1]["content"])
        return Reply(chunks=text_stream(*[w + " " for w in last.split()]))

    def answer(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.delay and self._release.wait(reply.delay):
            return
        if reply.drop:
            handler.close_connection = True
            return
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        if reply.chunks is None:
            payload = json.dumps(reply.body if reply.body is not None else {}).encode()
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        for sent, item in enumerate(reply.chunks):
            if reply.stall_after is not None and sent == reply.stall_after:
                self._release.wait(30)
                return
            data = item if isinstance(item, str) else json.dumps(item)
            handler.wfile.write(f"data: {data}\n\n".encode())
            handler.wfile.flush()
        if reply.done:
            handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

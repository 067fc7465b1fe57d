"""Scripts of MCP servers the connector tests run: one written with the SDK's MCPServer (FastMCP),
and one that misbehaves at the protocol level on request."""

from __future__ import annotations

FASTMCP_SERVER = r'''
import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("shopfloor-test")
print("starting with token", os.environ.get("API_TOKEN", "-"), file=sys.stderr, flush=True)


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def whoami(ctx: Context) -> dict:
    """What the call carried: its _meta, and the token the server was started with."""
    meta = dict(ctx.request_context.meta or {})
    return {"meta": meta, "token_set": bool(os.environ.get("API_TOKEN")), "pid": os.getpid()}


@server.tool()
def tick(note: str, ctx: Context) -> dict:
    """Appends a line to the file TICK_FILE names: how many times it was really called."""
    with open(os.environ["TICK_FILE"], "a") as handle:
        handle.write(note + "\n")
    with open(os.environ["TICK_FILE"]) as handle:
        ticks = len(handle.readlines())
    traceparent = dict(ctx.request_context.meta or {}).get("traceparent")
    return {"ticks": ticks, "answer": f"ticked {note}", "traceparent": traceparent}


@server.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ToolError(f"deliberate failure: {reason}")


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps."""
    await anyio.sleep(seconds)
    return "woke"


@server.tool()
def crash() -> str:
    """Exits the whole server."""
    os._exit(3)


@server.resource("data://greeting", name="greeting", description="A greeting")
def greeting() -> str:
    return "hello from a resource"


@server.prompt()
def review(code: str) -> str:
    """Review some code."""
    return f"Please review: {code}"


if sys.argv[1] == "stdio":
    server.run()
else:
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
'''

#: a stdio server speaking just enough JSON-RPC by hand to break the protocol in a chosen way:
#: argv[1] names the fault of a tools/call (garbage, oversized, hang, unknown, badresult, exit)
BROKEN_SERVER = r"""
import json
import sys
import time

fault = sys.argv[1]
if fault == "noisy":
    for number in range(3000):
        print(f"noise line {number}", file=sys.stderr)
    sys.stderr.flush()
if fault == "die-at-start":
    print("cannot start: missing configuration", file=sys.stderr, flush=True)
    sys.exit(7)


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    request = json.loads(line)
    method, rid = request.get("method"), request.get("id")
    if rid is None:
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "broken", "version": "0"}}})
    elif method == "tools/list":
        tools = [{"name": "act", "description": "misbehaves", "inputSchema": {"type": "object"}}]
        if fault == "badschema":
            invalid = {"type": "object", "properties": {"a": {"type": 5}}}
            tools.append({"name": "invalid", "inputSchema": invalid})
            tools.append({"name": "huge", "inputSchema": {"type": "object", "description": "x" * 100_000}})
        if fault == "pages":
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": [], "nextCursor": "more"}})
        else:
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": tools}})
    elif method == "ping":
        if fault != "hang":
            send({"jsonrpc": "2.0", "id": rid, "result": {}})
    elif method == "tools/call":
        if fault == "garbage":
            sys.stdout.write("this is not json at all\n")
            sys.stdout.flush()
        elif fault == "oversized":
            text = "x" * 8_000_000
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}})
            sys.stdout.flush()
        elif fault == "hang":
            time.sleep(3600)
        elif fault == "unknown":
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})
        elif fault == "badresult":
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": 42}})
        elif fault == "exit":
            print("fatal: giving up", file=sys.stderr, flush=True)
            sys.exit(5)
        else:
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "fine"}]}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})
"""

#: a Streamable HTTP server by hand (JSON answers only): argv[1] the port, argv[2] the fault of a tools/call
BROKEN_HTTP_SERVER = r"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, fault = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    sessions = 0

    def answer(self, status, body, kind="application/json", session=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if session is not None:
            self.send_header("Mcp-Session-Id", session)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer(405, b"", "text/plain")

    def do_DELETE(self):
        self.answer(200, b"", "text/plain")

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        method, rid = request.get("method"), request.get("id")
        if rid is None:
            self.answer(202, b"", "text/plain")
        elif method == "initialize":
            Handler.sessions += 1
            self.answer(200, {"jsonrpc": "2.0", "id": rid, "result": {
                "protocolVersion": request["params"]["protocolVersion"], "capabilities": {"tools": {}},
                "serverInfo": {"name": "broken-http", "version": "0"}}}, session=f"s{Handler.sessions}")
        elif method == "tools/list":
            self.answer(200, {"jsonrpc": "2.0", "id": rid, "result": {"tools": [
                {"name": "act", "description": "misbehaves", "inputSchema": {"type": "object"}}]}})
        elif method == "tools/call" and fault == "garbage":
            self.answer(200, b"<html>this is not json</html>")
        elif method == "tools/call" and fault == "oversized":
            content = [{"type": "text", "text": "x" * 8_000_000}]
            self.answer(200, {"jsonrpc": "2.0", "id": rid, "result": {"content": content}})
        elif method == "tools/call" and fault == "expire" and self.headers.get("Mcp-Session-Id") == "s1":
            self.answer(404, b"session not found", "text/plain")
        elif method == "tools/call" and fault == "expire":
            session = self.headers.get("Mcp-Session-Id")
            content = [{"type": "text", "text": f"served in session {session}"}]
            self.answer(200, {"jsonrpc": "2.0", "id": rid, "result": {"content": content}})
        elif method == "tools/call" and fault == "status500":
            self.answer(500, b"internal error", "text/plain")
        else:
            error = {"code": -32601, "message": "Method not found"}
            self.answer(200, {"jsonrpc": "2.0", "id": rid, "error": error})


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

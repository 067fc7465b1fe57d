"""The stdio transport of an MCP server, with the bounds the SDK's own transport lacks.

The server runs as a child process in its own session; JSON-RPC messages are lines on its
stdin and stdout. A line longer than ``max_message_bytes``, a line that is not JSON-RPC, or
the process exiting ends the transport with a ``fault`` that says which, so that the calls
in flight fail with that reason at once (a server that broke the framing cannot be trusted
with the next message) and the supervisor starts a fresh process. The server's stderr goes
to the log, line by line, each line and the number of lines bounded, scrubbed of secrets, and
its last lines are kept for the error that reports a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp.types import jsonrpc_message_adapter

__all__ = ["StdioProcess", "stdio_transport"]

_STDERR_LINE_CHARS = 2000
_STDERR_TAIL_LINES = 20
#: lines of one server process's stderr that reach the log (a server that floods it cannot flood the log)
_STDERR_LOG_LINES = 1000
_KILL_GRACE = 0.5


@dataclass(kw_only=True)
class StdioProcess:
    """What the supervisor learns about the running server."""

    pid: int
    #: why the transport ended, once it has (exit code, oversized or malformed message)
    fault: str | None = None
    #: the last lines of the server's stderr, scrubbed
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=_STDERR_TAIL_LINES))
    ended: anyio.Event = field(default_factory=anyio.Event)

    def describe(self) -> str:
        tail = " | ".join(self.stderr_tail)
        return f"{self.fault or 'the server stopped'}" + (f"; its stderr ended with: {tail}" if tail else "")


ReadStreams = tuple[
    MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]
]


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Close stdin and wait a little, then SIGTERM and SIGKILL the server's whole process group
    (the order of the MCP specification's stdio shutdown)."""
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signum)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _KILL_GRACE)
            return


@asynccontextmanager
async def stdio_transport(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    logger: logging.Logger,
    scrub: Callable[[str], str],
    max_message_bytes: int,
) -> AsyncIterator[tuple[ReadStreams, StdioProcess]]:
    """Start ``argv`` with ``env`` and yield the stream pair a ``ClientSession`` takes, and the
    process's state. Leaving the context stops the process (and its children)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        limit=max_message_bytes,
        start_new_session=True,
    )
    state = StdioProcess(pid=process.pid)
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](16)
    assert process.stdout is not None and process.stdin is not None and process.stderr is not None
    stdout, stdin, stderr = process.stdout, process.stdin, process.stderr

    def end(fault: str) -> None:
        if state.fault is None:
            state.fault = fault
        state.ended.set()

    async def read() -> None:
        async with read_send:
            while True:
                try:
                    line = await stdout.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    end(f"the server sent a message over {max_message_bytes} bytes")
                    return
                if not line:
                    code = await process.wait()
                    end(f"the server exited with code {code}")
                    return
                if not line.strip():
                    continue
                try:
                    message = jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError:
                    shown = scrub(line[:200].decode("utf-8", "replace")).strip()
                    end(f"the server wrote something that is not a JSON-RPC message: {shown!r}")
                    return
                try:
                    await read_send.send(SessionMessage(message))
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return

    async def write() -> None:
        async with write_recv:
            async for item in write_recv:
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                try:
                    stdin.write(data.encode())
                    await stdin.drain()
                except (ConnectionError, OSError):
                    end("the server closed its input")
                    return

    async def log_stderr() -> None:
        logged = 0
        while True:
            try:
                raw = await stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                # A stderr line over the limit: skip what is buffered and go on reading.
                continue
            if not raw:
                return
            text = scrub(raw.decode("utf-8", "replace").rstrip())[:_STDERR_LINE_CHARS]
            if text:
                state.stderr_tail.append(text)
                logged += 1
                if logged <= _STDERR_LOG_LINES:
                    logger.info("stderr: %s", text)
                elif logged == _STDERR_LOG_LINES + 1:
                    logger.warning("stderr: more than %d lines; the rest is not logged", _STDERR_LOG_LINES)

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        group.start_soon(write)
        group.start_soon(log_stderr)
        try:
            yield (read_recv, write_send), state
        finally:
            with anyio.CancelScope(shield=True):
                end("the connection was closed")
                await write_send.aclose()
                await _stop(process)
            group.cancel_scope.cancel()

"""One persistent, supervised MCP session per server, shared by every run of a worker.

A background task owns the transport and the ``ClientSession`` (anyio scopes must be left by
the task that entered them); callers borrow the live session. When the transport ends (the
process died, broke the framing, or a call found the connection gone) the task opens a fresh
one after a backoff that doubles from ``BACKOFF_START`` to ``BACKOFF_MAX`` and resets once a
session is up. A caller waits for a session at most the call timeout, and fails at once with
the reason when the attempt it waited for failed, so a server that cannot start makes each
call fail quickly and clearly instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import LoggingMessageNotificationParams

from shopfloor.connectors._base import Secrets
from shopfloor.connectors._http import bounded_client
from shopfloor.connectors._stdio import StdioProcess, stdio_transport
from shopfloor.errors import ConnectorError
from shopfloor.spec import McpServerSpec

__all__ = ["BACKOFF_MAX", "BACKOFF_START", "McpSupervisor"]

#: MCP (RFC 5424) log levels as Python's
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}

BACKOFF_START = 0.2
BACKOFF_MAX = 10.0
#: environment variables a stdio server inherits from the worker (everything else is the spec's env)
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM")

Streams = tuple[Any, Any]
Opened = tuple[Streams, StdioProcess | None]


class McpSupervisor:
    """Keeps one ``ClientSession`` to a server alive; ``session(timeout)`` lends it."""

    def __init__(
        self,
        name: str,
        server: McpServerSpec,
        secrets: Secrets,
        *,
        max_message_bytes: int = 4 << 20,
        logger: logging.Logger | None = None,
    ) -> None:
        self.name = name
        self.server = server
        self.secrets = secrets
        self.max_message_bytes = max_message_bytes
        self.logger = logger or logging.getLogger(f"shopfloor.connectors.{name}")
        #: sessions started so far (a restart adds one)
        self.starts = 0
        #: why the last session ended or the last attempt failed
        self.fault: str | None = None
        self._session: ClientSession | None = None
        self._failures = 0
        self._changed = asyncio.Condition()
        self._restart = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._process: StdioProcess | None = None

    @property
    def pid(self) -> int | None:
        """The stdio server's process id, while one runs."""
        return self._process.pid if self._process is not None and self._session is not None else None

    def _transport(self) -> AbstractAsyncContextManager[Opened]:
        if self.server.command is not None:
            return self._stdio(self.server.command)
        assert self.server.url is not None
        return self._http(self.server.url)

    @asynccontextmanager
    async def _stdio(self, command: list[str]) -> AsyncIterator[Opened]:
        env = {key: os.environ[key] for key in _INHERITED_ENV if key in os.environ}
        env |= self.secrets.resolve_all(self.server.env, where=f"connector {self.name!r}: env")
        async with stdio_transport(
            command,
            env,
            logger=self.logger,
            scrub=self.secrets.scrub,
            max_message_bytes=self.max_message_bytes,
        ) as (streams, process):
            yield streams, process

    @asynccontextmanager
    async def _http(self, url: str) -> AsyncIterator[Opened]:
        headers = self.secrets.resolve_all(self.server.headers, where=f"connector {self.name!r}: headers")
        client = bounded_client(headers, max_message_bytes=self.max_message_bytes)
        async with (
            client,
            streamable_http_client(
                url, http_client=client, max_sse_event_size=self.max_message_bytes
            ) as streams,
        ):
            yield (streams[0], streams[1]), None

    async def _server_log(self, params: LoggingMessageNotificationParams) -> None:
        """A log message the server sent (``notifications/message``), into this process's log at the
        matching level, the server's own credentials scrubbed from it."""
        text = params.data if isinstance(params.data, str) else json.dumps(params.data, default=str)
        source = f"{self.name}/{params.logger}" if params.logger else self.name
        level = _LOG_LEVELS.get(params.level, logging.WARNING)
        self.logger.log(level, "MCP server %s: %s", source, self.secrets.scrub(text)[:2000])

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            connected = False
            try:
                async with (
                    self._transport() as (streams, process),
                    ClientSession(streams[0], streams[1], logging_callback=self._server_log) as session,
                ):
                    self._process = process
                    await asyncio.wait_for(session.initialize(), 30.0)
                    self.starts += 1
                    attempt = 0
                    connected = True
                    async with self._changed:
                        self._session = session
                        self._changed.notify_all()
                    self.logger.info("connected to MCP server %s (start %d)", self.name, self.starts)
                    await self._until_ended(process)
                    self._session = None
                    if process is not None and process.fault:
                        self.fault = process.describe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.fault = self._describe(exc)
            async with self._changed:
                self._session = None
                # Only a start that failed fails the callers waiting for one; a session that ended
                # after it was up is simply started again.
                self._failures += 0 if connected else 1
                self._changed.notify_all()
            if self._closed:
                return
            self.logger.warning("MCP server %s stopped: %s", self.name, self.fault)
            delay = min(BACKOFF_START * 2**attempt, BACKOFF_MAX)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._restart.wait(), delay)
            self._restart.clear()

    async def _until_ended(self, process: StdioProcess | None) -> None:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._restart.wait())]
        if process is not None:
            waits.append(asyncio.ensure_future(process.ended.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        self._restart.clear()

    def _describe(self, exc: BaseException) -> str:
        process = self._process
        if process is not None and process.fault:
            return process.describe()
        if isinstance(exc, ConnectorError):
            return str(exc)
        if isinstance(exc, BaseExceptionGroup):
            inner = exc.exceptions[0] if exc.exceptions else exc
            return self._describe(inner)
        if isinstance(exc, FileNotFoundError):
            return f"cannot start {self.server.command[0] if self.server.command else '?'}: not found"
        if isinstance(exc, TimeoutError):
            return "the server did not complete the MCP handshake within 30 s"
        return self.secrets.scrub(f"{type(exc).__name__}: {exc}")[:500]

    async def session(self, wait: float) -> ClientSession:
        """The live session: waits for one at most ``wait`` seconds, or until the start being
        waited for fails, and then raises ConnectorError with the reason."""
        if self._closed:
            raise ConnectorError(f"connector {self.name!r} is closed")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"mcp-{self.name}")
        process = self._process
        if self._session is not None and process is not None and process.ended.is_set():
            self._session = None  # the process is gone; the supervisor is about to notice
        async with self._changed:
            failures = self._failures
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._session is not None or self._failures > failures),
                    wait,
                )
            except TimeoutError:
                raise ConnectorError(
                    f"MCP server {self.name!r} is not available after {wait:g} s"
                    + (f" (last problem: {self.fault})" if self.fault else "")
                ) from None
            if self._session is None:
                raise ConnectorError(f"MCP server {self.name!r} is not available: {self.fault}")
            return self._session

    def restart(self, reason: str) -> None:
        """End the current session (the supervisor starts a fresh one); no caller gets it again."""
        self.fault = reason
        self._session = None
        self._restart.set()

    def ended_reason(self) -> str | None:
        """Why the stdio transport ended, if it has."""
        process = self._process
        return process.describe() if process is not None and process.fault else None

    async def aclose(self) -> None:
        self._closed = True
        self._restart.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, 10.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()

"""The allow-listing egress proxy: HTTP CONNECT on a unix socket, only to the policy's host:port pairs.

It runs in the host process, outside the sandbox; the socket is bound into the sandbox, which has no
network of its own. Every connection attempt is logged and kept in ``records``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from shopfloor.sandbox._policy import NetworkRule

__all__ = ["AllowListProxy", "ProxyRecord"]

log = logging.getLogger("shopfloor.sandbox.proxy")
_HEAD_LIMIT = 8192
_HEAD_TIMEOUT = 10.0
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class ProxyRecord:
    tenant: str
    host: str
    port: int
    allowed: bool
    reason: str
    at: float


class AllowListProxy:
    def __init__(self, rules: tuple[NetworkRule, ...], socket_path: Path, *, tenant: str, uid: int) -> None:
        self.allowed = {(rule.host, rule.port) for rule in rules}
        self.socket_path = socket_path
        self.tenant = tenant
        self.uid = uid
        self.records: list[ProxyRecord] = []
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.socket_path))
        if os.geteuid() == 0:
            os.chown(self.socket_path, self.uid, self.uid)
        os.chmod(self.socket_path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)

    def _record(self, host: str, port: int, allowed: bool, reason: str) -> None:
        record = ProxyRecord(
            tenant=self.tenant, host=host, port=port, allowed=allowed, reason=reason, at=time.time()
        )
        self.records.append(record)
        log.info(
            "sandbox egress %s %s:%d tenant=%s (%s)",
            "allowed" if allowed else "denied",
            host,
            port,
            self.tenant,
            reason,
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
        if len(head) > _HEAD_LIMIT:
            return
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or parts[0] != "CONNECT":
            self._record(parts[1] if len(parts) > 1 else "?", 0, False, "only CONNECT is supported")
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\n\r\n")
            return
        host, _, port_text = parts[1].rpartition(":")
        host = host.strip("[]").lower()
        port = int(port_text) if port_text.isdigit() else 0
        if (host, port) not in self.allowed:
            self._record(host, port, False, "not in the policy's network allow-list")
            writer.write(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), _CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            self._record(host, port, False, f"upstream unreachable: {exc}")
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n")
            return
        self._record(host, port, True, "in the allow-list")
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

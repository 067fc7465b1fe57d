"""The allow-listing egress proxy: HTTP CONNECT, only to the policy's host:port pairs.

It runs in the host process, outside the sandbox, one per sandbox. The sandbox has no network of its
own: the session helper inside accepts each TCP connection to ``127.0.0.1:3128`` and hands its file
descriptor to this proxy over a socket pair (``channel``), so nothing in the sandbox ever needs a Unix
socket to reach the host. Every connection attempt is logged and kept in ``records``.

Bounds, so that one sandbox cannot deny service to another or to the host: at most
``policy.egress_connections`` connections open at once and ``policy.egress_rate`` new ones a second
(a token bucket holding one second's worth) per sandbox; past either, the connection is answered 429 and
closed at once. The proxy's host file descriptors are thus at most two per allowed connection plus the
channel. An allow-listed *name* that resolves to a loopback, link-local, private or otherwise non-public
address is refused unless the allow-list also names that address itself (same port) or the policy sets
``network_private``; the proxy connects to the address it checked, never re-resolving.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass

from shopfloor.sandbox._policy import SandboxPolicy

__all__ = ["AllowListProxy", "ProxyRecord", "is_public_address"]

log = logging.getLogger("shopfloor.sandbox.proxy")
_HEAD_LIMIT = 8192
_HEAD_TIMEOUT = 10.0
_CONNECT_TIMEOUT = 10.0
_RECORDS = 1024


@dataclass(frozen=True, kw_only=True)
class ProxyRecord:
    tenant: str
    host: str
    port: int
    allowed: bool
    reason: str
    at: float


def is_public_address(address: str) -> bool:
    """False for loopback, link-local, private, shared, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _Bucket:
    """``rate`` tokens a second, holding at most one second's worth (at least one)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class AllowListProxy:
    """Serves the connections the sandbox's helper hands over on ``channel`` (a SOCK_SEQPACKET socket)."""

    def __init__(self, policy: SandboxPolicy, channel: socket.socket, *, tenant: str) -> None:
        self.allowed = {(rule.host, rule.port) for rule in policy.network}
        self.allow_private = policy.network_private
        self.max_connections = policy.egress_connections
        self.channel = channel
        self.tenant = tenant
        self.records: deque[ProxyRecord] = deque(maxlen=_RECORDS)
        self.refused = 0  # connections turned away by the caps
        self.open = 0
        self._bucket = _Bucket(policy.egress_rate)
        self._capped = False
        self._receiver: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.channel.setblocking(False)
        self._receiver = asyncio.ensure_future(self._receive())

    async def close(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            await asyncio.wait({self._receiver}, timeout=1.0)
        self.channel.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, 16, 1)
            except BlockingIOError:
                readable: asyncio.Future[None] = loop.create_future()

                def wake(future: asyncio.Future[None] = readable) -> None:
                    if not future.done():
                        future.set_result(None)

                loop.add_reader(self.channel.fileno(), wake)
                try:
                    await readable
                finally:
                    loop.remove_reader(self.channel.fileno())
                continue
            except OSError:
                return
            if not message and not fds:
                return  # the helper is gone
            for fd in fds:
                self._admit(fd)

    def _admit(self, fd: int) -> None:
        try:
            client = socket.socket(fileno=fd)
        except OSError:
            socket.close(fd)  # not a socket: nothing the helper should send
            return
        reason = None
        if self.open >= self.max_connections:
            reason = f"over the sandbox's cap of {self.max_connections} open connections"
        elif not self._bucket.take():
            reason = f"over the sandbox's rate of {self._bucket.rate:g} new connections a second"
        if reason is not None:
            self.refused += 1
            if not self._capped:  # one line per burst, not one per refused connection
                self._capped = True
                self._record("?", 0, False, reason)
            with contextlib.suppress(OSError):
                client.setblocking(False)
                client.send(b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\n\r\n")
            client.close()
            return
        self._capped = False
        self.open += 1
        task = asyncio.ensure_future(self._handle(client))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(done, client))

    def _done(self, task: asyncio.Task[None], client: socket.socket) -> None:
        # Here, not in _handle: a task cancelled before its first step never runs its body.
        self._tasks.discard(task)
        self.open -= 1
        client.close()

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

    async def _handle(self, client: socket.socket) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=client)
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _destination(self, host: str, port: int) -> tuple[str | None, str]:
        """The address to connect to, or None and why not."""
        if (host, port) not in self.allowed:
            return None, "not in the policy's network allow-list"
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return None, f"cannot resolve {host}: {exc}"
        for *_, sockaddr in infos:
            address = str(sockaddr[0])
            if self.allow_private or is_public_address(address) or (address, port) in self.allowed:
                return address, "in the allow-list"
        resolved = ", ".join(sorted({str(info[4][0]) for info in infos}))
        return None, (
            f"{host} resolves to {resolved}, a loopback, link-local or private address; allow it by "
            "listing that address in the allow-list, or set network_private in the policy"
        )

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
        address, reason = await self._destination(host, port)
        if address is None:
            self._record(host, port, False, reason)
            writer.write(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(address, port), _CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            self._record(host, port, False, f"upstream unreachable: {exc}")
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n")
            return
        self._record(host, port, True, reason)
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

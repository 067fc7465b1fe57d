"""Allow-listed network: the sandbox reaches exactly the policy's host:port pairs through the proxy."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.sandbox import Command, NetworkRule, SandboxPolicy, open_sandbox
from shopfloor.sandbox._proxy import AllowListProxy, is_public_address
from shopfloor.sandbox._session import HelperSession

CLIENT = """
import json, os, socket, sys
def tunnel(host, port):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=5)
    s.sendall(f'CONNECT {host}:{port} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n\\r\\n'.encode())
    head = s.recv(200).decode()
    if not head.startswith('HTTP/1.1 200'):
        return head.split('\\r\\n')[0]
    s.sendall(b'ping')
    return head.split('\\r\\n')[0] + ' | ' + s.recv(100).decode()
print(json.dumps({
    'allowed': tunnel('127.0.0.1', int(sys.argv[1])),
    'other_port': tunnel('127.0.0.1', int(sys.argv[2])),
    'proxy_env': os.environ.get('HTTPS_PROXY'),
}))
"""


@pytest.mark.usefixtures("bwrap_ready")
async def test_allow_listed_destination_only(
    workspace: Path, sandbox_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(4)
        seen.append(data)
        writer.write(b"pong:" + data)
        await writer.drain()
        writer.close()

    allowed_server = await asyncio.start_server(echo, "127.0.0.1", 0)
    other_server = await asyncio.start_server(echo, "127.0.0.1", 0)
    allowed_port = allowed_server.sockets[0].getsockname()[1]
    other_port = other_server.sockets[0].getsockname()[1]
    policy = SandboxPolicy(isolation="bwrap", network=(NetworkRule(host="127.0.0.1", port=allowed_port),))
    caplog.set_level(logging.INFO, logger="shopfloor.sandbox.proxy")
    try:
        async with await open_sandbox(
            policy, workspace=workspace, tenant="net", settings=sandbox_settings
        ) as session:
            result = await session.exec(
                Command(argv=("python3", "-c", CLIENT, str(allowed_port), str(other_port)))
            )
            helper = getattr(session, "inner", session)  # sessions come wrapped in their tracing
            assert isinstance(helper, HelperSession) and helper.proxy is not None
            records = list(helper.proxy.records)
    finally:
        allowed_server.close()
        other_server.close()
    out = json.loads(result.stdout)
    assert out["allowed"] == "HTTP/1.1 200 Connection established | pong:ping"
    assert out["other_port"].startswith("HTTP/1.1 403")
    assert out["proxy_env"] == "http://127.0.0.1:3128"
    assert seen == [b"ping"]
    assert [(r.port, r.allowed) for r in records] == [(allowed_port, True), (other_port, False)]
    assert all(r.tenant == "net" for r in records)
    assert f"sandbox egress denied 127.0.0.1:{other_port}" in caplog.text


class _Channel:
    """The host side of a sandbox's proxy channel, fed connections the way the session helper feeds it."""

    def __init__(self, policy: SandboxPolicy) -> None:
        ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proxy = AllowListProxy(policy, ours, tenant="unit")
        self.clients: list[socket.socket] = []

    async def __aenter__(self) -> _Channel:
        await self.proxy.start()
        self.listener = socket.create_server(("127.0.0.1", 0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            client.close()
        self.listener.close()
        self.theirs.close()
        await self.proxy.close()

    def connect(self) -> socket.socket:
        """A loopback connection whose accepted end is handed to the proxy (as the helper does)."""
        client = socket.create_connection(self.listener.getsockname())
        accepted, _ = self.listener.accept()
        socket.send_fds(self.theirs, [b"c"], [accepted.fileno()])
        accepted.close()
        self.clients.append(client)
        return client


async def _tunnel(client: socket.socket, target: str) -> str:
    def run() -> str:
        client.settimeout(5)
        client.sendall(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
        return client.recv(200).decode().split("\r\n")[0]

    return await asyncio.to_thread(run)


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_connection_cap_per_sandbox(echo_port: int) -> None:
    policy = SandboxPolicy(
        network=(NetworkRule(host="127.0.0.1", port=echo_port),), egress_connections=5, egress_rate=1000
    )
    async with _Channel(policy) as channel:
        replies = [await _tunnel(channel.connect(), f"127.0.0.1:{echo_port}") for _ in range(12)]
        assert replies.count("HTTP/1.1 200 Connection established") == 5
        assert replies.count("HTTP/1.1 429 Too Many Requests") == 7
        assert channel.proxy.open == 5 and channel.proxy.refused == 7
        # Closing held connections frees their slots.
        for client in channel.clients[:5]:
            client.close()
        for _ in range(50):
            if channel.proxy.open == 0:
                break
            await asyncio.sleep(0.02)
        reply = await _tunnel(channel.connect(), f"127.0.0.1:{echo_port}")
        assert reply == "HTTP/1.1 200 Connection established"


async def test_rate_cap_per_sandbox(echo_port: int) -> None:
    policy = SandboxPolicy(
        network=(NetworkRule(host="127.0.0.1", port=echo_port),), egress_connections=100, egress_rate=2
    )
    async with _Channel(policy) as channel:
        start = time.monotonic()
        replies = [await _tunnel(channel.connect(), f"127.0.0.1:{echo_port}") for _ in range(10)]
        elapsed = time.monotonic() - start
    # A bucket of one second's worth (2), refilled at 2 a second while the ten are made.
    admitted = replies.count("HTTP/1.1 200 Connection established")
    assert 2 <= admitted <= 2 + math.ceil(2 * elapsed) and admitted < 10, (admitted, elapsed)
    assert admitted + replies.count("HTTP/1.1 429 Too Many Requests") == 10


async def test_names_resolving_to_private_addresses(echo_port: int) -> None:
    by_name = (NetworkRule(host="localhost", port=echo_port),)
    async with _Channel(SandboxPolicy(network=by_name)) as channel:
        assert await _tunnel(channel.connect(), f"localhost:{echo_port}") == "HTTP/1.1 403 Forbidden"
        reason = channel.proxy.records[-1].reason
        assert "localhost resolves to" in reason and "network_private" in reason
    # Allowed when the allow-list names the address itself, or the policy says private is fine.
    explicit = (*by_name, NetworkRule(host="127.0.0.1", port=echo_port))
    for policy in (SandboxPolicy(network=explicit), SandboxPolicy(network=by_name, network_private=True)):
        async with _Channel(policy) as channel:
            reply = await _tunnel(channel.connect(), f"localhost:{echo_port}")
            assert reply == "HTTP/1.1 200 Connection established"


def test_public_address_classification() -> None:
    private_addresses = (
        *("127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "fe80::1%eth0"),
        *("fc00::1", "100.64.0.1", "0.0.0.0", "::ffff:127.0.0.1", "224.0.0.1"),
    )
    for private in private_addresses:
        assert not is_public_address(private), private
    for public in ("93.184.215.14", "2606:4700::1111"):
        assert is_public_address(public), public

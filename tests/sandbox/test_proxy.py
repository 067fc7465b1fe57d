"""Allow-listed network: the sandbox reaches exactly the policy's host:port pairs through the proxy."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.sandbox import NetworkRule, SandboxPolicy, open_sandbox
from shopfloor.sandbox._session import HelperSession

pytestmark = pytest.mark.usefixtures("bwrap_ready")

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
            result = await session.exec(["python3", "-c", CLIENT, str(allowed_port), str(other_port)])
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

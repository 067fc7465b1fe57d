"""The MCP gateway behind a balancer without affinity: two ``shopfloor serve`` processes on one database,
each request of one official client sent to the other process than the last; nothing is "not found"."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Keys
from mcp_gateway_support import Alternating, Upstream, mcp_session, upstream_config, write_config

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_servers(tmp_path: Path, fast_runtime: None, agent_dir: Path, keys: Keys) -> Iterator[list[int]]:
    upstream = Upstream()
    write_config(Path(os.environ["SHOPFLOOR_HOME"]), upstream_config(upstream))
    procs: list[subprocess.Popen[bytes]] = []
    ports = [_free_port(), _free_port()]
    try:
        for port in ports:
            log = open(tmp_path / f"serve-{port}.log", "wb")  # noqa: SIM115 - the child keeps its copy
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "shopfloor.cli", "serve", "--port", str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ),
                    start_new_session=True,
                )
            )
            log.close()
        for port, proc in zip(ports, procs, strict=True):
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                log_text = (tmp_path / f"serve-{port}.log").read_text()
                assert proc.poll() is None and time.monotonic() < deadline, log_text
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {keys.admin}"}
        registered = httpx.post(
            f"http://127.0.0.1:{ports[0]}/v1/agents", json={"path": str(agent_dir)}, headers=headers
        )
        assert registered.status_code == 201, registered.text
        yield ports
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        upstream.close()


async def test_one_client_across_two_processes(two_servers: list[int], keys: Keys) -> None:
    balancer = Alternating(two_servers)
    url = f"http://127.0.0.1:{two_servers[0]}/mcp"
    async with mcp_session(url, keys.admin, transport=balancer) as session:
        for _ in range(3):
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"agent__ticker", "docs__echo"} <= names
            echoed = await session.call_tool("docs__echo", {"text": "both"})
            assert echoed.structured_content == {"result": "both"}
        ran = await session.call_tool("agent__ticker", {"task": "ticks=1"})
        assert not ran.is_error and ran.structured_content is not None
        assert ran.structured_content["output"] == "done after 1 ticks"
    assert all(count >= 4 for count in balancer.counts.values()), balancer.counts

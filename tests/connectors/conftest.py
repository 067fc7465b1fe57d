"""Fixtures of the connector tests: MCP server scripts, free ports, the npm ``server-everything``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from connector_support import free_port, secrets_from_env, stop, wait_for_port
from mcp_test_servers import BROKEN_SERVER, FASTMCP_SERVER

from shopfloor.connectors import Connectors

REPO = Path(__file__).resolve().parents[2]
#: where scripts/bootstrap.sh installs the npm server (the same place the fixture installs it)
NODE_PREFIX = REPO / ".venv" / "node"
EVERYTHING = "@modelcontextprotocol/server-everything@2026.8.31"


@pytest.fixture
def fastmcp_script(tmp_path: Path) -> Path:
    path = tmp_path / "fastmcp_server.py"
    path.write_text(FASTMCP_SERVER)
    return path


@pytest.fixture
def broken_script(tmp_path: Path) -> Path:
    path = tmp_path / "broken_server.py"
    path.write_text(BROKEN_SERVER)
    return path


@pytest.fixture
def fastmcp_http(fastmcp_script: Path) -> Iterator[str]:
    """The FastMCP server over Streamable HTTP on a loopback port: its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(fastmcp_script), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


@pytest.fixture
async def pool() -> AsyncIterator[Connectors]:
    connectors = Connectors(secrets=secrets_from_env)
    yield connectors
    await connectors.aclose()


@pytest.fixture(scope="session")
def everything_bin() -> Path:
    """The npm ``server-everything`` entry point, installed under .venv/node if it is not there yet
    (scripts/bootstrap.sh installs it the same way; npm's cache makes a reinstall quick)."""
    entry = NODE_PREFIX / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    if not entry.is_file():
        npm = shutil.which("npm")
        assert npm is not None, "npm is missing: scripts/bootstrap.sh installs Node.js and npm"
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_PREFIX), EVERYTHING],
            check=True,
            timeout=300,
            capture_output=True,
        )
    assert entry.is_file()
    return entry


@pytest.fixture
def everything_http(everything_bin: Path) -> Iterator[str]:
    port = free_port()
    node = shutil.which("node")
    assert node is not None
    process = subprocess.Popen(
        [node, str(everything_bin), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)

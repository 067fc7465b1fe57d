"""The MCP gateway against calling its upstream directly; an agent called as an MCP tool against the
same agent started through the runs API.

    .venv/bin/python -m benchmarks.bench_protocols [--calls N] [--rounds R] [--agent-runs N]

Set-up, all on loopback, in a temporary ``SHOPFLOOR_HOME``: an upstream MCP server written with the
SDK's MCPServer (FastMCP, Streamable HTTP, an ``echo`` tool) in its own process; ``shopfloor serve``
(one worker, API-key authentication, the authoriser, the audit log) in its own process, configured
with that upstream as ``[[mcp.upstreams]] name = "up"``, and the scripted-model agent of the runtime
tests registered. The client is the official ``mcp`` client in this process. Rows: ``tools/call`` of
``echo`` directly and of ``up__echo`` through the gateway, at concurrency 1 (one session) and 16 (16
sessions calling at once): p50, p99 and calls/s, as medians over ``--rounds`` interleaved rounds
(direct, gateway, direct, ...), and the gateway's added p50. Then an agent whose model is instant
(``model: test``, no tools: it answers at once): its run through ``agent__NAME`` on ``/mcp`` and through
A2A ``SendMessage`` (the ``a2a-sdk`` client, JSON-RPC) against ``POST /v1/runs`` then polling
``GET /v1/runs/ID`` every 5 ms until it completed (the direct run of the same server). The server runs
with its default settings: its run worker polls the queue every ``[runtime] poll_interval`` (0.2 s),
which all three agent paths pay alike. (With a 0.01 s poll interval the worker's polling took enough
CPU on this 2-core machine to add ~50 ms to every gateway call: measure with the defaults.)

Results, 2026-12-01, this 2-core machine shared with six other sessions (load average 14-19: the rows are
noisy, compare within a run), ``--calls 160 --rounds 3``:
- load ~14 (96 calls): c=1 direct p50 26.6 ms / gateway 29.0 ms (+2.5 ms), 34 / 28 calls/s; c=16
  19 / 10 calls/s.
- load ~19: c=1 direct p50 2.8 ms, p99 43 ms, 108 calls/s / gateway p50 22.5 ms (+19.8), p99 96 ms,
  29 calls/s (0.27x); c=16 direct 31 calls/s, p50 181 ms / gateway 20 calls/s (0.63x), p50 508 ms.
  Agent with an instant model, median of 6: direct 183 ms, via /mcp 243 ms (x1.33), via A2A 216 ms (x1.18).
- 2026-12-01 later (load ~12, skills source on, upstream answers relayed whole), ``--calls 96 --rounds 3
  --agent-runs 4``: c=1 direct p50 3.0 ms, p99 21 ms, 113 calls/s / gateway p50 16.7 ms (+13.7), p99
  124 ms, 32 calls/s (0.28x); c=16 direct 51 calls/s, p50 77 ms / gateway 26 calls/s (0.50x), p50 217 ms.
  Agent with an instant model, median of 4: direct 214 ms, via /mcp 224 ms (x1.05), via A2A 225 ms (x1.05).
The gateway does twice the protocol work of a direct call (the caller's stateless request, then its own
session's call to the upstream) and every upstream call of one gateway process shares one upstream session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

UPSTREAM = r"""
import sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("up")


@server.tool()
def echo(text: str) -> str:
    "Echo the text."
    return text


server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
"""

AGENT = """name: bench-agent
instructions: count
model: test
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


async def _session_calls(url: str, headers: dict[str, str], tool: str, calls: int) -> list[float]:
    latencies = []
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as client,
        streamable_http_client(url, http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        await session.call_tool(tool, {"text": "warm"})
        for _ in range(calls):
            start = time.perf_counter()
            result = await session.call_tool(tool, {"text": "hello"})
            latencies.append(time.perf_counter() - start)
            if result.is_error:
                raise SystemExit(f"{tool} failed: {result.content}")
    return latencies


async def _load(
    url: str, headers: dict[str, str], tool: str, concurrency: int, calls: int
) -> dict[str, float]:
    start = time.perf_counter()
    parts = await asyncio.gather(
        *(_session_calls(url, headers, tool, calls // concurrency) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - start
    latencies = sorted(x for part in parts for x in part)
    return {
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "rps": len(latencies) / elapsed,
    }


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


async def _agent_rounds(base: str, key: str, runs: int) -> tuple[float, float, float]:
    """Median seconds of one agent run through /mcp, through A2A SendMessage and through the runs API,
    interleaved."""
    from a2a.client import ClientConfig, create_client
    from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest

    headers = {"Authorization": f"Bearer {key}"}
    via_mcp: list[float] = []
    via_a2a: list[float] = []
    via_api: list[float] = []
    a2a_http = httpx.AsyncClient(headers=headers, timeout=60)
    config = ClientConfig(streaming=False, httpx_client=a2a_http)
    a2a = await create_client(f"{base}/a2a/bench-agent", client_config=config)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as client,
        streamable_http_client(f"{base}/mcp", http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as session,
        httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as api,
    ):
        await session.initialize()

        async def mcp_run() -> None:
            result = await session.call_tool("agent__bench-agent", {"task": "go"})
            if result.is_error:
                raise SystemExit(f"agent over MCP failed: {result.content}")

        async def api_run() -> None:
            started = await api.post("/v1/runs", json={"agent": "bench-agent", "input": "go"})
            started.raise_for_status()
            run_id = started.json()["run_id"]
            for _ in range(60_000):  # bounded: 5 minutes of 5 ms polls
                if (await api.get(f"/v1/runs/{run_id}")).json()["status"] in ("completed", "failed"):
                    return
                await asyncio.sleep(0.005)
            raise SystemExit(f"run {run_id} did not end")

        async def a2a_run() -> None:
            message = Message(message_id=os.urandom(8).hex(), role=Role.ROLE_USER, parts=[Part(text="go")])
            answers = [answer async for answer in a2a.send_message(SendMessageRequest(message=message))]
            if not answers or answers[-1].task.status.state != 3:  # TASK_STATE_COMPLETED
                raise SystemExit(f"agent over A2A failed: {answers[-1:]}")

        rows: list[tuple[list[float], Callable[[], Awaitable[None]]]] = [
            (via_mcp, mcp_run),
            (via_a2a, a2a_run),
            (via_api, api_run),
        ]
        try:
            for _ in range(runs):
                for sink, run in rows:
                    start = time.perf_counter()
                    await run()
                    sink.append(time.perf_counter() - start)
        finally:
            await a2a.close()
            await a2a_http.aclose()
    return statistics.median(via_mcp), statistics.median(via_a2a), statistics.median(via_api)


def run(args: argparse.Namespace) -> None:
    from shopfloor.config import load_settings
    from shopfloor.security import KeyStore

    home = Path(tempfile.mkdtemp(prefix="bench-protocols-"))
    os.environ["SHOPFLOOR_HOME"] = str(home)
    up_port, port = _free_port(), _free_port()
    (home / "config.toml").write_text(
        f'[[mcp.upstreams]]\nname = "up"\nurl = "http://127.0.0.1:{up_port}/mcp"\n'
    )
    settings = load_settings()
    settings.ensure_home()
    store = KeyStore.open(settings.db_url)
    key = store.create("bench", role="platform-admin", created_by="bench")[1]
    store.close()
    script = home / "upstream.py"
    script.write_text(UPSTREAM)
    procs = []
    try:
        up_log, serve_log = home / "upstream.log", home / "serve.log"
        with open(up_log, "wb") as log:
            procs.append(
                subprocess.Popen([sys.executable, str(script), str(up_port)], stdout=log, stderr=log)
            )
        with open(serve_log, "wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "shopfloor.cli", "serve", "--port", str(port)],
                    stdout=log,
                    stderr=log,
                )
            )
        _wait(f"http://127.0.0.1:{up_port}/mcp", procs[0], up_log)
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/healthz", procs[1], serve_log)
        headers = {"Authorization": f"Bearer {key}"}
        agent = httpx.post(f"{base}/v1/agents", json={"spec": AGENT}, headers=headers, timeout=30)
        agent.raise_for_status()
        print(f"MCP tools/call, {args.calls} calls a row, median of {args.rounds} interleaved rounds")
        print(f"{'path':<10} {'c':>3} {'p50 ms':>9} {'p99 ms':>9} {'calls/s':>9}")
        for concurrency in (1, 16):
            direct: list[dict[str, float]] = []
            gateway: list[dict[str, float]] = []
            for _ in range(args.rounds):
                direct.append(
                    asyncio.run(_load(f"http://127.0.0.1:{up_port}/mcp", {}, "echo", concurrency, args.calls))
                )
                gateway.append(
                    asyncio.run(_load(f"{base}/mcp", headers, "up__echo", concurrency, args.calls))
                )
            d, g = _median(direct), _median(gateway)
            for name, row in (("direct", d), ("gateway", g)):
                print(f"{name:<10} {concurrency:>3} {row['p50']:>9.2f} {row['p99']:>9.2f} {row['rps']:>9.0f}")
            print(
                f"{'':<10} {concurrency:>3} added p50 {g['p50'] - d['p50']:+.2f} ms, added p99 "
                f"{g['p99'] - d['p99']:+.2f} ms, calls/s ratio {g['rps'] / d['rps']:.2f}"
            )
        mcp_s, a2a_s, api_s = asyncio.run(_agent_rounds(base, key, args.agent_runs))
        print(
            f"agent run, instant model, median of {args.agent_runs} interleaved: "
            f"direct (POST /v1/runs + polling) {api_s * 1000:.1f} ms; via /mcp {mcp_s * 1000:.1f} ms "
            f"(x{mcp_s / api_s:.2f}); via A2A SendMessage {a2a_s * 1000:.1f} ms (x{a2a_s / api_s:.2f})"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=320, help="tool calls per row and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agent-runs", type=int, default=10)
    run(parser.parse_args())


if __name__ == "__main__":
    main()

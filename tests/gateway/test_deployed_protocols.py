"""Runs started over A2A and MCP go through the same deployment seam as the API: an agent with a canary
sends each caller, sticky, to the stable or the candidate release, and the run records which (release
and track), as ``GET /v1/runs/ID`` shows. A real server on loopback, the official ``a2a-sdk`` and
``mcp`` clients."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, TaskState
from gateway_support import Keys, LiveServer
from mcp_gateway_support import mcp_session, texts

from shopfloor.config import load_settings
from shopfloor.gateway import build_server
from shopfloor.ops.releases import Deployments, Releases, bucket
from shopfloor.runtime import compose
from shopfloor.security import KeyStore
from shopfloor.skills import generate_key


def _callers() -> dict[str, str]:
    """A key (platform administrator) whose principal the canary sends to each track."""
    settings = load_settings()
    found: dict[str, str] = {}
    store = KeyStore.open(settings.db_url)
    try:
        for n in range(64):  # each key lands on either side with even odds: 64 tries miss one by 2^-63
            record, secret = store.create(f"caller-{n}", role="platform-admin", created_by="test")
            track = "candidate" if bucket("ticker", f"key:{record.key_id}") < 50 else "stable"
            found.setdefault(track, secret)
            if len(found) == 2:
                return found
    finally:
        store.close()
    raise AssertionError("no caller on one of the tracks")


@pytest.fixture
def canary(fast_runtime: None, keys: Keys, live: list[LiveServer], agent_dir: Path) -> str:
    """ticker@1.0.0 stable and ticker@1.1.0 a 50% canary, served; the agent registered by name."""
    settings = load_settings()
    services = compose(settings)
    key = generate_key("releaser", settings.home / "keys").private_path
    try:
        with Releases(services) as releases:
            releases.create(agent_dir, key=key, actor="alice", version="1.0.0")
            spec = agent_dir / "agent.yaml"
            spec.write_text(spec.read_text().replace("Tick as asked.", "Tick, as asked."))
            releases.create(agent_dir, key=key, actor="alice", version="1.1.0")
            deployments = Deployments(releases)
            deployments.deploy("ticker@1.0.0", actor="alice")
            deployments.deploy("ticker@1.1.0", actor="alice", canary=50)
    finally:
        services.close()
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    url = live[-1].url
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        assert api.post("/v1/agents", json={"path": str(agent_dir)}).status_code == 201
    return url


def _run(url: str, key: str, run_id: str) -> dict[str, object]:
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as api:
        answer = api.get(f"/v1/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_a2a_tasks_and_mcp_calls_follow_the_canary(canary: str) -> None:
    callers = _callers()
    for track, key in callers.items():
        expected = "ticker@1.1.0" if track == "candidate" else "ticker@1.0.0"
        # A2A: the task is a run of the release the canary picked for this caller.
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
        client = await create_client(
            f"{canary}/a2a/ticker",
            client_config=ClientConfig(
                streaming=False, httpx_client=http, supported_protocol_bindings=["JSONRPC"]
            ),
        )
        try:
            message = Message(message_id=f"m-{track}", role=Role.ROLE_USER, parts=[Part(text="ticks=1")])
            answers = [a async for a in client.send_message(SendMessageRequest(message=message))]
        finally:
            await client.close()
            await http.aclose()
        task = answers[-1].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED, answers
        run = _run(canary, key, task.id)
        assert (run["release"], run["track"]) == (expected, track), run
        # MCP: the agent as a tool, the same caller, the same release (sticky).
        async with mcp_session(f"{canary}/mcp", key) as session:
            ran = await session.call_tool("agent__ticker", {"task": "ticks=1"})
        assert not ran.is_error, texts(ran)
        assert ran.structured_content is not None
        run = _run(canary, key, str(ran.structured_content["run_id"]))
        assert (run["release"], run["track"]) == (expected, track), run

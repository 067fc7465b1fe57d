"""Every registered agent as an A2A 1.0 server on a ``shopfloor serve`` app on loopback, driven by the
official ``a2a-sdk`` client over JSON-RPC and HTTP+JSON: a task is a durable run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskState,
)
from gateway_support import Keys, LiveServer

from shopfloor.config import load_settings
from shopfloor.connectors import Connectors
from shopfloor.errors import ConnectorError
from shopfloor.gateway import build_server
from shopfloor.spec import ConnectorSpec
from shopfloor.tools import ToolContext


@pytest.fixture
def served(fast_runtime: None, keys: Keys, live: list[LiveServer], agent_dir: Path) -> str:
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    url = live[-1].url
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        assert api.post("/v1/agents", json={"path": str(agent_dir)}).status_code == 201
    return url


def _send(text: str, *, immediately: bool = False) -> SendMessageRequest:
    message = Message(message_id=f"m-{text}", role=Role.ROLE_USER, parts=[Part(text=text)])
    return SendMessageRequest(
        message=message, configuration=SendMessageConfiguration(return_immediately=immediately)
    )


async def _client(url: str, key: str, *, binding: str = "JSONRPC", streaming: bool = False) -> AsyncIterator:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
    config = ClientConfig(streaming=streaming, httpx_client=http, supported_protocol_bindings=[binding])
    client = await create_client(f"{url}/a2a/ticker", client_config=config)
    try:
        yield client
    finally:
        await client.close()
        await http.aclose()


def test_the_agent_card_is_public_and_names_what_the_server_enforces(served: str) -> None:
    with httpx.Client(base_url=served, timeout=30) as client:
        card = client.get("/a2a/ticker/.well-known/agent-card.json").json()
        assert client.get("/.well-known/agent-card.json").json() == card  # the only agent
        assert client.get("/a2a/nobody/.well-known/agent-card.json").status_code == 404
        refused = client.post("/a2a/ticker", json={"jsonrpc": "2.0", "id": 1, "method": "GetTask"})
    assert card["name"] == "ticker" and card["capabilities"]["streaming"] is True
    bindings = {i["protocolBinding"]: i["url"] for i in card["supportedInterfaces"]}
    assert bindings == {"JSONRPC": f"{served}/a2a/ticker", "HTTP+JSON": f"{served}/a2a/ticker"}
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    assert card["securityRequirements"] == [{"schemes": {"bearer": {}}}]
    # the scheme the card names is the one enforced: no bearer, a 401
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_a_task_is_a_durable_run(served: str, keys: Keys, binding: str) -> None:
    async for client in _client(served, keys.admin, binding=binding):
        answers = [response async for response in client.send_message(_send("ticks=2"))]
        task = answers[-1].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.artifacts[0].parts[0].text == "done after 2 ticks"
        fetched = await client.get_task(GetTaskRequest(id=task.id))
        assert fetched.status.state == TaskState.TASK_STATE_COMPLETED
        listed = await client.list_tasks(ListTasksRequest())
        assert task.id in [t.id for t in listed.tasks]
    async with httpx.AsyncClient(base_url=served, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        run = (await api.get(f"/v1/runs/{task.id}")).json()
    assert run["status"] == "completed" and run["task"] == "ticks=2" and run["caller"].startswith("key:")


async def test_a_streamed_task_reports_its_steps(served: str, keys: Keys) -> None:
    async for client in _client(served, keys.admin, streaming=True):
        events = [response async for response in client.send_message(_send("ticks=2"))]
    updates = [e.status_update for e in events if e.HasField("status_update")]
    assert updates, events
    assert updates[-1].status.state == TaskState.TASK_STATE_COMPLETED
    assert any("step" in u.status.message.parts[0].text for u in updates[:-1] if u.status.message.parts)


async def test_an_approval_is_input_required_and_the_task_can_be_cancelled(served: str, keys: Keys) -> None:
    async for client in _client(served, keys.admin):
        answers = [response async for response in client.send_message(_send("ticks=1 tool=transfer"))]
        task = answers[-1].task
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert "alice" in task.status.message.parts[0].text
        cancelled = await client.cancel_task(CancelTaskRequest(id=task.id))
        assert cancelled.status.state in (TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_INPUT_REQUIRED)
        for _ in range(200):  # bounded: the run's worker applies the cancellation
            state = (await client.get_task(GetTaskRequest(id=task.id))).status.state
            if state == TaskState.TASK_STATE_CANCELED:
                break
        assert state == TaskState.TASK_STATE_CANCELED


async def test_permissions_are_asked_per_method(served: str, keys: Keys) -> None:
    async with httpx.AsyncClient(base_url=served, timeout=30) as raw:
        viewer = {"Authorization": f"Bearer {keys.viewer}"}
        message = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "ticks=1"}]}
        body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}
        answer = await raw.post("/a2a/ticker", json=body, headers={**viewer, "A2A-Version": "1.0"})
    assert answer.status_code == 200 and "lacks the permission 'runs:start'" in answer.text


async def test_the_a2a_connector_calls_an_agent_of_this_server(served: str, keys: Keys) -> None:
    pool = Connectors(secrets=None)
    remote = {"url": f"{served}/a2a/ticker", "headers": {"Authorization": f"Bearer {keys.admin}"}}
    spec = ConnectorSpec.model_validate({"name": "peer", "a2a": remote, "timeout": 60})
    try:
        (tool,) = await pool.tools([spec])
        context = ToolContext(run_id="r", step=1, call_id="c", idempotency_key="r:1")
        assert await tool.call({"task": "ticks=1"}, context) == "done after 1 ticks"
        with pytest.raises(ConnectorError, match=r"ended input-required: waiting for alice to approve"):
            await tool.call({"task": "ticks=1 tool=transfer"}, context)
    finally:
        await pool.aclose()

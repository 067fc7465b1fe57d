"""The ``a2a:`` connector (a remote agent as a tool) against a sample server written with ``a2a-sdk``'s own
server classes (``AgentExecutor``, ``DefaultRequestHandler``, in-memory task store) on loopback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes.agent_card_routes import create_agent_card_routes
from a2a.server.routes.jsonrpc_routes import create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part
from starlette.applications import Starlette

from shopfloor.connectors import A2ATool, Connectors
from shopfloor.errors import ConnectorError
from shopfloor.spec import ConnectorSpec
from shopfloor.tools import ToolContext

sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))
from gateway_support import LiveServer


class Echo(AgentExecutor):
    """Echoes its task as an artifact; ``input`` asks for more input; ``slow`` works until cancelled."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task or new_task_from_user_message(context.message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        text = context.get_user_input()
        await updater.start_work()
        if text == "input":
            await updater.requires_input(new_text_message("which one?", task.context_id, task.id))
            return
        if text == "slow":
            await asyncio.sleep(60)
        await updater.add_artifact([Part(text=f"echo: {text}")], name="echo")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        self.cancelled.append(context.task_id)
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


@pytest.fixture
def sample() -> Iterator[tuple[str, Echo]]:
    executor = Echo()
    live: list[LiveServer] = []
    card = AgentCard(
        name="echo",
        description="Echoes what it is told",
        version="1.0.0",
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="echo a text", tags=["echo"])],
    )
    handler = DefaultRequestHandler(agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card)
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])
    live.append(LiveServer(app))  # type: ignore[arg-type]
    url = live[-1].url
    card.supported_interfaces.append(
        AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
    )
    yield url, executor
    live[-1].close()


def _ctx(step: int = 1) -> ToolContext:
    return ToolContext(run_id="run-1", step=step, call_id=f"c{step}", idempotency_key=f"run-1:{step}")


async def _tool(url: str, seconds: float = 30.0) -> tuple[Connectors, A2ATool]:
    pool = Connectors(secrets=None)
    spec = ConnectorSpec.model_validate({"name": "remote", "a2a": {"url": url}, "timeout": seconds})
    tools = await pool.tools([spec])
    assert [tool.name for tool in tools] == ["remote__send_message"]
    tool = tools[0]
    assert isinstance(tool, A2ATool)
    return pool, tool


async def test_a_remote_agent_answers_as_a_tool(sample: tuple[str, Echo]) -> None:
    pool, tool = await _tool(sample[0])
    try:
        assert "echo" in tool.description and "Echoes what it is told" in tool.description
        assert tool.input_schema["required"] == ["task"]
        assert await tool.call({"task": "hello"}, _ctx()) == "echo: hello"
        with pytest.raises(ConnectorError, match=r"remote: task .* ended input-required: which one\?"):
            await tool.call({"task": "input"}, _ctx(2))
    finally:
        await pool.aclose()


async def test_a_call_past_its_timeout_cancels_the_remote_task(sample: tuple[str, Echo]) -> None:
    url, executor = sample
    pool, tool = await _tool(url, seconds=1.0)
    try:
        with pytest.raises(ConnectorError, match=r"no answer within 1 s; task .* was cancelled"):
            await tool.call({"task": "slow"}, _ctx())
    finally:
        await pool.aclose()
    assert len(executor.cancelled) == 1


async def test_no_card_is_a_clear_error() -> None:
    pool = Connectors(secrets=None)
    spec = ConnectorSpec.model_validate(
        {"name": "remote", "a2a": {"url": "http://127.0.0.1:9/x"}, "timeout": 5}
    )
    try:
        with pytest.raises(
            ConnectorError, match=r"connector 'remote': remote: no agent card at http://127.0.0.1:9/x"
        ):
            await pool.tools([spec])
    finally:
        await pool.aclose()

"""A remote A2A agent as a connector (``a2a: {url, headers}``): one tool, ``NAME__send_message``, that
sends it a task and answers with what it produced, over the official ``a2a-sdk`` client.

The card is discovered on first use (``URL/.well-known/agent-card.json``); the tool's description is the
card's. A call streams when the card says the agent can (else it sends and waits), carries the step's
idempotency key as the message id (a server that keeps message ids can make a re-executed step a
no-op), and cancels the remote task when it runs past the connector's ``timeout``. The answer is the
text of the task's artifacts (else of its last status message); a task that fails, is cancelled, is
rejected or waits for input or authentication is a ``ConnectorError`` naming the state and the task.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from a2a.client import A2ACardResolver, A2AClientError, Client, ClientConfig, create_client
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError

from shopfloor.connectors._base import Connector, Secrets, tool_name
from shopfloor.errors import ConnectorError
from shopfloor.spec import ConnectorSpec
from shopfloor.tools import Tool, ToolContext

__all__ = ["A2AConnector", "A2ATool"]

_MAX_OUTPUT_CHARS = 200_000
_DONE = {TaskState.TASK_STATE_COMPLETED}
_STATE_NAMES = {value: name.removeprefix("TASK_STATE_").lower() for name, value in TaskState.items()}


class A2AConnector(Connector):
    def __init__(self, spec: ConnectorSpec, secrets: Secrets) -> None:
        super().__init__(spec, secrets)
        assert spec.a2a is not None
        self.url = spec.a2a.url.rstrip("/")
        self._http: httpx.AsyncClient | None = None
        self._client: Client | None = None
        self._card: AgentCard | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> tuple[Client, AgentCard]:
        """The client of the remote agent, its card resolved once."""
        async with self._lock:
            if self._client is None or self._card is None:
                assert self.spec.a2a is not None
                headers = self.secrets.resolve_all(self.spec.a2a.headers, where=f"{self.name}.a2a.headers")
                self._http = httpx.AsyncClient(headers=headers, timeout=self.spec.timeout)
                try:
                    async with asyncio.timeout(self.spec.timeout):
                        card = await A2ACardResolver(self._http, self.url).get_agent_card()
                        config = ClientConfig(streaming=card.capabilities.streaming, httpx_client=self._http)
                        self._client = await create_client(card, client_config=config)
                        self._card = card
                except (TimeoutError, A2AClientError, A2AError, httpx.HTTPError, ValueError) as exc:
                    await self.aclose()
                    raise ConnectorError(
                        f"{self.name}: no agent card at {self.url}: {self.secrets.scrub(str(exc))[:300]}"
                    ) from None
            return self._client, self._card

    async def tools(self) -> list[Tool]:
        _, card = await self.client()
        return self.allowed([A2ATool(self, card)], lambda tool: "send_message")

    async def send(self, task: str, ctx: ToolContext) -> str:
        client, _ = await self.client()
        message = Message(message_id=ctx.idempotency_key, role=Role.ROLE_USER, parts=[Part(text=task)])
        task_id = ""
        try:
            async with asyncio.timeout(self.spec.timeout):
                async for response in client.send_message(SendMessageRequest(message=message)):
                    task_id = task_id or _task_id(response)
                    if response.HasField("message") and not task_id:
                        return _bounded(_text(response.message.parts))
                final = await client.get_task(GetTaskRequest(id=task_id)) if task_id else None
        except TimeoutError:
            if task_id:
                await self._cancel(client, task_id)
            raise ConnectorError(
                f"{self.name}: no answer within {self.spec.timeout:g} s"
                + (f"; task {task_id} was cancelled" if task_id else "")
            ) from None
        except (A2AClientError, A2AError, httpx.HTTPError) as exc:
            raise ConnectorError(f"{self.name}: {self.secrets.scrub(str(exc))[:1000]}") from None
        if final is None:
            raise ConnectorError(f"{self.name}: the agent answered with neither a task nor a message")
        return _answer(self.name, final)

    async def _cancel(self, client: Client, task_id: str) -> None:
        try:
            async with asyncio.timeout(5.0):
                await client.cancel_task(CancelTaskRequest(id=task_id))
        except (TimeoutError, A2AClientError, A2AError, httpx.HTTPError):
            pass  # the timeout is the error reported; a task that cannot be cancelled ends on its own

    async def aclose(self) -> None:
        client, http = self._client, self._http
        self._client = self._card = self._http = None
        if client is not None:
            await client.close()
        if http is not None:
            await http.aclose()


def _task_id(response: Any) -> str:
    if response.HasField("task"):
        return str(response.task.id)
    for field in ("status_update", "artifact_update"):
        if response.HasField(field):
            return str(getattr(response, field).task_id)
    return ""


def _text(parts: Any) -> str:
    return "\n".join(part.text for part in parts if part.text)


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_OUTPUT_CHARS else text[:_MAX_OUTPUT_CHARS] + " [truncated]"


def _answer(name: str, task: Task) -> str:
    state = task.status.state
    produced = "\n".join(_text(artifact.parts) for artifact in task.artifacts)
    status = _text(task.status.message.parts)
    if state in _DONE:
        return _bounded(produced or status)
    label = _STATE_NAMES.get(state, str(state)).replace("_", "-")
    raise ConnectorError(f"{name}: task {task.id} ended {label}" + (f": {status[:1000]}" if status else ""))


class A2ATool(Tool):
    """The remote agent, asked one task."""

    kind = "extension"

    def __init__(self, connector: A2AConnector, card: AgentCard) -> None:
        self.connector = connector
        self.name = tool_name(connector.name, "send_message")
        skills = "; ".join(f"{skill.name}: {skill.description}" for skill in card.skills)[:2000]
        self.description = (
            f"Ask the remote agent {card.name}: {card.description}"
            + (f" (skills: {skills})" if skills else "")
        )[:4000]
        self.input_schema = {
            "type": "object",
            "properties": {"task": {"type": "string", "description": "what the agent is to do"}},
            "required": ["task"],
            "additionalProperties": False,
        }

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        return await self.connector.send(str(args["task"]), ctx)

"""Agents as models: ``model: "agent/NAME"`` on ``/v1/chat/completions`` runs the agent registered with
the server under NAME as an ordinary durable run (queued for the server's run worker, its caller the
authenticated principal) and answers with its final answer in the OpenAI response shape.

The run's input (its task, recorded with the run) is the conversation: the last user message is the
task and the messages before and around it (the caller's system prompt, earlier user and assistant turns,
tool results) come with it as a transcript above it, so a follow-up question is answered in context. A
conversation of one user message is that message as it is. Streamed, the run's events go out as SSE
comments (``: step KIND ...``) while it runs and the answer as one content chunk, then ``[DONE]``. A run
that ends failed or cancelled, or stops to wait for an approval, is answered with an OpenAI-shaped error
naming the run id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from shopfloor.errors import AgentNotFoundError, GatewayRequestError, ShopfloorError
from shopfloor.security import Authorizer, Principal, Resource

if TYPE_CHECKING:  # the server passes them in: a bare gateway process never loads the runtime (DBOS)
    from shopfloor.gateway.api._store import ControlStore
    from shopfloor.runtime import RunRecord, Runtime

__all__ = ["PREFIX", "AgentModels"]

PREFIX = "agent/"
_ENDED = frozenset({"completed", "failed", "cancelled", "waiting_approval"})

Emit = Callable[[bytes], Awaitable[None]]


class AgentModels:
    """Runs registered agents for the inference gateway (``runtime``: the server's, whose worker
    executes the runs; ``store``: its registered agents)."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        store: ControlStore,
        authorizer: Authorizer | None,
        timeout: float = 600.0,
    ) -> None:
        self._runtime = runtime
        self._store = store
        self._authorizer = authorizer
        self._timeout = timeout

    async def names(self, principal: Principal) -> list[str]:
        """``agent/NAME`` for each registered agent the principal may run (``runs:start`` on its team)."""
        shown = []
        for agent in await asyncio.to_thread(self._store.list_agents):
            if await self._allowed(principal, agent.spec_path, audit=False):
                shown.append(PREFIX + agent.name)
        return shown

    async def start(self, principal: Principal, model: str, data: dict[str, Any]) -> str:
        """Start the run of ``model`` (``agent/NAME``) on the request's conversation: its id."""
        name = model[len(PREFIX) :]
        # Imported here: a gateway without agents (no runtime) never loads the control plane's API.
        from shopfloor.gateway.api._store import agent_spec_path

        try:
            spec_path, routed = await agent_spec_path(self._runtime, self._store, name, principal.id)
        except AgentNotFoundError as exc:
            raise GatewayRequestError(str(exc), status=404, param="model", code="model_not_found") from exc
        await self._allowed(principal, spec_path, audit=True, name=name)
        task = _task(data)
        return await self._runtime.start_run(
            spec_path, task, detach=True, caller=principal.id, routed=routed, principal=principal
        )

    async def answer(self, run_id: str, model: str) -> bytes:
        """The chat completion of the run once it ended; GatewayRequestError unless it completed."""
        record = await self._until_ended(run_id, None)
        _check(record)
        return orjson.dumps(_completion(record, model))

    async def stream(self, run_id: str, model: str, emit: Emit) -> None:
        """Emit the run's events as SSE comments while it runs, then the answer as a content chunk
        (``[DONE]`` is the caller's); GatewayRequestError unless it completed."""
        record = await self._until_ended(run_id, emit)
        _check(record)
        base = {"id": f"chatcmpl-{run_id}", "object": "chat.completion.chunk", "created": _created(record)}
        base["model"] = model
        content = {"index": 0, "delta": {"role": "assistant", "content": record.output or ""}}
        last = {"index": 0, "delta": {}, "finish_reason": "stop"}
        for choice in (content | {"finish_reason": None}, last):
            await emit(b"data: " + orjson.dumps(base | {"choices": [choice]}) + b"\n\n")

    async def _until_ended(self, run_id: str, emit: Emit | None) -> RunRecord:
        seq = -1
        poll = self._runtime.settings.runtime.poll_interval
        async with asyncio.timeout(self._timeout):
            while True:
                record = await self._runtime.get_run(run_id)
                if emit is not None:
                    async for stored in self._runtime.events(run_id, after=seq, follow=False):
                        seq = stored.seq
                        detail = orjson.dumps(stored.event.to_dict(), default=str)
                        await emit(
                            b": step " + stored.event.kind.encode() + b" " + _one_line(detail) + b"\n\n"
                        )
                if record.status in _ENDED:
                    return record
                await asyncio.sleep(poll)

    async def _allowed(self, principal: Principal, spec_path: str, *, audit: bool, name: str = "") -> bool:
        if self._authorizer is None:
            return True
        try:
            loaded = await asyncio.to_thread(self._runtime.services.load_spec, spec_path)
            team = loaded.spec.permissions.team
        except (ShopfloorError, OSError):
            team = None
        resource = Resource(kind="runs", name=name or None, team=team or principal.team)
        if audit:
            self._authorizer.authorize(principal, "runs:start", resource)
            return True
        return self._authorizer.allows(principal, "runs:start", resource)


def _task(data: dict[str, Any]) -> str:
    """The run's input: the last user message, after the rest of the conversation as a transcript."""
    messages = list(data.get("messages") or ())
    last = next((i for i in reversed(range(len(messages))) if messages[i].get("role") == "user"), None)
    if last is None:
        raise GatewayRequestError("an agent needs a user message: the task", param="messages")
    task = _content(messages[last])
    earlier = [f"{m.get('role')}: {_content(m)}" for i, m in enumerate(messages) if i != last]
    if not earlier:
        return task
    transcript = "\n".join(earlier)
    return f"The conversation so far:\n{transcript}\n\nThe task (the last user message):\n{task}"


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        text = content
    else:
        texts = [p.get("text") for p in content or () if p.get("type") == "text"]
        text = "\n".join(t for t in texts if isinstance(t, str))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            text += f"\n(called {function.get('name')} with {function.get('arguments')})"
    return text.strip()


def _check(record: RunRecord) -> None:
    if record.status == "completed":
        return
    if record.status == "waiting_approval":
        message = f"run {record.run_id} is waiting for an approval (POST /v1/runs/{record.run_id}/approve)"
        raise GatewayRequestError(message, status=409, code="run_waiting_approval")
    reason = record.error or record.stop_reason or ""
    message = f"run {record.run_id} {record.status}" + (f": {reason}" if reason else "")
    raise GatewayRequestError(
        message, status=502 if record.status == "failed" else 409, code=f"run_{record.status}"
    )


def _created(record: RunRecord) -> int:
    return int(record.created_at or time.time())


def _completion(record: RunRecord, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{record.run_id}",
        "object": "chat.completion",
        "created": _created(record),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": record.output or ""},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": record.input_tokens,
            "completion_tokens": record.output_tokens,
            "total_tokens": record.input_tokens + record.output_tokens,
        },
    }


def _one_line(text: bytes) -> bytes:
    return text.replace(b"\r", b" ").replace(b"\n", b" ")[:2000]

"""``kind = "model"``: a replica that is a Shopfloor model (``local:NAME``, the embedded llama.cpp models;
``function:...`` and ``test`` in tests), answering in the OpenAI shapes of chat completions, completions
(``Model.stream_text``: the prompt continued as raw text) and embeddings (``Model.embed``; the embedded
models embed with a second, mean-pooled llama.cpp context loaded at the first such request). A model
without that capability answers 400 ``unsupported_endpoint`` naming the model.

One generation runs at a time on an embedded model (a llama.cpp context is not thread-safe), so requests
to one model wait in a first-come queue here, where its depth and each request's wait are measured
(``shopfloor_gateway_local_queue_depth``, ``..._wait_seconds``). A client that goes away while queued
leaves the queue; one that goes away while its answer streams stops the generation.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from shopfloor.config import UpstreamSettings
from shopfloor.errors import (
    GatewayRequestError,
    ModelCapabilityError,
    ModelError,
    ModelRequestError,
    UpstreamError,
)
from shopfloor.gateway.inference._backend import Backend, BackendContext, Endpoint
from shopfloor.gateway.inference._metrics import GatewayMetrics
from shopfloor.models import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    TextDelta,
    TextRequest,
    ToolDef,
)

__all__ = ["ModelBackend", "make_model_backend"]

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for index, part in enumerate(content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise GatewayRequestError(
                f"{where}[{index}]: this model takes text parts only", param=f"{where}[{index}]"
            )
        parts.append(part["text"])
    return "".join(parts)


def model_request(body: dict[str, Any]) -> ModelRequest:
    """The ``ModelRequest`` of a validated chat-completions body."""
    messages = []
    for index, message in enumerate(body["messages"]):
        role = _ROLES.get(message["role"])
        if role is None:
            raise GatewayRequestError(
                f"messages[{index}].role: {message['role']!r} is not supported by this model",
                param=f"messages[{index}].role",
            )
        messages.append(
            Message(
                role=role,  # type: ignore[arg-type]
                content=_text(message.get("content"), f"messages[{index}].content"),
                tool_call_id=message.get("tool_call_id"),
            )
        )
    tools = tuple(
        ToolDef(
            name=tool["function"]["name"],
            description=tool["function"].get("description", ""),
            parameters=tool["function"].get("parameters", {}),
        )
        for tool in body.get("tools") or ()
        if isinstance(tool.get("function"), dict) and "name" in tool["function"]
    )
    schema = None
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
    return ModelRequest(
        messages=tuple(messages),
        json_schema=schema,
        tools=tools,
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens") or 512,
        temperature=float(body["temperature"]) if body.get("temperature") is not None else 0.7,
    )


def text_request(body: dict[str, Any]) -> TextRequest:
    """The ``TextRequest`` of a validated completions body (one text prompt; OpenAI's defaults)."""
    prompt = body["prompt"]
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise GatewayRequestError(
                "prompt: this model takes one text prompt per request (a string, or a list of one string)",
                param="prompt",
            )
        prompt = prompt[0]
    stop = body.get("stop")
    return TextRequest(
        prompt=prompt,
        max_tokens=body.get("max_tokens") or 16,
        temperature=float(body["temperature"]) if body.get("temperature") is not None else 1.0,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
    )


def _texts(body: dict[str, Any]) -> list[str]:
    texts: list[str] | str = body["input"]
    if isinstance(texts, str):
        texts = [texts]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise GatewayRequestError(
            "input: this model embeds text (a string or a list of strings), not token ids", param="input"
        )
    for index, text in enumerate(texts):
        if not text:
            raise GatewayRequestError(f"input[{index}]: an empty string has no embedding", param="input")
    return texts


def _encode(vector: tuple[float, ...], encoding: str | None) -> list[float] | str:
    if encoding == "base64":  # little-endian float32, as OpenAI sends it (its client asks for this)
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return list(vector)


class _Queue:
    """First come, first served, one at a time; depth and waits go to the metrics."""

    def __init__(self, model: str, metrics: GatewayMetrics) -> None:
        self._lock = asyncio.Lock()
        self._depth = metrics.local_queue_depth.labels(model)
        self._wait = metrics.local_queue_wait.labels(model)

    async def __aenter__(self) -> None:
        start = time.perf_counter()
        self._depth.inc()
        try:
            await self._lock.acquire()
        finally:
            self._depth.dec()
        self._wait.observe(time.perf_counter() - start)

    async def __aexit__(self, *_: object) -> None:
        self._lock.release()


class ModelBackend(Backend):
    def __init__(self, *, name: str, model: Model, queue: _Queue) -> None:
        self.name = name
        self._model = model
        self._queue = queue

    async def _events(
        self, endpoint: Endpoint, body: dict[str, Any]
    ) -> AsyncIterator[TextDelta | ModelResponse]:
        try:  # a model without the capability refuses here, before it queues
            iterator = (
                self._model.stream(model_request(body))
                if endpoint == "chat/completions"
                else self._model.stream_text(text_request(body))
            )
        except ModelCapabilityError as exc:
            raise self._unsupported(endpoint, exc) from exc
        async with self._queue:
            try:
                async for event in iterator:
                    yield event
            except ModelCapabilityError as exc:
                raise self._unsupported(endpoint, exc) from exc
            except ModelRequestError as exc:
                param = "messages" if endpoint == "chat/completions" else "prompt"
                raise GatewayRequestError(f"model {self.name}: {exc}", param=param) from exc
            except ModelError as exc:
                raise UpstreamError(f"model {self.name}: {exc}") from exc

    def _unsupported(self, endpoint: Endpoint, exc: ModelCapabilityError) -> GatewayRequestError:
        return GatewayRequestError(
            f"model {self.name} does not serve /v1/{endpoint}: {exc}",
            param="model",
            code="unsupported_endpoint",
        )

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> bytes:
        if endpoint == "embeddings":
            return await self._embed(body)
        final: ModelResponse | None = None
        async for event in self._events(endpoint, body):
            if isinstance(event, ModelResponse):
                final = event
        if final is None:
            raise UpstreamError(f"model {self.name} ended without an answer")
        if endpoint == "completions":
            choice: dict[str, Any] = {"index": 0, "text": final.text, "logprobs": None}
            head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion"}
        else:
            choice = {"index": 0, "message": {"role": "assistant", "content": final.text}, "logprobs": None}
            head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion"}
        choice["finish_reason"] = final.finish_reason
        return orjson.dumps(
            head
            | {"created": int(time.time()), "model": self.name, "choices": [choice], "usage": _usage(final)}
        )

    async def _embed(self, body: dict[str, Any]) -> bytes:
        texts = _texts(body)
        async with self._queue:
            try:
                answer = await self._model.embed(texts)
            except ModelCapabilityError as exc:
                raise self._unsupported("embeddings", exc) from exc
            except ModelRequestError as exc:
                raise GatewayRequestError(f"model {self.name}: {exc}", param="input") from exc
            except ModelError as exc:
                raise UpstreamError(f"model {self.name}: {exc}") from exc
        dimensions = body.get("dimensions")
        if dimensions is not None and answer.vectors and dimensions != len(answer.vectors[0]):
            raise GatewayRequestError(
                f"dimensions: model {self.name} embeds in {len(answer.vectors[0])} dimensions, "
                f"not {dimensions}",
                param="dimensions",
            )
        encoding = body.get("encoding_format")
        return orjson.dumps(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": _encode(vector, encoding)}
                    for i, vector in enumerate(answer.vectors)
                ],
                "model": self.name,
                "usage": {"prompt_tokens": answer.input_tokens, "total_tokens": answer.input_tokens},
            }
        )

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[list[bytes]]:
        if endpoint == "embeddings":
            raise GatewayRequestError("embeddings are not streamed", param="stream")
        chat = endpoint == "chat/completions"
        head: dict[str, Any] = (
            {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk"}
            if chat
            else {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion"}
        )
        head |= {"created": int(time.time()), "model": self.name}
        first = True
        async for event in self._events(endpoint, body):
            if isinstance(event, TextDelta):
                if chat:
                    delta = {"role": "assistant", "content": event.text} if first else {"content": event.text}
                    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
                else:
                    choice = {"index": 0, "text": event.text, "logprobs": None, "finish_reason": None}
                first = False
                yield [orjson.dumps(head | {"choices": [choice]})]
            else:
                finish: dict[str, Any] = {"index": 0, "finish_reason": event.finish_reason}
                if chat:
                    finish["delta"] = {}
                else:
                    finish |= {"text": "", "logprobs": None}
                yield [
                    orjson.dumps(head | {"choices": [finish]}),
                    orjson.dumps(head | {"choices": [], "usage": _usage(event)}),
                ]


def _usage(response: ModelResponse) -> dict[str, int]:
    usage = response.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def make_model_backend(upstream: UpstreamSettings, context: BackendContext) -> Backend:
    queues: dict[str, _Queue] = context.shared.setdefault("model-queues", {})
    queue = queues.get(upstream.model)
    if queue is None:
        queue = queues[upstream.model] = _Queue(upstream.model, context.metrics)
    return ModelBackend(
        name=upstream.name or upstream.model, model=context.make_model(upstream.model), queue=queue
    )

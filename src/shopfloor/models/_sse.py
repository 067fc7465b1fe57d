"""Reading an OpenAI-style chat-completions stream: SSE framing and chunk assembly.

Tool calls arrive in pieces: the first delta for an ``index`` carries the id and
name, later ones append to the arguments text. The usage chunk (asked for with
``stream_options.include_usage``) comes last with empty ``choices``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from shopfloor.models._base import ToolCall

__all__ = ["ServerFault", "StreamParser", "iter_sse_data"]


class ServerFault(Exception):
    """The server sent an error or garbage instead of a completion chunk."""


async def iter_sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Yield each event's data (multi-line data joined by newlines), ``[DONE]`` included."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):  # a comment, often a keep-alive
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamParser:
    """Accumulates chunks into text, tool calls, finish reason and usage."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.saw_text = False
        self.done = False  # the server sent [DONE]

    @property
    def text(self) -> str:
        return "".join(self._text)

    def feed(self, data: str) -> str:
        """Take one event's data; return the text it adds."""
        if data.strip() == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ServerFault(f"invalid JSON in stream: {data[:200]!r}") from exc
        if not isinstance(chunk, dict):
            raise ServerFault(f"unexpected chunk in stream: {data[:200]!r}")
        if "error" in chunk:
            error = chunk["error"]
            raise ServerFault(str(error.get("message", error) if isinstance(error, dict) else error))
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        added: list[str] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                added.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                self._feed_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        text = "".join(added)
        if text:
            self.saw_text = True
            self._text.append(text)
        return text

    def _feed_call(self, call: dict[str, Any]) -> None:
        partial = self._calls.setdefault(int(call.get("index", len(self._calls))), _PartialCall())
        function = call.get("function") or {}
        partial.id = call.get("id") or partial.id
        partial.name = function.get("name") or partial.name
        if function.get("arguments"):
            partial.arguments.append(function["arguments"])

    def feed_completion(self, completion: dict[str, Any]) -> None:
        """Take a whole non-streamed completion object."""
        if "error" in completion:
            raise ServerFault(str(completion["error"]))
        if isinstance(completion.get("usage"), dict):
            self.usage = completion["usage"]
        choices = completion.get("choices") or []
        if not choices:
            raise ServerFault(f"completion without choices: {json.dumps(completion)[:200]}")
        message = choices[0].get("message") or {}
        self._text.append(message.get("content") or "")
        for index, call in enumerate(message.get("tool_calls") or []):
            self._feed_call({"index": index, **call})
        self.finish_reason = choices[0].get("finish_reason")

    def check_complete(self) -> None:
        """A stream that stops with neither a finish reason nor ``[DONE]`` was cut off."""
        if self.finish_reason is None and not self.done:
            raise ServerFault("the stream ended before the completion did (no finish_reason, no [DONE])")

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=p.id or f"call_{index}", name=p.name, arguments="".join(p.arguments) or "{}")
            for index, p in sorted(self._calls.items())
        )

    def usage_counts(self) -> tuple[int | None, int | None]:
        if not self.usage:
            return None, None
        prompt, completion = self.usage.get("prompt_tokens"), self.usage.get("completion_tokens")
        return (
            prompt if isinstance(prompt, int) else None,
            completion if isinstance(completion, int) else None,
        )

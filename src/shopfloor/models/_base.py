"""The Model ABC and the plain data that flows to and from a model.

Requests and responses are frozen dataclasses of plain values, so a response can
be recorded durably (``to_dict``/``from_dict``) and replayed without a model.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from shopfloor.errors import ModelCapabilityError, ModelRequestsBlocked

__all__ = [
    "Embeddings",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "TextDelta",
    "TextRequest",
    "ToolCall",
    "ToolDef",
    "Usage",
    "UsageMeter",
    "allow_model_requests",
    "check_model_requests_allowed",
]

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, kw_only=True)
class Message:
    role: Role
    content: str
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ToolDef:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    messages: tuple[Message, ...]
    json_schema: dict[str, Any] | None = None  # constrain the reply to this schema
    tools: tuple[ToolDef, ...] = ()  # native tool calling, for models that support it
    max_tokens: int = 512
    temperature: float = 0.0
    #: how many leading messages repeat across requests (an agent's instructions and tools): a
    #: provider may keep their processed state for the next request that starts with them
    cache_prefix: int = 0


@dataclass(frozen=True, kw_only=True)
class TextRequest:
    """A raw text completion: continue ``prompt`` as it is, no chat template (OpenAI's completions)."""

    prompt: str
    max_tokens: int = 16
    temperature: float = 1.0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Embeddings:
    """One vector per input text, in input order, and the tokens the inputs took."""

    vectors: tuple[tuple[float, ...], ...]
    input_tokens: int


@dataclass(frozen=True, kw_only=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    #: input tokens the provider reused from a cache (a prompt prefix it had seen) instead of processing
    cached_input_tokens: int = 0
    time_to_first_token: float | None = None  # seconds
    duration: float = 0.0  # seconds, whole request

    @property
    def tokens_per_second(self) -> float | None:
        decode = self.duration - (self.time_to_first_token or 0.0)
        if self.output_tokens <= 1 or decode <= 0:
            return None
        return (self.output_tokens - 1) / decode

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, kw_only=True)
class ModelResponse:
    text: str
    model: str
    provider: str
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    tool_calls: tuple[ToolCall, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        # What ``asdict`` gives, without its deep copy of every value (one of these per model step).
        return {
            "text": self.text,
            "model": self.model,
            "provider": self.provider,
            "finish_reason": self.finish_reason,
            "usage": dict(vars(self.usage)),
            "tool_calls": tuple(dict(vars(call)) for call in self.tool_calls),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelResponse:
        return cls(
            text=data["text"],
            model=data["model"],
            provider=data["provider"],
            finish_reason=data["finish_reason"],
            usage=Usage(**data["usage"]),
            tool_calls=tuple(ToolCall(**call) for call in data["tool_calls"]),
        )


@dataclass(frozen=True, kw_only=True)
class TextDelta:
    text: str


class UsageMeter:
    """Times a request: call ``first_token()`` when the first chunk arrives, ``usage()`` at the end."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._first: float | None = None

    def first_token(self) -> None:
        if self._first is None:
            self._first = time.perf_counter() - self._start

    def usage(self, input_tokens: int, output_tokens: int, *, cached_input_tokens: int = 0) -> Usage:
        return Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached_input_tokens,
            time_to_first_token=self._first,
            duration=time.perf_counter() - self._start,
        )


class Model(ABC):
    """A language model. Subclasses implement ``stream``; ``request`` collects it.

    ``stream`` yields ``TextDelta`` chunks and, last, exactly one ``ModelResponse``.
    """

    provider: ClassVar[str]
    #: True where the server does native tool calling (tools in, tool_calls out).
    supports_native_tools: ClassVar[bool] = False
    #: Real models are blocked in the test suite unless a test opts in.
    is_real: ClassVar[bool] = True

    def __init__(self, name: str, *, context_length: int = 4096) -> None:
        self.name = name
        self.context_length = context_length
        #: token counts by message id, and the messages counted (held: their ids are not reused)
        self._counted_tokens: dict[int, int] = {}
        self._counted_messages: dict[int, Message] = {}

    @property
    def ref(self) -> str:
        return f"{self.provider}:{self.name}" if self.name else self.provider

    @abstractmethod
    def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        """Yield text chunks as they arrive, then the final response."""

    async def request(self, request: ModelRequest) -> ModelResponse:
        if self.is_real:
            check_model_requests_allowed(self.ref)
        final: ModelResponse | None = None
        async for event in self.stream(request):
            if isinstance(event, ModelResponse):
                final = event
        if final is None:  # a provider bug, not a user error
            raise RuntimeError(f"model {self.ref} stream ended without a response")
        return final

    def stream_text(self, request: TextRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        """Like ``stream``, for a raw text completion; ``ModelCapabilityError`` where the model has
        none (a chat-only server, a scripted model)."""
        raise ModelCapabilityError(f"model {self.ref} has no raw text completion: use chat completions")

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """An embedding of each text; ``ModelCapabilityError`` where the model cannot embed."""
        raise ModelCapabilityError(f"model {self.ref} cannot embed text: use an embedding model")

    def count_tokens(self, text: str) -> int:
        """Token count of ``text``; providers with a tokenizer override this estimate."""
        return (len(text) + 3) // 4 or 1  # at least 1 (``max`` was a Python call more, five an iteration)

    def count_message_tokens(self, messages: tuple[Message, ...] | list[Message]) -> int:
        # Each request repeats the history: each message is counted once, remembered by identity
        # (hashing a frozen message hashes its whole text at every look-up: ~1 us a message, a step's
        # largest cost of ours once the history filled the window). The messages remembered are held,
        # so an id remembered is that message's; the look-ups and the sum run in C, and Python runs
        # only for the messages new to this request.
        counted, held = self._counted_tokens, self._counted_messages
        if len(counted) > _COUNTED_MESSAGES:
            counted.clear()
            held.clear()
        ids = list(map(id, messages))
        known = list(map(counted.get, ids))
        # A step adds a few messages: each found by a scan in C that goes on from the one before.
        index = -1
        while True:
            try:
                index = known.index(None, index + 1)
            except ValueError:
                return sum(known)  # type: ignore[arg-type]
            key = ids[index]
            if key not in counted:
                held[key] = messages[index]
                counted[key] = self._message_tokens(messages[index])
            known[index] = counted[key]

    def _message_tokens(self, message: Message) -> int:
        tokens = self.count_tokens(message.content) + 4
        if message.tool_calls:
            tokens += self.count_tokens(json.dumps([c.arguments for c in message.tool_calls]))
        return tokens

    async def aload(self) -> None:  # noqa: B027 - optional hook, most models load nothing
        """Get ready for requests (load weights) without blocking the event loop; once per holder."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most models hold nothing
        """Release what the model holds (HTTP pools, weights)."""


#: messages whose token count a model remembers (a few long histories' worth)
_COUNTED_MESSAGES = 8192

_allow_requests = True


def allow_model_requests(allowed: bool) -> bool:
    """Allow or block real model requests process-wide; returns the previous value."""
    global _allow_requests
    previous, _allow_requests = _allow_requests, allowed
    return previous


def check_model_requests_allowed(ref: str) -> None:
    if not _allow_requests:
        raise ModelRequestsBlocked(
            f"real model request to {ref} blocked: tests run offline; use the 'test' or 'function:' model "
            "or opt in with the allow_model_requests fixture"
        )

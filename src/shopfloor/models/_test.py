"""TestModel: a deterministic, schema-driven model for tests and ``--model test``.

It answers every request with JSON that satisfies the request's schema. Where the
schema offers a choice of tool (an ``anyOf`` of ``{"tool": {"const": ...}}``
branches or a ``tool`` enum), it takes the granted tools in order, one per step,
then ``final_answer``. Arguments are generated from each tool's input schema. It
keeps no state: the step number is read from the conversation, so a replayed or
resumed run gets the same outputs. A raw text completion is answered with the same fixed text; an
embedding is a hashed bag of words (``EMBEDDING_DIMENSIONS`` numbers, unit length), so texts that share
words are closer than texts that share none.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from shopfloor.config import Settings
from shopfloor.models._base import (
    Embeddings,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    TextDelta,
    TextRequest,
    UsageMeter,
)

__all__ = ["EMBEDDING_DIMENSIONS", "FINAL_ANSWER", "TestModel", "make_test_model"]

FINAL_ANSWER = "final_answer"
EMBEDDING_DIMENSIONS = 32


class TestModel(Model):
    provider = "test"
    is_real = False
    __test__ = False  # not a pytest class

    def __init__(self, name: str = "", *, context_length: int = 8192) -> None:
        super().__init__(name, context_length=context_length)

    async def stream(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        meter = UsageMeter()
        if request.json_schema is None:
            text = _final_text(request.messages)
        else:
            step = sum(1 for m in request.messages if m.role == "assistant")
            text = json.dumps(_Generator(step, request.messages).value(request.json_schema, key=""))
        meter.first_token()
        yield TextDelta(text=text)
        yield ModelResponse(
            text=text,
            model="test",
            provider=self.provider,
            usage=meter.usage(self.count_message_tokens(request.messages), self.count_tokens(text)),
        )

    async def stream_text(self, request: TextRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        meter = UsageMeter()
        text = _final_text(())
        meter.first_token()
        yield TextDelta(text=text)
        yield ModelResponse(
            text=text,
            model="test",
            provider=self.provider,
            usage=meter.usage(self.count_tokens(request.prompt), self.count_tokens(text)),
        )

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        return Embeddings(
            vectors=tuple(_hashed_words(text) for text in texts),
            input_tokens=sum(self.count_tokens(text) for text in texts),
        )


def _hashed_words(text: str) -> tuple[float, ...]:
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        slot = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest()) % EMBEDDING_DIMENSIONS
        vector[slot] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return tuple(v / norm for v in vector)


def _final_text(messages: tuple[Message, ...]) -> str:
    results = [m.content for m in messages if m.role == "tool" or m.content.startswith("Result of ")]
    return "test model answer" + (f"; last result: {results[-1][:200]}" if results else "")


class _Generator:
    """Generates a value for a JSON schema; picks tools by step number."""

    def __init__(self, step: int, messages: tuple[Message, ...]) -> None:
        self.step = step
        self.messages = messages

    def _pick(self, choices: list[Any]) -> Any:
        tools = [c for c in choices if c != FINAL_ANSWER]
        if self.step < len(tools):
            return tools[self.step]
        return FINAL_ANSWER if FINAL_ANSWER in choices else choices[-1]

    def value(self, schema: dict[str, Any], *, key: str) -> Any:
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                return self._branch(schema[combinator], key=key)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self._pick(list(schema["enum"])) if key == "tool" else schema["enum"][0]
        if "default" in schema:
            return schema["default"]
        if schema.get("examples"):
            return schema["examples"][0]
        kind = schema.get("type", "object")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        return getattr(self, f"_{kind}")(schema, key)

    def _branch(self, branches: list[dict[str, Any]], *, key: str) -> Any:
        names = [b.get("properties", {}).get("tool", {}).get("const") for b in branches]
        if all(isinstance(n, str) for n in names):
            chosen = self._pick(names)
            return self.value(branches[names.index(chosen)], key=key)
        return self.value(branches[0], key=key)

    def _object(self, schema: dict[str, Any], key: str) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties", {})
        out = {
            name: self.value(props[name], key=name) for name in schema.get("required", []) if name in props
        }
        if key == "args" and out.get("answer") == "a" and FINAL_ANSWER in json.dumps(schema):
            out["answer"] = _final_text(self.messages)
        return out

    def _string(self, schema: dict[str, Any], key: str) -> str:
        if key == "answer":
            return _final_text(self.messages)
        return "a" * max(1, int(schema.get("minLength", 1)))

    def _integer(self, schema: dict[str, Any], key: str) -> int:
        return int(
            schema.get(
                "minimum", schema.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in schema else 1
            )
        )

    def _number(self, schema: dict[str, Any], key: str) -> float:
        return float(self._integer(schema, key))

    def _boolean(self, schema: dict[str, Any], key: str) -> bool:
        return False

    def _array(self, schema: dict[str, Any], key: str) -> list[Any]:
        count = int(schema.get("minItems", 0))
        return [self.value(schema.get("items", {}), key=key) for _ in range(count)]

    def _null(self, schema: dict[str, Any], key: str) -> None:
        return None


def make_test_model(name: str, settings: Settings) -> Model:
    return TestModel(name, context_length=settings.models.context_length * 2)

"""The request bodies the gateway accepts: the OpenAI API's fields, checked with pydantic
(``extra="forbid"``: a misspelt field is an error naming it, not a silent default).

Only what the gateway itself reads is typed tightly (``model``, ``messages``, ``stream``,
``max_tokens``); the other documented fields are checked for their JSON type and passed on to the
upstream as the client sent them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shopfloor.errors import GatewayRequestError

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "parse_request",
]

_Probability = Annotated[float, Field(ge=0, le=2)]
_Penalty = Annotated[float, Field(ge=-2, le=2)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Body):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None


class _Generation(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: _Probability | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stop: str | list[str] | None = None
    presence_penalty: _Penalty | None = None
    frequency_penalty: _Penalty | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    user: str | None = None


class ChatRequest(_Generation):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    service_tier: str | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


class CompletionRequest(_Generation):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: bool | None = None
    best_of: Annotated[int, Field(ge=1, le=20)] | None = None
    suffix: str | None = None


class EmbeddingRequest(_Body):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _param(loc: tuple[int | str, ...]) -> str:
    """``("messages", 2, "role")`` -> ``messages[2].role``, as OpenAI names a parameter."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or not part.isidentifier():  # a union member's tag (``list[str]``)
            continue
        else:
            out += f".{part}" if out else part
    return out


def parse_request(body: bytes, schema: type[_Body]) -> tuple[dict[str, Any], _Body]:
    """The body as a dict (to forward) and as ``schema`` (to read); GatewayRequestError naming the first
    bad field otherwise."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayRequestError(f"the request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise GatewayRequestError("the request body must be a JSON object", code="invalid_json")
    try:
        parsed = schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = _param(tuple(first["loc"]))
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise GatewayRequestError(
            f"{param}: {first['msg']}{more}", param=param, code="invalid_value"
        ) from exc
    return data, parsed

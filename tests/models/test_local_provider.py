"""The embedded llama.cpp provider, on real GGUF models from the catalogue."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shopfloor.config import Settings
from shopfloor.errors import ModelInstallError, ModelRequestError, ModelRequestsBlocked, UnknownModelError
from shopfloor.models import (
    LoadedWeights,
    LocalModel,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolDef,
    resolve_model,
)

TOOL_CHOICE = {
    "anyOf": [
        {
            "type": "object",
            "properties": {
                "tool": {"const": "calculator"},
                "args": {
                    "type": "object",
                    "properties": {"expression": {"type": "string"}},
                    "required": ["expression"],
                },
            },
            "required": ["tool", "args"],
        },
        {
            "type": "object",
            "properties": {
                "tool": {"const": "final_answer"},
                "args": {
                    "type": "object",
                    "properties": {"answer": {"type": "string"}},
                    "required": ["answer"],
                },
            },
            "required": ["tool", "args"],
        },
        {
            "type": "object",
            "properties": {"tool": {"enum": ["search", "fetch"]}, "args": {"type": "object"}},
            "required": ["tool", "args"],
        },
    ]
}

PROMPT = (
    Message(
        role="system",
        content="Choose the next tool and reply with JSON only. Tools: calculator (evaluates an arithmetic "
        "expression), search and fetch (the web), final_answer (the answer to the user).",
    ),
    Message(role="user", content="What is 17*23? Use the calculator."),
)


def local(embedded_model: Callable[[str], Path], name: str = "smollm2-135m", **kwargs: Any) -> LocalModel:
    return LocalModel(name, path=embedded_model(name), **kwargs)


def test_missing_model_says_how_to_install(settings: Settings) -> None:
    with pytest.raises(
        ModelInstallError, match=r"not installed .*run `shopfloor models install qwen2.5-coder-0.5b`"
    ):
        resolve_model("local:qwen2.5-coder-0.5b", settings)


def test_unknown_catalogue_name_lists_the_catalogue(settings: Settings) -> None:
    with pytest.raises(UnknownModelError, match=r"no embedded model named 'gpt-9'.*smollm2-135m"):
        resolve_model("local:gpt-9", settings)


async def test_real_requests_are_blocked_in_tests(tmp_path: Path) -> None:
    model = LocalModel("x", path=tmp_path / "never-loaded.gguf")
    with pytest.raises(ModelRequestsBlocked, match="local:x"):
        await model.request(ModelRequest(messages=PROMPT))


@pytest.mark.usefixtures("real_models")
async def test_native_tools_are_refused_before_loading(tmp_path: Path) -> None:
    model = LocalModel("x", path=tmp_path / "never-loaded.gguf")
    tool = ToolDef(name="calculator", description="", parameters={"type": "object"})
    with pytest.raises(ModelRequestError, match="no native tool calling"):
        await model.request(ModelRequest(messages=PROMPT, tools=(tool,)))


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
async def test_json_schema_output_validates(
    embedded_model: Callable[[str], Path], settings: Settings, name: str
) -> None:
    model = resolve_model(f"local:{embedded_model(name)}", settings)
    response = await model.request(ModelRequest(messages=PROMPT, json_schema=TOOL_CHOICE, max_tokens=96))
    reply = json.loads(response.text)
    jsonschema.validate(reply, TOOL_CHOICE)
    assert list(reply) == ["tool", "args"]  # generated in schema order: the choice before its arguments
    if name.startswith("qwen"):
        assert reply["tool"] == "calculator"


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_streams_chunks_with_usage_matching_llama_cpp(embedded_model: Callable[[str], Path]) -> None:
    model = local(embedded_model)
    request = ModelRequest(messages=(Message(role="user", content="Count from 1 to 20."),), max_tokens=300)
    events = [e async for e in model.stream(request)]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    final = events[-1]
    assert isinstance(final, ModelResponse) and len(deltas) > 3
    assert final.text == "".join(d.text for d in deltas)
    direct: Any = model.llama.create_chat_completion(
        messages=[{"role": "user", "content": "Count from 1 to 20."}], max_tokens=300, temperature=0
    )
    assert direct["choices"][0]["finish_reason"] == final.finish_reason == "stop"
    assert final.usage.input_tokens == direct["usage"]["prompt_tokens"] > 0
    assert final.usage.output_tokens == direct["usage"]["completion_tokens"] > 0
    assert final.usage.time_to_first_token is not None and final.usage.tokens_per_second is not None


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_length_finish_counts_every_token(embedded_model: Callable[[str], Path]) -> None:
    model = local(embedded_model)
    response = await model.request(
        ModelRequest(messages=(Message(role="user", content="Write a long story."),), max_tokens=7)
    )
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 7


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_count_tokens_uses_the_model_tokenizer(embedded_model: Callable[[str], Path]) -> None:
    model = local(embedded_model)
    text = "def add(a, b):\n    return a + b"
    assert model.count_tokens(text) == len(model.llama.tokenize(text.encode(), add_bos=False, special=True))
    assert model.count_tokens(text) != Model.count_tokens(model, text)  # not the length-based estimate


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_weights_are_shared_and_generations_serialised(embedded_model: Callable[[str], Path]) -> None:
    weights = LoadedWeights()  # what the composition root shares between a process's local models
    first, second = local(embedded_model, weights=weights), local(embedded_model, weights=weights)
    assert first.llama is second.llama
    request = ModelRequest(messages=(Message(role="user", content="Say hi."),), max_tokens=16)
    alone = await first.request(request)
    both = await asyncio.gather(first.request(request), second.request(request))
    assert [r.text for r in both] == [alone.text, alone.text]


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_generation_does_not_block_the_event_loop(embedded_model: Callable[[str], Path]) -> None:
    model = local(embedded_model)
    await model.aload()  # load outside the measured window
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    story = ModelRequest(messages=(Message(role="user", content="Write a long story."),), max_tokens=200)
    response = await model.request(story)
    ticker.cancel()
    # A blocked loop would show one gap as long as the whole generation.
    assert response.usage.duration > 1.0
    assert max(gaps) < 0.3


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_stopping_early_frees_the_model(embedded_model: Callable[[str], Path]) -> None:
    model = local(embedded_model)
    request = ModelRequest(messages=(Message(role="user", content="Write a long story."),), max_tokens=400)
    stream = model.stream(request)
    assert isinstance(stream, AsyncGenerator)
    async for event in stream:
        assert isinstance(event, TextDelta)
        break
    await stream.aclose()
    started = time.perf_counter()
    response = await asyncio.wait_for(
        model.request(ModelRequest(messages=request.messages, max_tokens=4)), 30
    )
    assert response.usage.output_tokens == 4
    assert time.perf_counter() - started < 10


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_prompt_longer_than_context_is_a_request_error(embedded_model: Callable[[str], Path]) -> None:
    model = local(embedded_model, context_length=128)
    long = ModelRequest(messages=(Message(role="user", content="word " * 400),), max_tokens=8)
    with pytest.raises(ModelRequestError, match="exceed context window"):
        await model.request(long)


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_cancelled_request_frees_the_model(embedded_model: Callable[[str], Path]) -> None:
    model = local(embedded_model)
    story = ModelRequest(messages=(Message(role="user", content="Write a long story."),), max_tokens=400)
    await model.aload()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(model.request(story), 0.2)
    started = time.perf_counter()
    response = await model.request(ModelRequest(messages=story.messages, max_tokens=4))
    assert response.usage.output_tokens == 4
    assert time.perf_counter() - started < 5  # not waiting out the 400 tokens of the abandoned request

"""The embedded model's speed paths give the answers of the plain ones: greedy grammar sampling that
checks the likeliest tokens first, a reply of fixed options decoded at its choices only, and prompt
states kept and restored across requests."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shopfloor.models import LoadedWeights, LocalModel, Message, ModelRequest

if TYPE_CHECKING:
    from llama_cpp.llama_grammar import LlamaGrammar

MODEL = "qwen2.5-coder-0.5b"
CHOICES: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"tool": {"enum": ["data-analysis", "python", "files", "final_answer"]}},
        "required": ["tool"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "group_by": {"enum": ["date.month", "date.year", "weather"]},
            "stat": {"enum": ["sum", "mean", "max"]},
            "order": {"enum": ["max", "min"]},
        },
        "required": ["group_by", "stat", "order"],
        "additionalProperties": False,
    },
]
FREE: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {"group_by": {"enum": ["date.month", "date.year"]}, "limit": {"type": "integer"}},
        "required": ["group_by", "limit"],
        "additionalProperties": False,
    },
]
QUESTION = "Which month of 2015 had the most rain in Seattle, and how much? Reply with JSON."


def model(embedded_model: Callable[[str], Path], weights: LoadedWeights | None = None) -> LocalModel:
    return LocalModel(MODEL, path=embedded_model(MODEL), threads=1, weights=weights)


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
@pytest.mark.parametrize("schema", FREE, ids=["free-text", "enum-and-integer"])
async def test_greedy_grammar_picks_the_tokens_of_llama_cpps_grammar_sampler(
    embedded_model: Callable[[str], Path], schema: dict[str, Any]
) -> None:
    ours = model(embedded_model)
    messages = (Message(role="user", content=QUESTION),)
    response = await ours.request(ModelRequest(messages=messages, json_schema=schema, max_tokens=24))
    assert ours.llama._greedy is not None  # type: ignore[attr-defined]  # the fast path ran

    from llama_cpp.llama_grammar import LlamaGrammar

    grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    direct = grammar_reply(embedded_model, grammar, max_tokens=24)
    assert response.text == direct["choices"][0]["message"]["content"]
    assert response.usage.output_tokens == direct["usage"]["completion_tokens"]


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
@pytest.mark.parametrize("schema", CHOICES, ids=["tool", "arguments"])
async def test_a_reply_of_fixed_options_is_the_grammar_samplers_choice_without_its_forced_steps(
    embedded_model: Callable[[str], Path], schema: dict[str, Any]
) -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    ours = model(embedded_model)
    messages = (Message(role="user", content=QUESTION),)
    response = await ours.request(ModelRequest(messages=messages, json_schema=schema, max_tokens=64))
    assert ours.llama._greedy is None  # type: ignore[attr-defined]  # no grammar sampler ran

    # llama.cpp's own grammar sampler writes the reply with the same spacing and keys. Its greedy
    # tokens for a forced part may be odd ("g", "rou", "p" for "group"), which ours are not (the
    # tokenizer's), so a later choice may differ; the tool's choice here does not.
    grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    direct = grammar_reply(embedded_model, grammar, max_tokens=64)["choices"][0]["message"]["content"]
    assert re.sub(r'"[^"]*"(?=[,}])', "V", response.text) == re.sub(r'"[^"]*"(?=[,}])', "V", direct)
    if "tool" in schema["properties"]:
        assert response.text == direct
    assert response.finish_reason == "stop"
    # The reply's tokens after its last choice were never evaluated: the context holds fewer.
    held = ours.llama.n_tokens - response.usage.input_tokens
    assert held < response.usage.output_tokens - 1, (held, response.usage.output_tokens)


def grammar_reply(embedded_model: Callable[[str], Path], grammar: LlamaGrammar, *, max_tokens: int) -> Any:
    """llama.cpp's own grammar-constrained greedy reply to ``QUESTION``."""
    from llama_cpp import Llama

    plain = Llama(model_path=str(embedded_model(MODEL)), n_ctx=4096, n_threads=1, verbose=False)
    try:
        return plain.create_chat_completion(
            messages=[{"role": "user", "content": QUESTION}],
            grammar=grammar,
            temperature=0.0,
            max_tokens=max_tokens,
        )
    finally:
        plain.close()


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
@pytest.mark.parametrize("choices", [False, True], ids=["grammar", "fixed-options"])
async def test_a_kept_prefix_is_restored_and_answers_as_a_cold_prompt(
    embedded_model: Callable[[str], Path], choices: bool
) -> None:
    system = Message(
        role="system",
        content="You are a data analyst. Files: seattle-weather.csv (date, precipitation, temp_max, "
        "temp_min, wind, weather); cars.json (Name, Miles_per_Gallon, Cylinders, Horsepower, Origin). "
        "Reply with JSON naming the file for the question.",
    )
    other = Message(role="system", content="You translate English into French. Reply with JSON.")
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"file": {"enum": ["seattle-weather.csv", "cars.json"]}},
    }
    if choices:  # decoded at its choices (``_choice.py``), which reads the kept state the same way
        schema |= {"required": ["file"], "additionalProperties": False}

    def ask(first: Message, question: str) -> ModelRequest:
        messages = (first, Message(role="user", content=question))
        return ModelRequest(messages=messages, json_schema=schema, max_tokens=16, cache_prefix=1)

    warm = model(embedded_model)
    first = await warm.request(ask(system, "How windy was Seattle?"))
    assert len(warm.llama.prefixes) == 1  # type: ignore[attr-defined]
    await warm.request(ask(other, "Good morning"))  # the context now holds another prompt
    again = await warm.request(ask(system, "What is the mean horsepower of the cars?"))
    assert warm.llama.prefixes.restores == 1  # type: ignore[attr-defined]
    # Everything up to the question came from the kept state: only the question was evaluated.
    assert again.usage.cached_input_tokens >= first.usage.input_tokens - 16
    assert again.usage.input_tokens - again.usage.cached_input_tokens < 40

    cold = model(embedded_model, weights=LoadedWeights())
    fresh = await cold.request(ask(system, "What is the mean horsepower of the cars?"))
    assert fresh.usage.cached_input_tokens == 0
    assert again.text == fresh.text


@pytest.mark.slow
@pytest.mark.usefixtures("real_models")
async def test_a_conversation_asked_again_is_reused_to_its_last_call(
    embedded_model: Callable[[str], Path],
) -> None:
    system = Message(role="system", content="You are a data analyst. Reply with JSON naming the file.")
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"file": {"enum": ["seattle-weather.csv", "cars.json"]}},
        "required": ["file"],
        "additionalProperties": False,
    }
    question = Message(role="user", content="How windy was Seattle?")

    def ask(*messages: Message) -> ModelRequest:
        return ModelRequest(messages=messages, json_schema=schema, max_tokens=16, cache_prefix=1)

    warm = model(embedded_model)
    first = await warm.request(ask(system, question))
    stage = (system, question, Message(role="assistant", content=first.text))
    follow = Message(role="user", content="And which file has the horsepower of the cars? Reply again.")
    before = await warm.request(ask(*stage, follow))
    await warm.request(ask(Message(role="system", content="You translate English into French."), question))
    again = await warm.request(ask(*stage, follow))
    # The state kept after the second call (extending the first's) holds the whole prompt.
    assert again.usage.input_tokens - again.usage.cached_input_tokens <= 2
    assert again.text == before.text

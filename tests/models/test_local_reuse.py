"""The embedded model's speed paths give the answers of the plain ones: greedy grammar sampling that
checks the likeliest tokens first, a reply of fixed options decoded at its choices only, and prompt
states kept and restored across requests."""

from __future__ import annotations

import json
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

    # llama.cpp's own grammar sampler writes the same reply, spacing included.
    grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    direct = grammar_reply(embedded_model, grammar, max_tokens=64)
    assert response.text == direct["choices"][0]["message"]["content"]
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

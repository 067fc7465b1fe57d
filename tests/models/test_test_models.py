"""The deterministic models shipped in the package: TestModel and FunctionModel."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from shopfloor.errors import ModelOutputError
from shopfloor.models import (
    FunctionModel,
    Message,
    ModelRequest,
    ModelResponse,
    TestModel,
    TextDelta,
    ToolCall,
    Usage,
)


def tool_branch(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"tool": {"const": name}, "args": args},
        "required": ["tool", "args"],
    }


CHOICE = {
    "anyOf": [
        tool_branch(
            "calculator",
            {
                "type": "object",
                "properties": {
                    "expression": {"type": "string", "minLength": 3},
                    "precision": {"type": "integer"},
                },
                "required": ["expression", "precision"],
            },
        ),
        tool_branch(
            "lookup",
            {
                "type": "object",
                "properties": {"keys": {"type": "array", "items": {"type": "string"}, "minItems": 2}},
                "required": ["keys"],
            },
        ),
        tool_branch(
            "final_answer",
            {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
        ),
    ]
}


def conversation(steps: int) -> tuple[Message, ...]:
    messages = [Message(role="system", content="agent"), Message(role="user", content="task")]
    for i in range(steps):
        messages += [
            Message(role="assistant", content=f"step {i}"),
            Message(role="user", content=f"result {i}"),
        ]
    return tuple(messages)


async def test_test_model_calls_each_tool_in_turn_then_answers() -> None:
    model = TestModel()
    replies = [
        json.loads((await model.request(ModelRequest(messages=conversation(step), json_schema=CHOICE))).text)
        for step in range(4)
    ]
    assert [r["tool"] for r in replies] == ["calculator", "lookup", "final_answer", "final_answer"]
    for reply in replies:
        jsonschema.validate(reply, CHOICE)
    assert replies[0]["args"] == {"expression": "aaa", "precision": 1}
    assert replies[1]["args"] == {"keys": ["a", "a"]}
    assert replies[2]["args"]["answer"].startswith("test model answer")


async def test_test_model_follows_a_tool_enum() -> None:
    schema = {
        "type": "object",
        "properties": {"tool": {"enum": ["read", "final_answer"]}, "args": {"type": "object"}},
        "required": ["tool", "args"],
    }
    first = await TestModel().request(ModelRequest(messages=conversation(0), json_schema=schema))
    second = await TestModel().request(ModelRequest(messages=conversation(1), json_schema=schema))
    assert json.loads(first.text) == {"tool": "read", "args": {}}
    assert json.loads(second.text)["tool"] == "final_answer"


async def test_test_model_is_deterministic_and_streams() -> None:
    request = ModelRequest(messages=conversation(0), json_schema=CHOICE)
    events = [e async for e in TestModel().stream(request)]
    assert isinstance(events[0], TextDelta) and isinstance(events[-1], ModelResponse)
    assert events[-1].text == (await TestModel().request(request)).text
    assert events[-1].usage.output_tokens > 0


async def test_function_model_scripted_outputs_by_step() -> None:
    model = FunctionModel(outputs=["first", {"tool": "final_answer", "args": {"answer": "x"}}])
    assert (await model.request(ModelRequest(messages=conversation(0)))).text == "first"
    second = await model.request(ModelRequest(messages=conversation(1)))
    assert json.loads(second.text) == {"tool": "final_answer", "args": {"answer": "x"}}
    with pytest.raises(ModelOutputError, match="has 2 outputs; step 2 asked"):
        await model.request(ModelRequest(messages=conversation(2)))
    assert model.calls == 3


async def test_function_model_callables_sync_async_and_full_responses() -> None:
    seen: list[ModelRequest] = []

    async def native(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        call = ToolCall(id="c1", name="add", arguments='{"a": 1}')
        return ModelResponse(
            text="", model="fn", provider="function", tool_calls=(call,), usage=Usage(output_tokens=3)
        )

    response = await FunctionModel(native).request(ModelRequest(messages=conversation(0)))
    assert response.tool_calls[0].name == "add" and response.usage.output_tokens == 3 and len(seen) == 1
    assert (
        await FunctionModel(lambda r: {"n": len(r.messages)}).request(ModelRequest(messages=conversation(1)))
    ).text == '{"n": 4}'


def test_function_model_takes_one_source() -> None:
    with pytest.raises(ValueError, match="either a function or a list"):
        FunctionModel()
    with pytest.raises(ValueError, match="either a function or a list"):
        FunctionModel(lambda r: "x", outputs=["y"])


def test_response_round_trips_through_plain_data() -> None:
    response = ModelResponse(
        text="t",
        model="m",
        provider="p",
        finish_reason="tool_calls",
        usage=Usage(input_tokens=3, output_tokens=4, time_to_first_token=0.1, duration=0.5),
        tool_calls=(ToolCall(id="1", name="n", arguments="{}"),),
    )
    data = json.loads(json.dumps(response.to_dict()))
    assert ModelResponse.from_dict(data) == response
    assert response.usage.total_tokens == 7
    assert response.usage.tokens_per_second == pytest.approx(3 / 0.4)


def test_a_requests_tokens_are_counted_once_a_message_whatever_the_history() -> None:
    texts: list[str] = []

    class Counting(FunctionModel):
        def count_tokens(self, text: str) -> int:
            texts.append(text)
            return super().count_tokens(text)

    model = Counting(outputs=["x"])
    fresh = FunctionModel(outputs=["x"])
    history = [Message(role="system", content="be brief"), Message(role="user", content="task " * 50)]
    for step in range(300):
        history += [
            Message(role="assistant", content=f"call {step}"),
            Message(role="user", content="result " * (step % 7)),
        ]
        texts.clear()
        window = tuple(history[:2] + history[-100:])  # the oldest turns dropped, as a full window does
        assert model.count_message_tokens(window) == fresh.count_message_tokens(list(window))
        assert len(texts) <= (102 if step == 0 else 2), step  # only this step's new messages
    twins = (Message(role="user", content="same"), Message(role="user", content="same"))
    assert model.count_message_tokens(twins) == 2 * model.count_message_tokens(twins[:1])
    assert model.count_message_tokens(()) == 0

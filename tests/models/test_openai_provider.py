"""The openai provider against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from fake_openai import FakeOpenAIServer, Reply, chunk, text_stream, usage_chunk

from shopfloor.config import load_settings
from shopfloor.errors import ModelRequestError, ModelUnavailableError
from shopfloor.models import (
    Message,
    ModelRequest,
    ModelResponse,
    OpenAIModel,
    RetryPolicy,
    TextDelta,
    ToolCall,
    ToolDef,
    resolve_model,
)

pytestmark = pytest.mark.usefixtures("real_models")

FAST = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05)


def ask(text: str = "say hello world", **kwargs: object) -> ModelRequest:
    return ModelRequest(messages=(Message(role="user", content=text),), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def model(openai_server: FakeOpenAIServer) -> AsyncIterator[OpenAIModel]:
    m = OpenAIModel("fake-model", base_url=openai_server.url, api_key="sk-test", timeout=2.0, retry=FAST)
    yield m
    await m.aclose()


async def test_streams_text_chunks_then_response_with_usage(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    openai_server.script(Reply(chunks=text_stream("Hel", "lo", " world", prompt=9, completion=3)))
    events = [e async for e in model.stream(ask())]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo", " world"]
    final = events[-1]
    assert isinstance(final, ModelResponse)
    assert final.text == "Hello world"
    assert (final.model, final.provider, final.finish_reason) == ("fake-model", "openai", "stop")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 3)
    assert final.usage.time_to_first_token is not None
    assert 0 < final.usage.time_to_first_token <= final.usage.duration


async def test_sends_streaming_chat_completion_with_key(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    await model.request(ask("hi", max_tokens=7, temperature=0.3))
    sent = openai_server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["model"] == "fake-model"
    assert sent.body["messages"] == [{"role": "user", "content": "hi"}]
    assert (sent.body["max_tokens"], sent.body["temperature"]) == (7, 0.3)
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert "response_format" not in sent.body and "tools" not in sent.body


async def test_json_schema_is_passed_as_response_format(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    openai_server.script(Reply(chunks=text_stream('{"x"', ": 3}")))
    response = await model.request(ask(json_schema=schema))
    assert json.loads(response.text) == {"x": 3}
    assert openai_server.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": schema, "strict": False},
    }


async def test_json_object_mode_for_servers_without_json_schema(openai_server: FakeOpenAIServer) -> None:
    model = OpenAIModel("m", base_url=openai_server.url, structured_output="json_object", retry=FAST)
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    await model.request(ask(json_schema=schema))
    assert openai_server.requests[0].body["response_format"] == {"type": "json_object", "schema": schema}
    await model.aclose()


async def test_native_tool_calls_are_assembled_from_deltas(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    def call(index: int, **fields: object) -> dict[str, object]:
        return {"index": index, **fields}

    openai_server.script(
        Reply(
            chunks=[
                chunk(
                    role="assistant",
                    tool_calls=[call(0, id="call_a", type="function", function={"name": "add"})],
                ),
                chunk(tool_calls=[call(0, function={"arguments": '{"a": 1,'})]),
                chunk(tool_calls=[call(1, id="call_b", function={"name": "now", "arguments": ""})]),
                chunk(tool_calls=[call(0, function={"arguments": ' "b": 2}'})]),
                chunk(finish="tool_calls"),
                usage_chunk(20, 12),
            ]
        )
    )
    tools = (
        ToolDef(name="add", description="Add two numbers", parameters={"type": "object"}),
        ToolDef(name="now", description="The time", parameters={"type": "object", "properties": {}}),
    )
    response = await model.request(ask("add 1 and 2", tools=tools))
    assert response.finish_reason == "tool_calls"
    assert response.text == ""
    assert response.tool_calls == (
        ToolCall(id="call_a", name="add", arguments='{"a": 1, "b": 2}'),
        ToolCall(id="call_b", name="now", arguments="{}"),
    )
    assert openai_server.requests[0].body["tools"][0] == {
        "type": "function",
        "function": {"name": "add", "description": "Add two numbers", "parameters": {"type": "object"}},
    }


async def test_tool_turns_are_sent_in_openai_shape(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    call = ToolCall(id="call_a", name="add", arguments='{"a": 1}')
    messages = (
        Message(role="system", content="be brief"),
        Message(role="user", content="add"),
        Message(role="assistant", content="", tool_calls=(call,)),
        Message(role="tool", content="3", tool_call_id="call_a"),
    )
    await model.request(ModelRequest(messages=messages))
    assert openai_server.requests[0].body["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
            ],
        },
        {"role": "tool", "content": "3", "tool_call_id": "call_a"},
    ]


async def test_429_then_success_honours_retry_after(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    openai_server.script(
        Reply(status=429, headers={"Retry-After": "0.3"}, body={"error": {"message": "slow down"}}),
        Reply(chunks=text_stream("ok")),
    )
    response = await model.request(ask())
    assert response.text == "ok"
    first, second = openai_server.requests
    assert second.at - first.at >= 0.3


async def test_retry_after_ms_is_preferred(model: OpenAIModel, openai_server: FakeOpenAIServer) -> None:
    openai_server.script(
        Reply(status=429, headers={"Retry-After": "30", "retry-after-ms": "250"}),
        Reply(chunks=text_stream("ok")),
    )
    assert (await model.request(ask())).text == "ok"
    first, second = openai_server.requests
    assert 0.25 <= second.at - first.at < 5


async def test_5xx_is_retried_then_reported_unavailable(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    openai_server.script(*[Reply(status=503, body={"error": {"message": "overloaded"}})] * 3)
    with pytest.raises(ModelUnavailableError, match=r"HTTP 503: overloaded; gave up after 3 tries"):
        await model.request(ask())
    assert len(openai_server.requests) == 3


async def test_500_then_success(model: OpenAIModel, openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Reply(status=500, body="boom"), Reply(chunks=text_stream("fine")))
    assert (await model.request(ask())).text == "fine"
    assert len(openai_server.requests) == 2


async def test_400_raises_request_error_with_server_message(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    error = {"message": "max_tokens is too large", "type": "invalid_request_error", "param": "max_tokens"}
    openai_server.script(Reply(status=400, body={"error": error}))
    with pytest.raises(ModelRequestError) as info:
        await model.request(ask())
    assert info.value.status == 400
    assert "HTTP 400: max_tokens is too large type=invalid_request_error param=max_tokens" in str(info.value)
    assert len(openai_server.requests) == 1  # a 4xx is the caller's to fix: no retry


async def test_401_says_how_to_fix_the_key(model: OpenAIModel, openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Reply(status=401, body={"detail": "bad key"}))
    with pytest.raises(ModelRequestError, match=r"HTTP 401: bad key \(check the API key.*OPENAI_API_KEY"):
        await model.request(ask())


async def test_slow_server_times_out_and_is_retried(openai_server: FakeOpenAIServer) -> None:
    model = OpenAIModel(
        "m", base_url=openai_server.url, timeout=0.2, retry=RetryPolicy(max_retries=1, base_delay=0)
    )
    openai_server.script(Reply(delay=1.0), Reply(delay=1.0))
    with pytest.raises(ModelUnavailableError, match=r"timed out after 0.2s.*gave up after 2 tries"):
        await model.request(ask())
    assert len(openai_server.requests) == 2
    await model.aclose()


async def test_stall_after_text_fails_without_retry(openai_server: FakeOpenAIServer) -> None:
    model = OpenAIModel("m", base_url=openai_server.url, timeout=0.3, retry=FAST)
    openai_server.script(Reply(chunks=text_stream("a", "b", "c"), stall_after=2))
    seen: list[str] = []
    with pytest.raises(ModelUnavailableError, match="mid-stream"):
        async for event in model.stream(ask()):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert seen == ["a"]
    assert len(openai_server.requests) == 1  # the caller already has text: a retry would repeat it
    await model.aclose()


async def test_dropped_connection_is_retried(model: OpenAIModel, openai_server: FakeOpenAIServer) -> None:
    openai_server.script(Reply(drop=True), Reply(chunks=text_stream("back")))
    assert (await model.request(ask())).text == "back"
    assert len(openai_server.requests) == 2


async def test_error_event_before_text_is_retried(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    openai_server.script(
        Reply(chunks=[{"error": {"message": "engine died"}}]),
        Reply(chunks=text_stream("second")),
    )
    assert (await model.request(ask())).text == "second"


async def test_cut_off_stream_is_not_taken_for_a_whole_answer(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    openai_server.script(Reply(chunks=[chunk("The answer is 3")], done=False))
    with pytest.raises(ModelUnavailableError, match=r"ended before the completion did .* mid-stream"):
        await model.request(ask())
    openai_server.script(
        Reply(chunks=[chunk(role="assistant")], done=False), Reply(chunks=text_stream("whole"))
    )
    assert (await model.request(ask())).text == "whole"  # nothing was streamed yet: retried


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAIModel("m", base_url=f"http://127.0.0.1:{port}/v1", retry=FAST)
    with pytest.raises(ModelUnavailableError, match=r"connection failed .*gave up after 3 tries"):
        await model.request(ask())
    await model.aclose()


async def test_non_streaming_server_answer_is_accepted(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    completion = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1},
    }
    openai_server.script(Reply(body=completion))
    events = [e async for e in model.stream(ask())]
    assert isinstance(events[0], TextDelta) and events[0].text == "whole"
    final = events[-1]
    assert isinstance(final, ModelResponse)
    assert (final.text, final.finish_reason, final.usage.input_tokens) == ("whole", "length", 4)


async def test_missing_usage_falls_back_to_estimates(
    model: OpenAIModel, openai_server: FakeOpenAIServer
) -> None:
    openai_server.script(Reply(chunks=[chunk("some words here"), chunk(finish="stop")]))
    usage = (await model.request(ask())).usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0


async def test_injected_transport_sees_faults_the_server_cannot_cause() -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadError("connection reset by peer", request=request)
        sse = "".join(f"data: {json.dumps(c)}\n\n" for c in text_stream("done"))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=sse)

    model = OpenAIModel(
        "m", base_url="http://model.invalid/v1", retry=FAST, transport=httpx.MockTransport(handle)
    )
    assert (await model.request(ask())).text == "done"
    assert len(calls) == 2 and str(calls[0].url) == "http://model.invalid/v1/chat/completions"
    await model.aclose()


async def test_resolve_reads_base_url_and_key_from_settings(openai_server: FakeOpenAIServer) -> None:
    settings = load_settings({"SHOPFLOOR_HOME": "/tmp/unused", "OPENAI_BASE_URL": openai_server.url})
    model = resolve_model("openai:served-name", settings)
    assert isinstance(model, OpenAIModel) and model.supports_native_tools
    assert (await model.request(ask("one two"))).text == "one two "
    assert openai_server.requests[0].body["model"] == "served-name"
    assert "authorization" not in openai_server.requests[0].headers
    await model.aclose()

"""``/v1/completions`` and ``/v1/embeddings`` on a Shopfloor model behind the gateway (``kind = "model"``),
through the ``openai`` client: the shapes it parses, the per-model queue, and a 400 naming the model for
one that cannot do it. The embedded llama.cpp model's own run is in test_gateway_local.py."""

from __future__ import annotations

import math

import httpx
import openai
import pytest
from inference_support import KEY

from shopfloor.models import FunctionModel, ModelRequest, TestModel
from shopfloor.models._test import EMBEDDING_DIMENSIONS

ROUTES = {
    "local:test": {"upstreams": [{"kind": "model", "model": "test"}]},
    "local:echo": {"upstreams": [{"kind": "model", "model": "function:echo"}]},
}


def _echo(request: ModelRequest) -> str:
    return f"echo {request.messages[-1].content}"


def _make(ref: str) -> TestModel | FunctionModel:
    return TestModel() if ref == "test" else FunctionModel(_echo, name=ref)


def test_completions_whole_and_streamed_through_the_queue(gateway) -> None:
    gw = gateway(routes=ROUTES, make_model=_make)
    client = gw.client()
    reply = client.completions.create(model="local:test", prompt="Once upon a time", max_tokens=32)
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "test model answer"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 4 and reply.usage.completion_tokens > 0
    chunks = list(
        client.completions.create(
            model="local:test",
            prompt=["Once upon a time"],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "test model answer"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert gw.metric("shopfloor_gateway_local_queue_wait_seconds_count", {"model": "test"}) == 2
    assert gw.metric("shopfloor_gateway_local_queue_depth", {"model": "test"}) == 0


def test_embeddings_as_floats_and_as_base64(gateway) -> None:
    gw = gateway(routes=ROUTES, make_model=_make)
    client = gw.client()
    # the openai client asks for base64 unless told otherwise, and decodes it
    answer = client.embeddings.create(model="local:test", input=["red apple", "green apple", "fast car"])
    vectors = [e.embedding for e in answer.data]
    assert [e.index for e in answer.data] == [0, 1, 2]
    assert all(len(v) == EMBEDDING_DIMENSIONS for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 0
    floats = client.embeddings.create(model="local:test", input="red apple", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)  # float32 round trip
    assert gw.metric("shopfloor_gateway_local_queue_wait_seconds_count", {"model": "test"}) == 2


def test_a_model_that_cannot_embed_or_complete_text_says_so(gateway) -> None:
    gw = gateway(routes=ROUTES, make_model=_make)
    client = gw.client()
    with pytest.raises(openai.BadRequestError) as embed:
        client.embeddings.create(model="local:echo", input="x")
    assert embed.value.code == "unsupported_endpoint" and embed.value.param == "model"
    assert "function:echo does not serve /v1/embeddings" in embed.value.message
    with pytest.raises(openai.BadRequestError) as complete:
        client.completions.create(model="local:echo", prompt="x")
    assert complete.value.code == "unsupported_endpoint"
    assert "does not serve /v1/completions" in complete.value.message
    # the chat endpoint of the same model still answers
    reply = client.chat.completions.create(model="local:echo", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo hi"


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        ("embeddings", {"input": [1, 2, 3]}, "input"),
        ("embeddings", {"input": ["a", ""]}, "input"),
        ("embeddings", {"input": "a", "dimensions": 7}, "dimensions"),
        ("completions", {"prompt": ["one", "two"]}, "prompt"),
        ("completions", {"prompt": [[1, 2]]}, "prompt"),
    ],
)
def test_inputs_a_model_cannot_take_are_named(gateway, endpoint, body, param) -> None:
    gw = gateway(routes=ROUTES, make_model=_make)
    answer = httpx.post(
        f"{gw.url}/v1/{endpoint}",
        json={"model": "local:test", **body},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param

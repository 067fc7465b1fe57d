"""The endpoints as the ``openai`` client sees them: shapes, errors, limits, budgets."""

from __future__ import annotations

import httpx
import openai
import pytest
from inference_support import KEY, CountingAdmission


def _route(url: str, **extra: object) -> dict[str, object]:
    return {"upstreams": [{"url": url, "model": "upstream-model", "api_key": "sk-upstream-secret"}], **extra}


def test_chat_completion_through_the_openai_client(upstreams, gateway) -> None:
    fake, url = upstreams("a")
    gw = gateway(routes={"gpt": _route(url)}, aliases={"fast": "gpt"})
    reply = gw.client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "hello from a"
    assert reply.usage is not None and reply.usage.prompt_tokens == 11
    # the upstream saw its own model name and its own key, never the caller's
    assert fake.requests[0]["model"] == "upstream-model"
    assert fake.headers[0]["authorization"] == "Bearer sk-upstream-secret"
    assert KEY not in str(fake.headers[0])


def test_streamed_chat_without_and_with_usage(upstreams, gateway) -> None:
    fake, url = upstreams("a")
    gw = gateway(routes={"gpt": _route(url)})
    client = gw.client()
    chunks = list(
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "part0 part1 part2 "
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage: none passed on
    assert fake.requests[0]["stream_options"] == {"include_usage": True}  # the gateway asked, to meter
    chunks = list(
        client.chat.completions.create(
            model="gpt",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_completions_embeddings_and_models(upstreams, gateway) -> None:
    _, url = upstreams("a")
    gw = gateway(routes={"gpt": _route(url), "embed": _route(url)}, aliases={"fast": "gpt"})
    client = gw.client()
    assert client.completions.create(model="gpt", prompt="say").choices[0].text == "hello from a"
    embedding = client.embeddings.create(model="embed", input=["a", "b"])
    assert [e.embedding for e in embedding.data] == [[0.5, 0.25], [0.5, 0.25]]
    assert sorted(m.id for m in client.models.list()) == ["embed", "fast", "gpt"]


def test_a_request_without_a_valid_key_is_refused(upstreams, gateway) -> None:
    fake, url = upstreams("a")
    gw = gateway(routes={"gpt": _route(url)})
    with pytest.raises(openai.AuthenticationError) as caught:
        gw.client(key="wrong").chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 401
    assert httpx.get(f"{gw.url}/v1/models").status_code == 401
    assert fake.requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "gpt", "messages": []}, "messages"),
        ({"model": "gpt", "messages": [{"role": "user", "content": "x"}], "temprature": 1}, "temprature"),
        ({"model": "gpt", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_bad_fields_are_named_in_an_openai_error(upstreams, gateway, body, param) -> None:
    fake, url = upstreams("a")
    gw = gateway(routes={"gpt": _route(url)})
    response = httpx.post(
        f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"]
    assert error["type"] == "invalid_request_error"
    assert fake.requests == []


def test_the_openai_client_sees_bad_requests_unknown_models_and_bad_json(upstreams, gateway) -> None:
    _, url = upstreams("a")
    gw = gateway(routes={"gpt": _route(url)})
    with pytest.raises(openai.NotFoundError, match="not served here"):
        gw.client().chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        gw.client().chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "x"}], temperature=9
        )
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    response = httpx.post(f"{gw.url}/v1/chat/completions", content=b"{not json", headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    response = httpx.get(f"{gw.url}/v1/chat/completions", headers=headers)
    assert response.status_code == 405


def test_the_body_size_is_limited(upstreams, gateway) -> None:
    fake, url = upstreams("a")
    gw = gateway(routes={"gpt": _route(url)}, max_body_bytes=4096)
    big = {"model": "gpt", "messages": [{"role": "user", "content": "x" * 10_000}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{gw.url}/v1/chat/completions", json=big, headers=headers)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"

    def chunked():  # no Content-Length: the limit holds while reading
        for _ in range(10):
            yield b"x" * 1000

    response = httpx.post(f"{gw.url}/v1/chat/completions", content=chunked(), headers=headers)
    assert response.status_code == 413
    assert fake.requests == []


def test_budgets_admit_once_and_settle_once_per_request(upstreams, gateway) -> None:
    from inference_support import Behaviour

    fake, url = upstreams("a")
    fake.plan = [Behaviour(status=503), Behaviour(status=503)]  # two retries before the answer
    admission = CountingAdmission(limit=2, retry_after=7)
    gw = gateway(routes={"gpt": _route(url, retries=3)}, admission=admission)
    client = gw.client()
    client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    list(
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert caught.value.response.headers["retry-after"] == "7"
    assert "requests/min" in caught.value.message
    assert len(fake.requests) == 4  # 3 attempts, then 1: the refused request never reached it
    assert len(admission.admitted) == 2
    assert [(u.tokens_in, u.tokens_out) for u in admission.settled] == [(11, 5), (7, 3)]
    assert admission.admitted[0].route == "gpt" and admission.admitted[0].principal.id == "key:test"

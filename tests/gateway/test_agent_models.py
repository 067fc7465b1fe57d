"""Agents as models: ``model: "agent/NAME"`` through the inference gateway of a ``shopfloor serve`` app
on loopback, called with the official ``openai`` client; the run is an ordinary durable run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from gateway_support import Keys, LiveServer

from shopfloor.config import load_settings
from shopfloor.gateway import build_server


@pytest.fixture
def served(fast_runtime: None, keys: Keys, live: list[LiveServer], agent_dir: Path) -> Iterator[str]:
    """The server's URL, the runtime tests' scripted agent ``ticker`` registered with it."""
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    url = live[-1].url
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        assert api.post("/v1/agents", json={"path": str(agent_dir)}).status_code == 201
        pay = "name: pay\ninstructions: hi\nmodel: test\npermissions:\n  team: payments\n"
        assert api.post("/v1/agents", json={"spec": pay}).status_code == 201
    yield url


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def test_an_agent_answers_as_a_model_in_a_durable_run(served: str, keys: Keys) -> None:
    client = _client(served, keys.admin)
    answer = client.chat.completions.create(
        model="agent/ticker",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "ticks=2"}],
    )
    assert answer.choices[0].message.content == "done after 2 ticks"
    assert answer.choices[0].finish_reason == "stop" and answer.model == "agent/ticker"
    run_id = answer.id.removeprefix("chatcmpl-")
    with httpx.Client(base_url=served, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        run = api.get(f"/v1/runs/{run_id}").json()
        listed = [r["run_id"] for r in api.get("/v1/runs").json()["runs"]]
    assert run["status"] == "completed" and run["agent"] == "ticker"
    assert run["task"].startswith("The conversation so far:\nsystem: be brief\n")
    assert run["task"].endswith("\nticks=2")
    assert run["caller"].startswith("key:") and run_id in listed
    # /v1/models lists the agents the caller may run: the developer of team research not payments'
    assert {"agent/ticker", "agent/pay"} <= {m.id for m in client.models.list()}
    developer = {m.id for m in _client(served, keys.developer).models.list()}
    assert "agent/ticker" in developer and "agent/pay" not in developer
    with pytest.raises(openai.PermissionDeniedError, match="runs:start"):
        _client(served, keys.developer).chat.completions.create(
            model="agent/pay", messages=[{"role": "user", "content": "x"}]
        )


def test_the_earlier_messages_of_the_conversation_are_the_runs_input(served: str, keys: Keys) -> None:
    seen: list[str] = []
    messages = [
        {"role": "user", "content": "I want the ticker to run for me."},
        {"role": "assistant", "content": "How many ticks?"},
        {"role": "user", "content": [{"type": "text", "text": "ticks=1"}]},
    ]
    client = _client(served, keys.admin)
    for stream in (False, True):
        answer = client.chat.completions.create(model="agent/ticker", messages=messages, stream=stream)
        if stream:
            chunks = list(answer)
            seen.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
            run_id = chunks[0].id.removeprefix("chatcmpl-")
        else:
            seen.append(answer.choices[0].message.content)
            run_id = answer.id.removeprefix("chatcmpl-")
        with httpx.Client(base_url=served, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
            task = api.get(f"/v1/runs/{run_id}").json()["task"]
        assert task == (
            "The conversation so far:\n"
            "user: I want the ticker to run for me.\n"
            "assistant: How many ticks?\n\n"
            "The task (the last user message):\n"
            "ticks=1"
        )
    assert seen == ["done after 1 ticks", "done after 1 ticks"]


def test_a_streamed_agent_sends_its_steps_as_comments_then_the_answer(served: str, keys: Keys) -> None:
    stream = _client(served, keys.admin).chat.completions.create(
        model="agent/ticker", messages=[{"role": "user", "content": "ticks=1"}], stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "done after 1 ticks"
    assert chunks[-1].choices[0].finish_reason == "stop"
    parts = [{"type": "text", "text": "ticks=1"}, {"type": "text", "text": 7}]  # a task in parts
    body = {"model": "agent/ticker", "messages": [{"role": "user", "content": parts}], "stream": True}
    headers = {"Authorization": f"Bearer {keys.admin}"}
    raw = httpx.post(f"{served}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert raw.headers["content-type"].startswith("text/event-stream")
    steps = [line for line in raw.text.splitlines() if line.startswith(": step ")]
    assert any(line.startswith(": step run_finished") for line in steps), raw.text
    assert raw.text.index(": step ") < raw.text.index("done after 1 ticks")
    assert raw.text.endswith("data: [DONE]\n\n")


def test_an_unknown_agent_or_a_run_waiting_for_approval_is_a_clear_error(served: str, keys: Keys) -> None:
    client = _client(served, keys.admin)
    with pytest.raises(openai.NotFoundError, match="no agent 'nobody' is registered") as missing:
        client.chat.completions.create(model="agent/nobody", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.ConflictError, match="is waiting for an approval") as waiting:
        client.chat.completions.create(
            model="agent/ticker", messages=[{"role": "user", "content": "ticks=1 tool=transfer"}]
        )
    run_id = str(waiting.value.message).split("run ")[1].split(" ")[0]
    with httpx.Client(base_url=served, headers={"Authorization": f"Bearer {keys.admin}"}) as api:
        assert api.get(f"/v1/runs/{run_id}").json()["status"] == "waiting_approval"
    with pytest.raises(openai.APIError, match="is waiting for an approval"):
        list(
            client.chat.completions.create(
                model="agent/ticker",
                messages=[{"role": "user", "content": "ticks=1 tool=transfer"}],
                stream=True,
            )
        )

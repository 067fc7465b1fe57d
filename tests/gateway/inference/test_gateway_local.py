"""With no configuration, every installed embedded model is served as ``local:NAME`` (slow: llama.cpp)."""

from __future__ import annotations

import json

import pytest

from shopfloor.config import load_settings
from shopfloor.gateway.inference import route_settings
from shopfloor.models import DEFAULT_CATALOGUE

NAME = "qwen2.5-coder-0.5b"


def _install_by_link(embedded_model) -> None:
    """The session's model, linked into this test's own data dir with its install record."""
    settings = load_settings()
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / f"{NAME}.gguf").symlink_to(embedded_model(NAME))
    (settings.models_dir / f"{NAME}.json").write_text(json.dumps({"sha256": DEFAULT_CATALOGUE[NAME].sha256}))


def test_only_installed_models_are_served_by_default(embedded_model) -> None:
    assert f"local:{NAME}" not in route_settings(load_settings())
    _install_by_link(embedded_model)
    routes = route_settings(load_settings())
    assert routes[f"local:{NAME}"].upstreams[0].kind == "model"


@pytest.mark.slow
def test_the_embedded_model_answers_the_openai_client(embedded_model, gateway, real_models) -> None:
    _install_by_link(embedded_model)
    gw = gateway(serve_local_models=True)
    client = gw.client(timeout=120)
    assert f"local:{NAME}" in [m.id for m in client.models.list()]
    chunks = list(
        client.chat.completions.create(
            model=f"local:{NAME}",
            messages=[{"role": "user", "content": "Say hello in one word."}],
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 8
    assert gw.metric("shopfloor_gateway_local_queue_wait_seconds_count", {"model": f"local:{NAME}"}) == 1


@pytest.mark.slow
def test_the_embedded_model_completes_text_and_embeds(embedded_model, gateway, real_models) -> None:
    _install_by_link(embedded_model)
    gw = gateway(serve_local_models=True)
    client = gw.client(timeout=120)
    model = f"local:{NAME}"
    reply = client.completions.create(
        model=model, prompt="def add(a, b):\n    return", max_tokens=6, temperature=0
    )
    assert reply.choices[0].text.strip() and reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 6 and reply.usage.prompt_tokens > 3
    streamed = list(
        client.completions.create(
            model=model, prompt="def add(a, b):\n    return", max_tokens=6, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == reply.choices[0].text
    vectors = [e.embedding for e in client.embeddings.create(model=model, input=["cat", "tax law"]).data]
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 100 and vectors[0] != vectors[1]
    # the same text embeds the same alone as in a batch (mean-pooled, no state kept between calls)
    again = client.embeddings.create(model=model, input="cat", encoding_format="float").data[0].embedding
    assert again == pytest.approx(vectors[0], rel=1e-4, abs=1e-4)
    # completions and embeddings wait in the model's one queue, like chat
    assert gw.metric("shopfloor_gateway_local_queue_wait_seconds_count", {"model": model}) == 4

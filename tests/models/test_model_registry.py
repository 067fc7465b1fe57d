"""Resolving model references, and the blocking of real model requests in tests."""

from __future__ import annotations

import pytest

from shopfloor.config import Settings
from shopfloor.errors import ModelRequestsBlocked, UnknownModelError
from shopfloor.models import (
    FunctionModel,
    Message,
    ModelRequest,
    OpenAIModel,
    TestModel,
    model_providers,
    resolve_model,
)

REQUEST = ModelRequest(messages=(Message(role="user", content="hi"),))


def shout(request: ModelRequest) -> str:
    return request.messages[-1].content.upper()


def test_builtin_providers(settings: Settings) -> None:
    assert {"test", "function", "openai", "local"} <= set(model_providers().names())
    assert isinstance(resolve_model("test", settings), TestModel)
    assert isinstance(resolve_model("openai:gpt-4o-mini", settings), OpenAIModel)
    assert resolve_model("openai:gpt-4o-mini", settings).ref == "openai:gpt-4o-mini"


def test_unknown_prefix_lists_the_known_ones(settings: Settings) -> None:
    with pytest.raises(
        UnknownModelError, match=r"unknown model reference 'antropic:x': expected one of .*'openai:NAME'"
    ):
        resolve_model("antropic:x", settings)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("openai:", "needs a model name"),
        ("local:", "needs a catalogue name or a .gguf path"),
        ("function:nomodule", "expected function:MODULE:CALLABLE"),
        ("function:no.such.module:f", "cannot import f from no.such.module"),
    ],
)
def test_malformed_references(settings: Settings, ref: str, message: str) -> None:
    with pytest.raises(UnknownModelError, match=message):
        resolve_model(ref, settings)


async def test_function_reference_imports_the_callable(settings: Settings) -> None:
    model = resolve_model(f"function:{__name__}:shout", settings)
    assert isinstance(model, FunctionModel)
    assert (await model.request(REQUEST)).text == "HI"


async def test_registered_provider_by_factory_and_by_path(settings: Settings) -> None:
    providers = model_providers()
    providers.register("echo", lambda name, s: FunctionModel(shout, name=name))
    providers.register("scripted", "shopfloor.models._test:make_test_model")
    assert "echo" in providers and "scripted" in providers
    assert (await resolve_model("echo:x", settings, providers).request(REQUEST)).text == "HI"
    assert isinstance(resolve_model("scripted", settings, providers), TestModel)
    # Only that registry has them: nothing was added for the rest of the process.
    assert "echo" not in model_providers()
    with pytest.raises(UnknownModelError, match="'echo:x'"):
        resolve_model("echo:x", settings)


async def test_real_requests_are_blocked_without_the_fixture() -> None:
    model = OpenAIModel("m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ModelRequestsBlocked, match="openai:m"):
        await model.request(REQUEST)
    with pytest.raises(ModelRequestsBlocked):
        async for _ in model.stream(REQUEST):
            pass


async def test_test_models_are_never_blocked() -> None:
    assert (await TestModel().request(REQUEST)).text.startswith("test model answer")
    assert (await FunctionModel(outputs=["ok"]).request(REQUEST)).text == "ok"

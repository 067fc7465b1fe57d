"""Model providers by reference prefix (``openai:gpt-4o``, ``local:qwen2.5-coder-0.5b``, ``test``).

Providers are given as ``module:attribute`` paths and imported on first use, so
``llama_cpp`` is loaded only when a local model is asked for. ``model_providers()``
returns a fresh registry of the built-in ones; the composition root holds one and
passes it to ``resolve_model``.
"""

from __future__ import annotations

from collections.abc import Callable

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.errors import UnknownModelError
from shopfloor.models._base import Model

__all__ = ["ProviderFactory", "model_providers", "resolve_model"]

ProviderFactory = Callable[[str, Settings], Model]


def model_providers() -> Registry[ProviderFactory]:
    """The built-in providers: ``test``, ``function``, ``openai``, ``local``."""
    return Registry(
        "model provider",
        {
            "test": "shopfloor.models._test:make_test_model",
            "function": "shopfloor.models._function:make_function_model",
            "openai": "shopfloor.models._openai:make_openai_model",
            "local": "shopfloor.models._local:make_local_model",
        },
    )


def resolve_model(ref: str, settings: Settings, providers: Registry[ProviderFactory] | None = None) -> Model:
    """Make the model a reference string names, with ``providers`` (the built-in ones by default)."""
    providers = providers if providers is not None else model_providers()
    prefix, _, name = ref.partition(":")
    if prefix not in providers:
        raise UnknownModelError(
            f"unknown model reference {ref!r}: expected one of "
            + ", ".join(f"'{p}:NAME'" if p not in ("test",) else f"'{p}'" for p in sorted(providers.names()))
        )
    return providers.get(prefix)(name, settings)

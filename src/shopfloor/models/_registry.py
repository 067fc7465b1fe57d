"""Model providers by reference prefix (``openai:gpt-4o``, ``local:qwen2.5-coder-0.5b``, ``test``).

Providers are registered as ``module:attribute`` strings and imported on first
use, so ``llama_cpp`` is loaded only when a local model is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from shopfloor.config import Settings
from shopfloor.errors import UnknownModelError
from shopfloor.models._base import Model

__all__ = ["ProviderFactory", "provider_names", "register_provider", "resolve_model"]

ProviderFactory = Callable[[str, Settings], Model]

_PROVIDERS: dict[str, str | ProviderFactory] = {
    "test": "shopfloor.models._test:make_test_model",
    "function": "shopfloor.models._function:make_function_model",
    "openai": "shopfloor.models._openai:make_openai_model",
    "local": "shopfloor.models._local:make_local_model",
}


def register_provider(prefix: str, factory: str | ProviderFactory) -> None:
    """Register a provider for ``prefix:NAME`` references (a factory or its ``module:attr`` path)."""
    _PROVIDERS[prefix] = factory


def provider_names() -> list[str]:
    return sorted(_PROVIDERS)


def _load(prefix: str) -> ProviderFactory:
    entry = _PROVIDERS[prefix]
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        factory: ProviderFactory = getattr(importlib.import_module(module_name), attr)
        _PROVIDERS[prefix] = factory
        return factory
    return entry


def resolve_model(ref: str, settings: Settings) -> Model:
    """Make the model a reference string names."""
    prefix, _, name = ref.partition(":")
    if prefix not in _PROVIDERS:
        raise UnknownModelError(
            f"unknown model reference {ref!r}: expected one of "
            + ", ".join(f"'{p}:NAME'" if p not in ("test",) else f"'{p}'" for p in provider_names())
        )
    return _load(prefix)(name, settings)

"""Model providers by reference prefix (``openai:gpt-4o``, ``local:qwen2.5-coder-0.5b``, ``test``).

Providers are given as ``module:attribute`` paths and imported on first use, so
``llama_cpp`` is loaded only when a local model is asked for. ``model_providers()``
returns a fresh registry of the built-in ones; the composition root holds one and
passes it to ``resolve_model``.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.errors import UnknownModelError
from shopfloor.models._base import Model
from shopfloor.models._weights import LoadedWeights

__all__ = ["ProviderFactory", "model_providers", "resolve_model"]

ProviderFactory = Callable[[str, Settings], Model]


def model_providers(weights: LoadedWeights | None = None) -> Registry[ProviderFactory]:
    """The built-in providers: ``test``, ``function``, ``openai``, ``local`` (its models loading their
    weights into ``weights``, shared by every model made here; each model has its own without)."""
    local: ProviderFactory | str = "shopfloor.models._local:make_local_model"
    if weights is not None:
        local = _LocalProvider(weights)
    return Registry(
        "model provider",
        {
            "test": "shopfloor.models._test:make_test_model",
            "function": "shopfloor.models._function:make_function_model",
            "openai": _OpenAIProvider(),
            "local": local,
        },
    )


class _OpenAIProvider:
    """``openai:NAME`` models sharing one TLS context (loading the CA bundle costs tens of ms, which a
    context per model paid on every run). httpx and the module are imported at the first model."""

    def __init__(self) -> None:
        self._tls: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def __call__(self, name: str, settings: Settings) -> Model:
        import httpx

        from shopfloor.models._openai import make_openai_model

        with self._lock:
            if self._tls is None:
                self._tls = httpx.create_ssl_context()
        return make_openai_model(name, settings, tls=self._tls)


class _LocalProvider:
    """``local:NAME`` with the weights of one owner (llama.cpp is imported at the first load)."""

    def __init__(self, weights: LoadedWeights) -> None:
        self.weights = weights

    def __call__(self, name: str, settings: Settings) -> Model:
        from shopfloor.models._local import make_local_model

        return make_local_model(name, settings, weights=self.weights)


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

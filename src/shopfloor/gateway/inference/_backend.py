"""The ``Backend`` seam: one replica of a route, whatever serves it (an OpenAI-compatible server, an
embedded model), registered by kind (``gateway_backends()``).

A backend answers one attempt; retries, fallbacks, timeouts and circuit breaking are the dispatcher's
(``_dispatch.py``), the same for every kind. Both methods take the request body as a dict whose
``model`` the backend replaces with its own, and raise ``UpstreamError`` (``retryable`` or not) on
failure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from shopfloor._registry import Registry
from shopfloor.config import Settings, UpstreamSettings

__all__ = ["Backend", "BackendContext", "BackendFactory", "Endpoint", "gateway_backends"]

#: the OpenAI API path below ``/v1`` an attempt is for
Endpoint = Literal["chat/completions", "completions", "embeddings"]


class Backend(ABC):
    """One upstream replica."""

    #: names the replica in metrics, spans and metering records
    name: str

    @abstractmethod
    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> bytes:
        """The whole JSON response body of a non-streamed request."""

    @abstractmethod
    def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncIterator[list[bytes]]:
        """The ``data`` of the SSE events of a streamed request, in batches of those that arrived
        together (passed on to the client in one write), ``[DONE]`` left out; raises
        ``UpstreamError`` if the stream ends before ``[DONE]`` (a cut stream is never a short answer).
        Closing the iterator early ends the upstream request at once."""

    async def start(self) -> None:  # noqa: B027 - most backends hold nothing to open
        """Open pools; called from the server's startup, inside its event loop."""

    async def aclose(self) -> None:  # noqa: B027
        """Close what ``start`` opened."""


@dataclass(frozen=True, kw_only=True)
class BackendContext:
    """What a backend factory may use besides its own settings."""

    settings: Settings
    #: the value of a ``secret:NAME`` reference (the secret store's lookup); None: references are refused
    resolve_secret: Callable[[str], str] | None
    #: makes a Shopfloor model from a reference (``local:NAME``, ``function:...``)
    make_model: Callable[[str], Any]
    #: shared by the backends of one gateway (one HTTP connection pool)
    shared: dict[str, Any]
    #: the gateway's Prometheus metrics (queues of embedded models report here)
    metrics: Any


BackendFactory = Callable[[UpstreamSettings, BackendContext], Backend]


def gateway_backends() -> Registry[BackendFactory]:
    """The built-in backend kinds: ``openai`` (any OpenAI-compatible server) and ``model`` (a Shopfloor
    model reference: the embedded llama.cpp models, test and function models)."""
    return Registry(
        "gateway backend",
        {
            "openai": "shopfloor.gateway.inference._upstream:make_openai_backend",
            "model": "shopfloor.gateway.inference._local:make_model_backend",
        },
    )

"""The contract between ``shopfloor serve``'s application and the sub-applications it dispatches to.

The inference gateway (``/v1/chat/completions`` and friends) and, later, the MCP and A2A endpoints are
plain ASGI applications that own a fixed set of paths. The server matches a request's path against
``paths`` first and hands it over untouched, so a sub-application's hot path pays for no framework
routing or middleware it does not need; authentication is the sub-application's own first step, with
the ``Authenticator`` the server gives it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shopfloor.config import Settings

__all__ = [
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "PolicySwap",
    "SubApp",
    "client_address",
    "request_header",
    "send_json",
]

ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class PolicySwap:
    """One part of a server's changed GitOps policy, built and ready: ``commit`` serves it (it cannot
    fail: every part is built before any is committed); ``abandon`` drops what it built where another
    part could not be built."""

    commit: Callable[[], None]
    abandon: Callable[[], Awaitable[None]] | None = None


class SubApp(ABC):
    """An ASGI application that owns ``paths`` (exact matches) under the server."""

    #: the exact request paths this application answers (e.g. ``/v1/chat/completions``)
    paths: frozenset[str]
    #: path prefixes it answers whole (a page tree such as the console's ``/console/``), after the
    #: exact paths of every sub-application; not in the OpenAPI document (they are not API routes)
    prefixes: frozenset[str] = frozenset()

    @abstractmethod
    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        """Answer one HTTP request (``scope["type"] == "http"``)."""

    @abstractmethod
    def openapi_paths(self) -> dict[str, Any]:
        """The OpenAPI 3.1 path items of ``paths``, merged into the server's ``/openapi.json``."""

    async def startup(self) -> None:  # noqa: B027 - a sub-application with nothing to start overrides nothing
        """Called once when the server starts (open pools, start background flushers)."""

    async def shutdown(self) -> None:  # noqa: B027
        """Called once when the server stops: flush what is buffered, close pools."""

    async def prepare_policy(self, settings: Settings) -> PolicySwap | None:
        """This application's part of a changed GitOps policy (the roles, bindings, limits, routes and
        aliases of ``settings``), built but not served yet; None where it serves nothing of it. Raises
        (ConfigError) where the part cannot be built: the server then keeps the policy it has."""
        del settings
        return None


def request_header(scope: ASGIScope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def client_address(scope: ASGIScope) -> str:
    """``HOST:PORT`` of the peer, for the audit log."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


async def send_json(
    send: ASGISend, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A whole JSON answer."""
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})

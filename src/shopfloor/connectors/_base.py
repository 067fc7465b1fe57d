"""What every connector is: a named data source whose tools an agent may use.

A connector kind (``mcp``, ``sql``) is a ``ConnectorFactory`` in the ``connector_kinds()``
registry; the per-worker ``Connectors`` pool makes one connector per entry of an agent's
``connectors:`` and keeps it across runs. Values written ``secret:NAME`` are resolved by the
``SecretResolver`` the pool is given, at connection time, and never enter a log or an error.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shopfloor._registry import Registry
from shopfloor.errors import ConnectorError, SecretError
from shopfloor.spec import SECRET_PREFIX, ConnectorSpec
from shopfloor.tools import Tool

__all__ = [
    "Connector",
    "ConnectorFactory",
    "SecretResolver",
    "Secrets",
    "connector_kinds",
    "tool_name",
]

#: the value of a secret by its name; raises SecretError when there is none
SecretResolver = Callable[[str], str]
#: makes a connector from its spec and the secrets it may resolve
ConnectorFactory = Callable[[ConnectorSpec, "Secrets"], "Connector"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(connector: str, tool: str) -> str:
    """The agent's name for a connector's tool: ``CONNECTOR__TOOL``, characters a tool name may not
    hold replaced by ``_``, at most 64 characters (a connector name has at most 31)."""
    return f"{connector}__{_UNSAFE.sub('_', tool)}"[:64]


class Secrets:
    """Resolves ``secret:NAME`` values and remembers each resolved value, so that text a connector
    passes on (a server's stderr, an error message) can be scrubbed of them."""

    def __init__(self, resolver: SecretResolver | None) -> None:
        self._resolver = resolver
        self._seen: set[str] = set()

    def resolve(self, value: str, *, where: str) -> str:
        """``value`` itself, or the secret it names; ``where`` says which setting, for the error."""
        if not value.startswith(SECRET_PREFIX):
            return value
        name = value.removeprefix(SECRET_PREFIX)
        if self._resolver is None:
            raise ConnectorError(f"{where} names secret {name!r}, but no secret store is configured")
        try:
            secret = self._resolver(name)
        except SecretError as exc:
            raise ConnectorError(f"{where}: {exc}") from None
        if secret:
            self._seen.add(secret)
        return secret

    def resolve_all(self, values: Mapping[str, str], *, where: str) -> dict[str, str]:
        return {key: self.resolve(value, where=f"{where}.{key}") for key, value in values.items()}

    def scrub(self, text: str) -> str:
        """``text`` with every secret resolved so far replaced by ``***``."""
        for secret in sorted(self._seen, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


class Connector(ABC):
    """One data source: connects lazily, offers tools, closes."""

    def __init__(self, spec: ConnectorSpec, secrets: Secrets) -> None:
        self.spec = spec
        self.name = spec.name
        self.secrets = secrets

    @abstractmethod
    async def tools(self) -> list[Tool]:
        """The tools this connector offers the agent (before the spec's allow-list)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the connector holds (a server process, connections)."""

    def allowed(self, tools: Iterable[Tool], offered: Callable[[Tool], str]) -> list[Tool]:
        """``tools`` whose offered name (the server's own name) is in the spec's allow-list;
        an allow-list entry the connector does not offer is an error, as a typo would be."""
        tools = list(tools)
        if self.spec.tools is None:
            return tools
        names = {offered(tool) for tool in tools}
        missing = sorted(set(self.spec.tools) - names)
        if missing:
            raise ConnectorError(
                f"connector {self.name!r}: tools {', '.join(missing)} are in its allow-list but it "
                f"offers no such tool; it offers: {', '.join(sorted(names)) or 'none'}"
            )
        return [tool for tool in tools if offered(tool) in self.spec.tools]


def connector_kinds() -> Registry[ConnectorFactory]:
    """The connector kinds by the key that selects them in a spec (``mcp``, ``sql``, ``a2a``)."""
    return Registry(
        "connector kind",
        {
            "mcp": "shopfloor.connectors._mcp:McpConnector",
            "sql": "shopfloor.connectors._sql:SqlConnector",
            "a2a": "shopfloor.connectors._a2a:A2AConnector",
        },
    )


def kind_of(spec: ConnectorSpec) -> str:
    """Which key of the spec is set: the connector's kind."""
    dumped: dict[str, Any] = spec.model_dump(include={"mcp", "sql", "docs", "a2a"}, exclude_none=True)
    return next(iter(dumped))

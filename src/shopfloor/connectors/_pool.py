"""The connectors of one worker: one per distinct connector spec, kept across runs, closed together.

Two runs of an agent (or two agents) that declare the same connector share its MCP session or
database settings; a connector whose spec changed is a different one. ``build_connectors`` is what
the composition root calls, with the secret store's resolver.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Sequence

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.connectors._base import (
    Connector,
    ConnectorFactory,
    SecretResolver,
    Secrets,
    connector_kinds,
    kind_of,
)
from shopfloor.errors import ConnectorError
from shopfloor.spec import ConnectorSpec, canonical_json
from shopfloor.tools import Tool

__all__ = ["Connectors", "build_connectors"]


class Connectors:
    """A worker's connectors, made on first use from the ``connector_kinds()`` registry."""

    def __init__(
        self, *, secrets: SecretResolver | None, kinds: Registry[ConnectorFactory] | None = None
    ) -> None:
        self.secrets = Secrets(secrets)
        self.kinds = kinds or connector_kinds()
        self._open: dict[str, Connector] = {}
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _check_loop(self) -> None:
        # Sessions, their locks and server processes belong to the event loop that started them.
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise ConnectorError(
                "this connector pool serves another event loop: make one pool per worker loop"
            )

    def connector(self, spec: ConnectorSpec) -> Connector:
        key = hashlib.sha256(canonical_json(spec.model_dump(mode="json"))).hexdigest()
        found = self._open.get(key)
        if found is None:
            found = self.kinds.get(kind_of(spec))(spec, self.secrets)
            self._open[key] = found
        return found

    async def tools(self, specs: Sequence[ConnectorSpec]) -> list[Tool]:
        """The tools of every connector in ``specs``, allow-lists applied; a connector that cannot
        be reached fails with ConnectorError naming it (a run should not start without its data)."""
        self._check_loop()
        tools: list[Tool] = []
        for spec in specs:
            async with self._lock:
                connector = self.connector(spec)
            try:
                tools.extend(await connector.tools())
            except ConnectorError as exc:
                raise ConnectorError(f"connector {spec.name!r}: {exc}") from None
        names = [tool.name for tool in tools]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConnectorError(f"connector tools share a name after renaming: {', '.join(repeated)}")
        return tools

    async def aclose(self) -> None:
        """Stop every server and release every connection."""
        opened, self._open = list(self._open.values()), {}
        await asyncio.gather(*(connector.aclose() for connector in opened), return_exceptions=True)


def build_connectors(
    settings: Settings,
    *,
    secrets: SecretResolver | None,
    kinds: Registry[ConnectorFactory] | None = None,
) -> Connectors:
    """The worker's connector pool; ``secrets`` resolves ``secret:NAME`` values (the secret store).
    Document collections live where the settings say (``[docs] url``), so the ``docs`` kind is bound
    to that here."""
    kinds = (kinds or connector_kinds()).copy()
    if "docs" not in kinds:
        kinds.register("docs", functools.partial(_docs_connector, settings=settings))
    return Connectors(secrets=secrets, kinds=kinds)


def _docs_connector(spec: ConnectorSpec, secrets: Secrets, *, settings: Settings) -> Connector:
    from shopfloor.connectors._docs import DocsConnector
    from shopfloor.connectors.docs import DocCollections

    return DocsConnector(spec, secrets, collections=DocCollections.from_settings(settings))

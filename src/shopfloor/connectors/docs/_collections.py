"""Where a process's document collections live: ``[docs] url`` of the settings, by default one SQLite
file per collection under ``$SHOPFLOOR_HOME/docs`` (``file://``), or a PostgreSQL database
(``postgresql://``); the command line and the ``docs`` connector open collections through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.connectors.docs._embed import Embedder
from shopfloor.connectors.docs._index import DocIndex
from shopfloor.connectors.docs._rank import Ranking
from shopfloor.connectors.docs._store import DocStore, check_collection_name, doc_stores
from shopfloor.errors import ConfigError, ConnectorError

__all__ = ["DocCollections"]


@dataclass(frozen=True, kw_only=True)
class DocCollections:
    #: ``file:///DIR`` or ``postgresql://...`` (its password never shown: ``where``)
    url: str = field(repr=False)
    stores: Registry[type[DocStore]] = field(default_factory=doc_stores, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> DocCollections:
        return cls(url=settings.docs.url or f"file://{settings.home / 'docs'}")

    @classmethod
    def under(cls, home: Path) -> DocCollections:
        """The default: one SQLite file per collection in ``home/docs``."""
        return cls(url=f"file://{home.absolute() / 'docs'}")

    def _kind(self) -> type[DocStore]:
        try:
            scheme = urlsplit(self.url).scheme
        except ValueError as exc:  # the URL itself is not repeated: it may hold a password
            raise ConfigError(f"[docs] url: not a URL ({exc})") from None
        if scheme not in self.stores:
            raise ConfigError(
                f"[docs] url: a {scheme or 'bare'!r} URL names no document store; "
                f"write one of {', '.join(s + '://' for s in self.stores.names())}"
            )
        return self.stores.get(scheme)

    def names(self) -> list[str]:
        """The collections there, sorted."""
        return self._kind().names(self.url)

    def open(
        self, name: str, embedder: Embedder, *, create: bool = False, ranking: Ranking | None = None
    ) -> DocIndex:
        """The collection ``name``; with ``create``, made if it is new (else an error saying how)."""
        check_collection_name(name)
        kind = self._kind()
        if not create and name not in kind.names(self.url):
            raise ConnectorError(
                f"no document collection {name!r}; add documents with `shopfloor docs add {name} PATH`"
            )
        return DocIndex(kind.open(self.url, name, embedder=embedder.name), embedder, ranking=ranking)

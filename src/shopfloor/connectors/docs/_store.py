"""Where a collection's documents, chunks and vectors are kept: the ``DocStore`` ABC and its backends by
URL scheme (``doc_stores()``: ``file://DIR``, one SQLite file per collection, the embedded default;
``postgresql://``, tables keyed by collection).

A store keeps rows and answers the lookups only its database can: the BM25-like ranking of its full
text index, and the chunks nearest a vector by cosine (SQLite: sqlite-vec; PostgreSQL: pgvector where
the server has it, else numpy in the client) with the vectors of given chunks. Everything above (parsing,
chunking, embedding, incremental ingest, pruning, fusion, the re-rank, hits) is ``DocIndex``'s, the same
for every backend. A store also keeps the collection's ingest records (``_ingests.py``): their
versions are taken inside its writers' lock, so two processes recording at once get two.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

from shopfloor._registry import Registry
from shopfloor.connectors.docs._chunk import Chunk
from shopfloor.connectors.docs._ingests import IngestRecord, IngestSource
from shopfloor.connectors.docs._rank import Ranking
from shopfloor.errors import ConfigError

__all__ = [
    "DocStore",
    "DocumentChunks",
    "Passage",
    "Stored",
    "StoredDocument",
    "check_collection_name",
    "doc_stores",
]

_COLLECTION = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")

#: what storing a document did: a new source, a changed one, or one another writer stored meanwhile
Stored = Literal["added", "replaced", "unchanged"]
#: a chunk as a hit shows it: (source, title, heading, text)
Passage = tuple[str, str, str, str]
#: a whole document as a resource read shows it: (source, title, [(chunk id, heading, text), ...] in order)
DocumentChunks = tuple[str, str, list[tuple[int, str, str]]]


def check_collection_name(name: str) -> str:
    if not _COLLECTION.match(name):
        raise ConfigError(f"collection {name[:80]!r}: lower-case letters, digits, '-' and '_' (at most 63)")
    return name


@dataclass(frozen=True, kw_only=True)
class StoredDocument:
    """A parsed document with its chunks' vectors (float32 bytes, one per chunk; none while it waits
    for them)."""

    source: str
    digest: str
    title: str
    chunks: list[Chunk]
    vectors: list[bytes] = field(default_factory=list)


class DocStore(ABC):
    """One collection in its database. Blocking and safe to share between threads; several processes
    may write one collection at once: a document is stored by one of them, the other finds it
    ``unchanged``."""

    #: the collection's name
    name: str
    #: the embedding model its vectors are from
    embedder: str
    #: where it is, for messages (a password hidden)
    where: str
    #: what searches its vectors, as ``stats`` shows it: ``sqlite-vec``, ``pgvector`` or ``client``
    vectors: str

    @classmethod
    @abstractmethod
    def open(cls, url: str, name: str, *, embedder: str) -> DocStore:
        """The collection ``name`` at ``url`` (a store URL of this backend); made if it is new, its
        vectors then recorded as ``embedder``'s."""

    @classmethod
    @abstractmethod
    def names(cls, url: str) -> list[str]:
        """The collections at ``url``, sorted."""

    @abstractmethod
    def put(self, doc: StoredDocument) -> Stored:
        """Store ``doc`` in one transaction, its older version's chunks replaced; ``unchanged`` (nothing
        written) when the stored one has the same digest (another writer got there first)."""

    @abstractmethod
    def remove_except(self, keep: Collection[str]) -> list[str]:
        """Remove every document whose source is not in ``keep``, in one transaction; those removed."""

    @abstractmethod
    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""

    @abstractmethod
    def size(self) -> int:
        """Bytes the collection takes in its database."""

    @abstractmethod
    def version(self) -> object:
        """A value that changes with every write to the collection, by any process."""

    @abstractmethod
    def nearest(self, vector: bytes, limit: int) -> list[tuple[int, float]]:
        """The ``limit`` chunks whose vectors are nearest ``vector`` (float32, the embedder's dimension),
        best first: (chunk id, cosine)."""

    @abstractmethod
    def vectors_of(self, chunk_ids: Sequence[int]) -> dict[int, bytes]:
        """Chunk id -> its vector (float32 bytes), for those of ``chunk_ids`` still stored."""

    @abstractmethod
    def bm25(self, terms: Sequence[str], ranking: Ranking, limit: int) -> list[int]:
        """The best ``limit`` chunk ids whose text or heading has any of ``terms`` (plain words, never
        query syntax), best first, by the full text index's ranking under ``ranking``'s weights."""

    @abstractmethod
    def documents_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        """Chunk id -> document id, for those of ``chunk_ids`` still stored."""

    @abstractmethod
    def passages(self, chunk_ids: Sequence[int]) -> dict[int, Passage]:
        """Chunk id -> its passage, for those of ``chunk_ids`` still stored."""

    @abstractmethod
    def document(self, chunk_id: int) -> DocumentChunks | None:
        """The document holding ``chunk_id`` with all its chunks in order, or None when it is gone."""

    @abstractmethod
    def digests(self) -> dict[str, str]:
        """Every stored document's source -> its sha256."""

    @abstractmethod
    def add_ingest(
        self,
        *,
        at: float,
        source: IngestSource,
        added: int,
        replaced: int,
        unchanged: int,
        removed: int,
        failed: int,
    ) -> IngestRecord:
        """Record an ingest in one transaction (serialised with the writers): the next index version
        (1, 2, ...) and the digests of the documents stored now."""

    @abstractmethod
    def ingests(self, limit: int | None = None) -> list[IngestRecord]:
        """The recorded ingests, newest first (at most ``limit``)."""

    @abstractmethod
    def close(self) -> None: ...


def doc_stores() -> Registry[type[DocStore]]:
    """The collection backends by URL scheme, imported at first use (psycopg only for PostgreSQL)."""
    postgres = "shopfloor.connectors.docs._pg_store:PostgresDocStore"
    return Registry(
        "document store",
        {
            "file": "shopfloor.connectors.docs._sqlite_store:SqliteDocStore",
            "postgresql": postgres,
            "postgres": postgres,
            "postgresql+psycopg": postgres,
        },
    )

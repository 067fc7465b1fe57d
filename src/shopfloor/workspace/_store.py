"""The storage backend ABC and the registry that picks a backend by URL scheme (``store_backends()``).

A backend stores two things: immutable objects under string keys (written once,
idempotently, because keys are content hashes) and a few mutable *refs* updated only
by compare-and-swap. Backends are blocking; the workspace layer calls them from a
worker thread so the event loop never waits on disk or network.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from shopfloor._registry import Registry
from shopfloor.errors import ConfigError, WorkspaceError

__all__ = [
    "CHUNK",
    "Exactly",
    "ObjectStore",
    "Readable",
    "RefValue",
    "StoredObject",
    "open_store",
    "store_backends",
    "store_schemes",
]

#: how much of a large object is held in memory at once when it is streamed
CHUNK = 1 << 20


class Readable(Protocol):
    """What ``put_file`` reads: a binary stream that can start over (an S3 client reads a body
    once for its checksum, then again to send it)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


class Exactly:
    """``source``, checked to give exactly ``size`` bytes: the backends store through this, so a
    source that ends early or runs long raises before a short or long object is kept (and before
    an S3 request is sent with a length the body does not match)."""

    def __init__(self, source: Readable, size: int, key: str) -> None:
        self._source = source
        self._size = size
        self._key = key
        self._done = source.tell()

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self._done += len(data)
        if self._done > self._size:
            raise WorkspaceError(
                f"object {self._key}: its source gave more than the {self._size} bytes announced"
            )
        if not data and size != 0 and self._done < self._size:
            raise WorkspaceError(
                f"object {self._key}: its source ended after {self._done} of the {self._size} bytes announced"
            )
        return data

    def seek(self, offset: int, whence: int = 0, /) -> int:
        self._done = self._source.seek(offset, whence)
        return self._done

    def tell(self) -> int:
        return self._done


@dataclass(frozen=True, kw_only=True)
class RefValue:
    """A ref's value and the opaque token that a compare-and-swap must present."""

    value: str
    token: str


@dataclass(frozen=True, kw_only=True)
class StoredObject:
    key: str
    size: int
    mtime: float


class ObjectStore(ABC):
    """Objects by key plus refs by name, with atomic compare-and-swap on refs."""

    url: str

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, options: dict[str, str]) -> ObjectStore:
        """Open the store that ``url`` names; ``options`` are its query parameters."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (a reader sees all of it or nothing); idempotent."""

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        for key, data in items:
            self.put(key, data)

    @abstractmethod
    def put_file(self, key: str, source: Readable, size: int) -> None:
        """Store the ``size`` bytes ``source`` yields under ``key``, reading ``CHUNK`` bytes at a time,
        so an object of any size costs bounded memory. Atomic and idempotent like ``put``: when
        ``source`` raises or yields another size, nothing is left under ``key``."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; WorkspaceNotFoundError if there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Objects whose key starts with ``prefix``, in no particular order."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> int:
        """Delete objects (missing ones are ignored); return how many were deleted."""

    @abstractmethod
    def get_ref(self, name: str) -> RefValue | None: ...

    @abstractmethod
    def set_ref(self, name: str, value: str, *, expected: RefValue | None) -> RefValue:
        """Set ``name`` to ``value`` if it still holds ``expected`` (None: if it does not exist).

        Raises WorkspaceConflictError when another writer got there first.
        """

    @abstractmethod
    def delete_ref(self, name: str) -> None: ...

    @abstractmethod
    def list_refs(self, prefix: str) -> dict[str, str]:
        """Every ref whose name starts with ``prefix``, with its value."""

    def local_path(self, key: str) -> Path | None:
        """Where the backend keeps the object as a local file, if it does (materialise copies from it).

        The path is not checked: it exists when the object does.
        """
        return None

    def collect_garbage(self, older_than: float) -> int:
        """Remove backend leftovers such as temporary files of writers killed mid-write; return how many."""
        return 0

    def close(self) -> None:  # noqa: B027  (most backends hold nothing to release)
        """Release connections and files."""

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def store_backends() -> Registry[type[ObjectStore]]:
    """The backends by URL scheme, each imported when first opened (``boto3`` only for ``s3://``)."""
    return Registry(
        "workspace store",
        {
            "file": "shopfloor.workspace._file:FileStore",
            "sqlite": "shopfloor.workspace._sql:SqlStore",
            "postgresql": "shopfloor.workspace._sql:SqlStore",
            "postgres": "shopfloor.workspace._sql:SqlStore",
            "s3": "shopfloor.workspace._s3:S3Store",
        },
    )


def store_schemes() -> list[str]:
    return sorted(store_backends().names())


def open_store(url: str, backends: Registry[type[ObjectStore]] | None = None) -> ObjectStore:
    """Open the workspace store at ``url`` (``file:///dir``, ``sqlite:///file.db``, ``postgresql://...``,
    ``s3://bucket/prefix``) with the backend that ``backends`` (the built-in ones by default) has for
    its scheme."""
    parts = urlsplit(url)
    backends = backends if backends is not None else store_backends()
    if parts.scheme not in backends:
        raise ConfigError(
            f"workspace store URL {url!r}: unknown scheme {parts.scheme!r}; use one of "
            + ", ".join(f"{s}://" for s in sorted(backends.names()))
        )
    cls: Any = backends.get(parts.scheme)
    options = dict(parse_qsl(parts.query))
    store: ObjectStore = cls.from_url(url, options)
    return store


def flag(options: dict[str, str], name: str, default: bool) -> bool:
    """A boolean URL option (``?fsync=1``); a wrong value is a clear error, not a silent default."""
    raw = options.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"workspace store option {name}={raw!r}: expected true or false")

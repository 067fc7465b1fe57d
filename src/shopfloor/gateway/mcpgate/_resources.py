"""``DocResources``: the document collections as MCP resources of the gateway, read-only.

URIs (``shopfloor-docs`` scheme; ``ID`` is a chunk id, as ``NAME__retrieve`` and ``docs search`` give it):

- ``shopfloor-docs://COLLECTION``: the collection (documents, chunks, its index version and commit);
- ``shopfloor-docs://COLLECTION/chunk/ID``: one passage;
- ``shopfloor-docs://COLLECTION/document/ID``: the whole document holding that chunk.

``resources/list`` gives the first, ``resources/templates/list`` the other two per collection, both a
page of ``page`` collections at a time (the cursor is an offset into the sorted names the principal may
read). A read returns Markdown cut at ``max_chars`` (``_meta.truncated`` says so) with the index version
it was read at (``_meta.index``). Who may read which collection is the gateway's to decide
(``workspaces:read``, as ``shopfloor docs search``); a URI is checked here first, so a malformed one,
a name no collection may have (``..``, ``%2e``), a non-integer or too large id is an error saying what
is wrong, before any store is opened.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import mcp_types as types
from mcp.shared.exceptions import MCPError

from shopfloor.errors import ShopfloorError

if TYPE_CHECKING:  # (the retrieval extra: the gateway offers no resources without it)
    from shopfloor.connectors.docs import DocCollections, DocIndex, Embedder, Reading

__all__ = ["DOCS_SCHEME", "READ_PERMISSION", "DocResources", "DocUri", "parse_doc_uri"]

DOCS_SCHEME = "shopfloor-docs"
#: the permission a principal needs on a collection (``workspaces`` of its team) to list and read it
READ_PERMISSION = "workspaces:read"
#: JSON-RPC error code of an unknown resource (the MCP specification's)
RESOURCE_NOT_FOUND = -32002
_PREFIX = f"{DOCS_SCHEME}://"
_MAX_URI = 512
_ID = re.compile(r"^[0-9]{1,18}\Z")
_FORMS = f"{_PREFIX}COLLECTION, {_PREFIX}COLLECTION/chunk/ID or {_PREFIX}COLLECTION/document/ID"

UriKind = Literal["collection", "chunk", "document"]


@dataclass(frozen=True, kw_only=True)
class DocUri:
    collection: str
    kind: UriKind
    chunk_id: int | None = None

    @property
    def uri(self) -> str:
        base = f"{_PREFIX}{self.collection}"
        return base if self.chunk_id is None else f"{base}/{self.kind}/{self.chunk_id}"


def _invalid(uri: str, why: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, f"resource {uri[:120]!r}: {why}")


def parse_doc_uri(uri: str) -> DocUri:
    """``uri`` as a collection, chunk or document address; else an MCP invalid-params error saying
    what is wrong with it."""
    from shopfloor.connectors.docs import check_collection_name

    if len(uri) > _MAX_URI:
        raise _invalid(uri, f"longer than {_MAX_URI} characters")
    if not uri.startswith(_PREFIX):
        raise _invalid(uri, f"not a {_PREFIX} URI; write {_FORMS}")
    parts = uri[len(_PREFIX) :].split("/")
    if parts[-1] == "" and len(parts) == 2:
        parts = parts[:1]
    try:
        collection = check_collection_name(parts[0])
    except ShopfloorError as exc:
        raise _invalid(uri, f"not a collection name: {exc}") from None
    if len(parts) == 1:
        return DocUri(collection=collection, kind="collection")
    if len(parts) != 3 or parts[1] not in ("chunk", "document"):
        raise _invalid(uri, f"write {_FORMS}")
    if not _ID.match(parts[2]):
        raise _invalid(uri, f"id {parts[2][:40]!r} is not a chunk id (a whole number of at most 18 digits)")
    kind: UriKind = "chunk" if parts[1] == "chunk" else "document"
    return DocUri(collection=collection, kind=kind, chunk_id=int(parts[2]))


class DocResources:
    """The collections of ``collections`` (``[docs] url``), opened on first use with ``embedder``'s
    model name (a read embeds nothing) and kept open until ``aclose``."""

    def __init__(
        self,
        *,
        collections: DocCollections,
        embedder: Callable[[], Embedder],
        max_chars: int = 20_000,
        page: int = 50,
    ) -> None:
        self.collections = collections
        self.max_chars = max_chars
        self.page = page
        self._embedder_of = embedder
        self._embedder: Embedder | None = None
        self._indexes: dict[str, DocIndex] = {}
        self._lock = asyncio.Lock()

    async def names(self) -> list[str]:
        return await asyncio.to_thread(self.collections.names)

    async def index(self, name: str) -> DocIndex:
        async with self._lock:
            if name not in self._indexes:
                if self._embedder is None:
                    self._embedder = await asyncio.to_thread(self._embedder_of)
                try:
                    opened = await asyncio.to_thread(self.collections.open, name, self._embedder)
                except ShopfloorError as exc:  # a store down, or built with another model
                    raise MCPError(types.INTERNAL_ERROR, f"collection {name}: {exc}") from None
                self._indexes[name] = opened
            return self._indexes[name]

    async def aclose(self) -> None:
        async with self._lock:
            for index in self._indexes.values():
                index.close()
            self._indexes.clear()

    def _page(self, names: Sequence[str], cursor: str | None) -> tuple[Sequence[str], str | None]:
        start = 0
        if cursor is not None:
            if not _ID.match(cursor) or int(cursor) > len(names):
                raise MCPError(types.INVALID_PARAMS, f"cursor {cursor[:40]!r} is not one this server gave")
            start = int(cursor)
        end = start + self.page
        return names[start:end], (str(end) if end < len(names) else None)

    async def list_resources(self, readable: Sequence[str], cursor: str | None) -> types.ListResourcesResult:
        """A page of ``readable`` collections as resources, each with its index version."""
        shown, following = self._page(readable, cursor)
        resources = []
        for name in shown:
            stats = await asyncio.to_thread((await self.index(name)).stats)
            resources.append(
                types.Resource(
                    name=name,
                    title=f"Document collection {name}",
                    uri=DocUri(collection=name, kind="collection").uri,
                    description=_summary(stats),
                    mime_type="text/markdown",
                    _meta={"index": _version(stats)},
                )
            )
        return types.ListResourcesResult(resources=resources, next_cursor=following)

    async def list_templates(
        self, readable: Sequence[str], cursor: str | None
    ) -> types.ListResourceTemplatesResult:
        """A page of ``readable`` collections, each as its chunk and document URI templates."""
        shown, following = self._page(readable, cursor)
        templates = []
        for name in shown:
            stats = await asyncio.to_thread((await self.index(name)).stats)
            for kind, what in (
                ("chunk", "one passage"),
                ("document", "the whole document holding a passage"),
            ):
                templates.append(
                    types.ResourceTemplate(
                        name=f"{name}-{kind}",
                        title=f"{name}: {what}",
                        uri_template=f"{_PREFIX}{name}/{kind}/{{id}}",
                        description=(
                            f"{what[0].upper()}{what[1:]} of {name} by chunk id (from a retrieve call or "
                            f"`shopfloor docs search`); index version {stats['version']}"
                        ),
                        mime_type="text/markdown",
                        _meta={"index": _version(stats)},
                    )
                )
        return types.ListResourceTemplatesResult(resource_templates=templates, next_cursor=following)

    async def read(self, address: DocUri) -> types.ReadResourceResult:
        """The resource at ``address`` (a collection the caller may read); an unknown collection or
        chunk is a resource-not-found error naming it."""
        if address.collection not in await self.names():
            raise MCPError(
                RESOURCE_NOT_FOUND,
                f"no document collection {address.collection!r}; list resources for those you may read",
            )
        index = await self.index(address.collection)
        if address.chunk_id is None:
            stats = await asyncio.to_thread(index.stats)
            text = f"# {address.collection}\n\n{_summary(stats)}\n\nRead a passage at {_FORMS}.\n"
            return _result(address, text, {"index": _version(stats), "truncated": False})
        found = await asyncio.to_thread(
            index.read, address.chunk_id, document=address.kind == "document", max_chars=self.max_chars
        )
        if found is None:
            version = await asyncio.to_thread(index.current)
            raise MCPError(
                RESOURCE_NOT_FOUND,
                f"no chunk {address.chunk_id} in collection {address.collection} (index version "
                f"{version.version}); it may have been re-ingested since: search again",
            )
        return _result(address, found.text, _reading_meta(address, found))


def _summary(stats: dict[str, Any]) -> str:
    commit = f" (workspace commit {str(stats['commit'])[:12]})" if stats["commit"] else ""
    return (
        f"{stats['documents']} documents, {stats['chunks']} chunks, index version {stats['version']}{commit}"
    )


def _version(stats: dict[str, Any]) -> dict[str, Any]:
    return {"collection": stats["collection"], "version": stats["version"], "commit": stats["commit"]}


def _reading_meta(address: DocUri, found: Reading) -> dict[str, Any]:
    return {
        "index": found.version.to_json(),
        "truncated": found.truncated,
        "source": found.source,
        "title": found.title,
        "heading": found.heading,
        "chunks": [f"{_PREFIX}{address.collection}/chunk/{cid}" for cid in found.chunk_ids],
    }


def _result(address: DocUri, text: str, meta: dict[str, Any]) -> types.ReadResourceResult:
    return types.ReadResourceResult(
        contents=[
            types.TextResourceContents(uri=address.uri, mime_type="text/markdown", text=text, _meta=meta)
        ]
    )

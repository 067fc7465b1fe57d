"""The document collections as MCP resources of the gateway (``shopfloor-docs://``), driven by the
official ``mcp`` client over loopback HTTP: listed and read per identity (``workspaces:read``), a refusal
audited, hostile URIs answered with an error naming what is wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from gateway_support import Keys, LiveServer
from mcp.shared.exceptions import MCPError
from mcp_gateway_support import mcp_session

from shopfloor.config import Settings, load_settings
from shopfloor.connectors.docs import DocCollections, IngestSource, MiniLM
from shopfloor.gateway import build_server
from shopfloor.gateway.mcpgate import DocResources, parse_doc_uri
from shopfloor.security import KeyStore, build_audit_log

LONG = "The boiler valve rule. " * 1_500  # ~34,500 characters: over the 20,000 a read returns


def _collections(home: Path) -> DocCollections:
    return DocCollections.under(home)


def _ingest(home: Path, name: str, files: dict[str, str], tmp: Path) -> Any:
    """``files`` ingested as collection ``name`` with the model the gateway opens collections with;
    its chunks with "valve" as (id, heading, text)."""
    folder = tmp / f"src-{name}"
    folder.mkdir()
    for file, text in files.items():
        (folder / file).write_text(text)
    with _collections(home).open(name, MiniLM(), create=True) as index:
        report = index.add([folder], base=folder)
        index.record(IngestSource(kind="paths", paths=(str(folder),)), [report])
        return [(hit.chunk_id, hit.heading, hit.text) for hit in index.search("valve", k=20, mode="bm25")]


@pytest.fixture
def manual(tmp_path: Path) -> Any:
    home = Path(os.environ["SHOPFLOOR_HOME"])
    pages = {
        "pumps.md": "# Pumps\n\n## Priming\n\nOpen the valve before priming the pump.\n\n"
        "## Stopping\n\nClose the valve after the pump stops.\n",
        "boiler.md": f"# Boiler\n\n{LONG}\n",
    }
    return _ingest(home, "manual", pages, tmp_path)


@pytest.fixture
def served(manual: Any, keys: Keys, live: list[LiveServer]) -> str:
    live.append(LiveServer(build_server(load_settings(), worker=False)))
    return live[-1].url


@pytest.fixture
def network_admin(settings: Settings, keys: Keys) -> str:
    """A key with ``routes:call`` (it reaches /mcp) and no ``workspaces:read``."""
    store = KeyStore.open(settings.db_url)
    try:
        return store.create("net", role="network-admin", team="research", created_by="test")[1]
    finally:
        store.close()


async def test_collections_are_listed_and_read_through_the_official_client(
    served: str, keys: Keys, manual: Any
) -> None:
    async with mcp_session(f"{served}/mcp", keys.developer) as session:
        listed = (await session.list_resources()).resources
        assert [r.uri for r in listed] == ["shopfloor-docs://manual"]
        assert listed[0].meta == {"index": {"collection": "manual", "version": 1, "commit": None}}
        assert "index version 1" in (listed[0].description or "")
        templates = (await session.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {
            "shopfloor-docs://manual/chunk/{id}",
            "shopfloor-docs://manual/document/{id}",
        }
        pumps = next(cid for cid, _, text in manual if "priming the pump" in text)
        [passage] = (await session.read_resource(f"shopfloor-docs://manual/chunk/{pumps}")).contents
        assert passage.mime_type == "text/markdown" and "Open the valve before priming" in passage.text
        assert passage.meta is not None and passage.meta["index"]["version"] == 1
        assert passage.meta["truncated"] is False and passage.meta["source"] == "pumps.md"
        assert passage.meta["chunks"] == [f"shopfloor-docs://manual/chunk/{pumps}"]
        boiler = next(cid for cid, _, text in manual if "boiler valve" in text)
        [part] = (await session.read_resource(f"shopfloor-docs://manual/chunk/{boiler}")).contents
        assert part.meta is not None and part.meta["source"] == "boiler.md"
        assert "boiler valve" in part.text and len(part.text) < 20_000 and part.meta["truncated"] is False
        [whole] = (await session.read_resource(f"shopfloor-docs://manual/document/{boiler}")).contents
        assert whole.uri == f"shopfloor-docs://manual/document/{boiler}"
        assert len(whole.text) == 20_000 and whole.meta is not None and whole.meta["truncated"] is True
        assert (
            len(whole.meta["chunks"]) > 1
            and f"shopfloor-docs://manual/chunk/{boiler}" in whole.meta["chunks"]
        )
        [about] = (await session.read_resource("shopfloor-docs://manual")).contents
        assert "2 documents" in about.text and "index version 1" in about.text


async def test_a_principal_without_workspaces_read_sees_none_and_a_read_is_refused_and_audited(
    served: str, network_admin: str, manual: Any
) -> None:
    chunk = manual[0][0]
    async with mcp_session(f"{served}/mcp", network_admin) as session:
        assert (await session.list_resources()).resources == []
        assert (await session.list_resource_templates()).resource_templates == []
        with pytest.raises(MCPError, match=r"is not available to key:.*needs workspaces:read"):
            await session.read_resource(f"shopfloor-docs://manual/chunk/{chunk}")
    with build_audit_log(load_settings()) as audit:
        denied = [e for e in audit.entries() if e.kind == "permission.denied"]
    assert any(e.details["permission"] == "workspaces:read" for e in denied)


HOSTILE = [
    ("http://example.com/x", "not a shopfloor-docs:// URI"),
    ("shopfloor-docs://../chunk/1", "not a collection name"),
    ("shopfloor-docs://%2e%2e/chunk/1", "not a collection name"),
    ("shopfloor-docs://manual/../../etc/passwd", "write shopfloor-docs://COLLECTION"),
    ("shopfloor-docs://manual/page/1", "write shopfloor-docs://COLLECTION"),
    ("shopfloor-docs://manual/chunk/-1", "'-1' is not a chunk id"),
    ("shopfloor-docs://manual/chunk/1.5", "'1.5' is not a chunk id"),
    ("shopfloor-docs://manual/chunk/" + "9" * 40, "is not a chunk id"),
    ("shopfloor-docs://manual/chunk/" + "1" * 2_000, "longer than 512 characters"),
    ("shopfloor-docs://nope/chunk/1", "no document collection 'nope'"),
    ("shopfloor-docs://manual/chunk/999999999", "no chunk 999999999 in collection manual"),
]


async def test_hostile_uris_get_an_error_naming_what_is_wrong(served: str, keys: Keys) -> None:
    async with mcp_session(f"{served}/mcp", keys.admin) as session:
        for uri, message in HOSTILE:
            with pytest.raises(MCPError) as raised:
                await session.read_resource(uri)
            assert message in str(raised.value), (uri, str(raised.value))
        with pytest.raises(MCPError, match="cursor 'x' is not one this server gave"):
            await session.list_resources(params=_cursor("x"))


def _cursor(value: str) -> Any:
    import mcp_types as types

    return types.PaginatedRequestParams(cursor=value)


async def test_pages_of_collections(tmp_path: Path) -> None:
    home = Path(os.environ["SHOPFLOOR_HOME"])
    for name in ("a", "b", "c"):
        _ingest(home, name, {"x.md": f"# {name}\n\nvalve {name}\n"}, tmp_path)
    resources = DocResources(collections=_collections(home), embedder=MiniLM, page=2)
    try:
        first = await resources.list_resources(["a", "b", "c"], None)
        assert [r.name for r in first.resources] == ["a", "b"] and first.next_cursor == "2"
        second = await resources.list_resources(["a", "b", "c"], first.next_cursor)
        assert [r.name for r in second.resources] == ["c"] and second.next_cursor is None
        with pytest.raises(MCPError, match="is not one this server gave"):
            await resources.list_resources(["a", "b", "c"], "9")
    finally:
        await resources.aclose()


def test_parse_doc_uri() -> None:
    parsed = parse_doc_uri("shopfloor-docs://manual/document/7")
    assert (parsed.collection, parsed.kind, parsed.chunk_id) == ("manual", "document", 7)
    assert parse_doc_uri("shopfloor-docs://manual/").kind == "collection"
    assert parse_doc_uri("shopfloor-docs://manual/chunk/7").uri == "shopfloor-docs://manual/chunk/7"

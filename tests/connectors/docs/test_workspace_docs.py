"""Collections built from a workspace at a commit (``ingest_workspace``), on both collection backends: only
the paths asked for, read from the workspace store, recorded with the commit the ref resolved to,
incremental by blob digest, pruned to the commit's files; hostile input (a ref that does not exist, a path
escaping the workspace, a binary or oversized file) gives a clear error and keeps what was indexed."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_support import Hashed

from shopfloor.connectors.docs import (
    MAX_DOCUMENT_BYTES,
    DocCollections,
    WorkspaceSource,
    ingest_workspace,
    workspace_files,
)
from shopfloor.errors import ConfigError, ConnectorError
from shopfloor.workspace import Workspace, Workspaces, open_store


@pytest.fixture
def workspaces(tmp_path: Path) -> Iterator[Workspaces]:
    repo = Workspaces(open_store(f"file://{tmp_path / 'store'}"), cache_dir=tmp_path / "cache")
    yield repo
    repo.close()


def commit(workspace: Workspace, files: dict[str, bytes | str | None], ref: str = "main") -> str:
    """Write (or, for None, delete) ``files`` on ``ref`` and commit; the commit id."""

    async def run() -> str:
        view = await workspace.open(ref)
        for path, data in files.items():
            if data is None:
                await view.delete(path)
            else:
                await view.write(path, data)
        return await view.commit("docs")

    return asyncio.run(run())


GUIDE = {
    "docs/install.md": "# Install\n\nRun the installer with the --prefix option to choose the directory.\n",
    "docs/usage.md": "# Usage\n\nThe frobnicate command frobnicates every widget it is given.\n",
    "docs/logo.png": b"\x89PNG\r\n\x1a\n" + bytes(64),
    "notes/todo.md": "# Todo\n\nNothing here is documentation.\n",
}


def test_a_collection_is_built_from_a_workspace_commit_and_versioned_with_it(
    workspaces: Workspaces, doc_collections: DocCollections
) -> None:
    ws = workspaces.workspace("kb")
    first = commit(ws, GUIDE)
    with doc_collections.open("guide", Hashed(), create=True) as index:
        report, record = ingest_workspace(index, ws, WorkspaceSource.parse("kb", ["docs"]))
        assert (report.added, report.failed, report.removed) == (2, [], [])
        assert (record.version, record.source.workspace, record.source.ref) == (1, "kb", "main")
        assert record.source.commit == first and record.source.paths == ("docs",)
        assert sorted(record.digests) == ["docs/install.md", "docs/usage.md"], "only docs/, no image"
        assert {h.source for h in index.search("frobnicate widget", k=5)} >= {"docs/usage.md"}
        current = index.current()
        assert (current.version, current.commit) == (1, first)
        assert (index.stats()["version"], index.stats()["commit"]) == (1, first)

        second = commit(
            ws, {"docs/usage.md": "# Usage\n\nThe command now polishes gadgets.\n", "docs/install.md": None}
        )
        report, record = ingest_workspace(index, ws, WorkspaceSource.parse("kb@main", ["docs/"]))
        assert (report.added, report.replaced, report.removed) == (0, 1, ["docs/install.md"])
        assert (record.version, record.source.commit) == (2, second)
        assert index.search("installer prefix option", k=5, mode="bm25") == [], "gone at the new commit"

        # the old commit, by its abbreviated id: the index goes back to it, versioned forward
        report, record = ingest_workspace(index, ws, WorkspaceSource.parse(f"kb@{first[:10]}", ["docs"]))
        assert (report.added, report.replaced) == (1, 1)
        assert (record.version, record.source.commit, record.digests) == (
            3,
            first,
            index.ingests()[-1].digests,
        )

        # the same commit again: every document known by its blob id, nothing read
        unread = WorkspaceSource.parse(f"kb@{first}", ["docs"])
        _, files = workspace_files(ws, unread)
        assert {f.source: f.digest for f in files if f.source != "docs/logo.png"} == record.digests

        def never() -> bytes:
            raise AssertionError("an unchanged document was read")

        untouched = index.add_files([dataclasses.replace(f, read=never) for f in files])
        assert (untouched.unchanged, untouched.failed) == (2, [])
        report, record = ingest_workspace(index, ws, unread)
        assert (report.unchanged, report.added, record.version) == (2, 0, 4)
        assert [r.source.commit for r in index.ingests()] == [first, first, second, first]


def test_the_whole_workspace_and_a_branch(workspaces: Workspaces, doc_collections: DocCollections) -> None:
    ws = workspaces.workspace("kb")
    commit(ws, GUIDE)
    asyncio.run(ws.set_ref("draft", "main", create=True))
    draft = commit(ws, {"notes/todo.md": "# Todo\n\nWrite the gadget chapter.\n"}, ref="draft")
    with doc_collections.open("all", Hashed(), create=True) as index:
        _, record = ingest_workspace(index, ws, WorkspaceSource.parse("kb@draft"))
        assert record.source.commit == draft and record.source.paths == ()
        assert sorted(record.digests) == ["docs/install.md", "docs/usage.md", "notes/todo.md"]
        assert index.search("gadget chapter", k=1, mode="bm25")[0].source == "notes/todo.md"
        _, excluded = ingest_workspace(index, ws, WorkspaceSource.parse("kb@draft"), exclude=["notes/*"])
        assert sorted(excluded.digests) == ["docs/install.md", "docs/usage.md"]


def test_hostile_workspace_input_is_a_clear_error_and_keeps_the_index(
    workspaces: Workspaces, doc_collections: DocCollections
) -> None:
    ws = workspaces.workspace("kb")
    first = commit(ws, GUIDE)
    with doc_collections.open("guide", Hashed(), create=True) as index:
        ingest_workspace(index, ws, WorkspaceSource.parse("kb", ["docs"]))
        before = index.stats()
        with pytest.raises(
            ConnectorError, match=r"workspace kb@nope: workspace kb has no ref or commit 'nope'"
        ):
            ingest_workspace(index, ws, WorkspaceSource.parse("kb@nope"))
        with pytest.raises(ConnectorError, match=r"workspace ghost@main: .*no ref or commit 'main'"):
            ingest_workspace(index, workspaces.workspace("ghost"), WorkspaceSource.parse("ghost"))
        with pytest.raises(
            ConnectorError, match=rf"kb@main \(commit {first[:12]}\) has no file or directory 'doc'"
        ):
            ingest_workspace(index, ws, WorkspaceSource.parse("kb", ["doc"]))
        for escaping in ("../etc", "docs/../../x", "/etc/passwd"):
            with pytest.raises(
                ConnectorError, match=r"escapes workspace kb: give a path relative to its root"
            ):
                WorkspaceSource.parse("kb", [escaping])
        with pytest.raises(ConnectorError, match="a NUL"):
            WorkspaceSource.parse("kb", ["docs/\x00"])
        for bad in ("kb@", "k b", "../kb", "kb@ref with space", "kb\n", ""):
            with pytest.raises(ConfigError, match="write WORKSPACE or WORKSPACE@REF"):
                WorkspaceSource.parse(bad)
        assert index.stats() == before and index.current().version == 1, "nothing written, nothing recorded"

        # a page that turned binary, and one too large: reported with their paths, the old text kept
        big = b"# Big\n\n" + b"x" * MAX_DOCUMENT_BYTES
        commit(ws, {"docs/usage.md": b"\x00\xff\xfe binary \x00" * 200, "docs/big.md": big})
        report, record = ingest_workspace(index, ws, WorkspaceSource.parse("kb", ["docs"]))
        failed = dict(report.failed)
        assert set(failed) == {"docs/usage.md", "docs/big.md"}
        assert "over the" in failed["docs/big.md"] and f"{MAX_DOCUMENT_BYTES:,}" in failed["docs/big.md"]
        assert report.removed == [] and (record.version, record.failed) == (2, 2)
        assert index.search("frobnicate widget", k=1, mode="bm25")[0].source == "docs/usage.md"
        assert sorted(record.digests) == ["docs/install.md", "docs/usage.md"], "the last good version kept"


def test_a_corrupt_blob_is_reported_and_its_last_good_version_kept(
    tmp_path: Path, workspaces: Workspaces, doc_collections: DocCollections
) -> None:
    ws = workspaces.workspace("kb")
    commit(ws, GUIDE)
    with doc_collections.open("guide", Hashed(), create=True) as index:
        ingest_workspace(index, ws, WorkspaceSource.parse("kb", ["docs"]))
        changed = "# Usage\n\nA new text no store holds yet.\n"
        commit(ws, {"docs/usage.md": changed, "docs/new.md": "# New\n\nA page added beside it.\n"})
        blob = hashlib.sha256(changed.encode()).hexdigest()
        stored = tmp_path / "store" / "objects" / "blobs" / blob[:2] / blob[2:]
        stored.chmod(0o644)
        stored.write_bytes(b"tampered")
        report, record = ingest_workspace(index, ws, WorkspaceSource.parse("kb", ["docs"]))
        (failed,) = report.failed
        assert failed[0] == "docs/usage.md" and "is corrupt" in failed[1]
        assert report.added == 1 and record.failed == 1, "the ingest went on past it"
        assert index.search("frobnicate widget", k=1, mode="bm25")[0].source == "docs/usage.md"

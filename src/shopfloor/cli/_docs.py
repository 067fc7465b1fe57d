"""``shopfloor docs add|ls|history|search``: document collections that agents search with a ``docs:``
connector, built from host files or from a workspace at a commit (``--workspace WS[@REF]``); every ingest
is recorded with the collection's next index version (``history``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Column, Table
from rich.text import Text

from shopfloor.cli._app import app, console, get_services, get_settings, print_json
from shopfloor.cli._untrusted import untrusted

__all__ = ["docs_app"]

docs_app = typer.Typer(
    help="Document collections for retrieval (hybrid BM25 + vectors).", no_args_is_help=True
)
app.add_typer(docs_app, name="docs")

CollectionArg = Annotated[str, typer.Argument(help="the collection's name (lower case, digits, - and _)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _open(collection: str, *, create: bool) -> object:
    """The collection where ``[docs] url`` keeps them (SQLite files under the home by default)."""
    from shopfloor.connectors.docs import DocCollections, MiniLM

    return DocCollections.from_settings(get_settings()).open(collection, MiniLM(), create=create)


@docs_app.command("add")
def add_cmd(
    collection: CollectionArg,
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="files or directories (HTML, Markdown, PDF, text); with --workspace, paths inside it"
        ),
    ] = None,
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace",
            metavar="WS[@REF]",
            help="ingest this workspace's files at REF (a branch or commit; default main), not the host's",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest documents (unchanged ones are skipped; one that fails is reported and skipped); the ingest
    is recorded as the collection's next index version."""
    from shopfloor.connectors.docs import DocIndex, IngestSource, WorkspaceSource, ingest_workspace

    if workspace is None and not paths:
        raise typer.BadParameter("give files or directories to ingest, or --workspace WS[@REF]")
    source = WorkspaceSource.parse(workspace, paths or []) if workspace is not None else None
    index = _open(collection, create=True)
    assert isinstance(index, DocIndex)
    with index:
        if source is not None:
            repo = get_services().workspaces(None)
            try:
                report, record = ingest_workspace(index, repo.workspace(source.workspace), source)
            finally:
                repo.close()
        else:
            host = [Path(p) for p in paths or []]
            report = index.add(host, base=host[0] if len(host) == 1 and host[0].is_dir() else None)
            record = index.record(IngestSource(kind="paths", paths=tuple(str(p) for p in host)), [report])
        stats = index.stats()
    if json_out:
        print_json({**report.to_json(), "collection": stats, "ingest": record.to_json()})
        return
    built = f" from commit {record.source.commit[:12]}" if record.source.commit else ""
    console.print(
        f"{report.added} added, {report.replaced} replaced, {report.unchanged} unchanged, "
        + (f"{len(report.removed)} removed, " if report.removed else "")
        + f"{report.chunks} chunks in {report.seconds:.1f} s; {collection}: {stats['documents']} documents, "
        f"{stats['chunks']} chunks, index version {record.version}{built}"
    )
    for path, error in report.failed:
        console.print(
            Text.assemble(("skipped ", "yellow"), untrusted(path), ": ", untrusted(error, width=200))
        )


@docs_app.command("ls")
def ls_cmd(json_out: JsonOpt = False) -> None:
    """Every collection: documents, chunks, size, embedding model."""
    from shopfloor.connectors.docs import DocCollections, DocIndex

    found = []
    for name in DocCollections.from_settings(get_settings()).names():
        index = _open(name, create=False)
        assert isinstance(index, DocIndex)
        with index:
            found.append(index.stats())
    if json_out:
        print_json(found)
        return
    # the commit's 12 characters kept whole in a narrow terminal: the other columns give way
    table = Table(
        "collection",
        "documents",
        "chunks",
        "MB",
        "embedder",
        "vectors",
        "version",
        Column("commit", min_width=12),
    )
    for item in found:
        table.add_row(
            item["collection"],
            str(item["documents"]),
            str(item["chunks"]),
            f"{item['bytes'] / 1e6:.1f}",
            item["embedder"],
            item["vectors"],
            str(item["version"]),
            (item["commit"] or "")[:12],
        )
    console.print(table)


@docs_app.command("history")
def history_cmd(
    collection: CollectionArg,
    limit: Annotated[int | None, typer.Option("-n", min=1, help="the newest N ingests only")] = None,
    digests: Annotated[bool, typer.Option("--digests", help="with --json: every document's sha256")] = False,
    json_out: JsonOpt = False,
) -> None:
    """A collection's ingests, newest first: index version, when, source, what changed."""
    from shopfloor.connectors.docs import DocIndex

    index = _open(collection, create=False)
    assert isinstance(index, DocIndex)
    with index:
        records = index.ingests(limit)
    if json_out:
        print_json([record.to_json(digests=digests) for record in records])
        return
    for record in records:
        when = datetime.fromtimestamp(record.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        console.print(
            Text.assemble(
                (f"version {record.version}", "bold"),
                f"  {when}  ",
                untrusted(record.source.describe(), width=300),
                f"  {record.added} added, {record.replaced} replaced, {record.unchanged} unchanged, "
                f"{record.removed} removed, {record.failed} failed; {len(record.digests)} documents",
            ),
            soft_wrap=True,
        )


@docs_app.command("search")
def search_cmd(
    collection: CollectionArg,
    query: Annotated[str, typer.Argument(help="what to look for")],
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="how many passages")] = 5,
    mode: Annotated[
        Literal["hybrid", "bm25", "dense"], typer.Option("--mode", help="hybrid (fused), bm25 or dense")
    ] = "hybrid",
    json_out: JsonOpt = False,
) -> None:
    """The passages of a collection that best match a query."""
    from shopfloor.connectors.docs import DocIndex

    index = _open(collection, create=False)
    assert isinstance(index, DocIndex)
    with index:
        hits = index.search(query, k=k, mode=mode)
    if json_out:
        print_json([hit.to_json() for hit in hits])
        return
    for hit in hits:
        console.print(
            Text.assemble(
                (f"{hit.score:.4f} ", "bold"),
                untrusted(hit.source),
                "  ",
                untrusted(hit.heading or hit.title),
            )
        )
        console.print(untrusted(hit.text[:300].replace("\n", " "), width=300))

"""``shopfloor docs add|ls|search``: document collections that agents search with a ``docs:`` connector."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table
from rich.text import Text

from shopfloor.cli._app import app, console, get_settings, print_json
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
    paths: Annotated[list[Path], typer.Argument(help="files or directories (HTML, Markdown, PDF, text)")],
    json_out: JsonOpt = False,
) -> None:
    """Ingest documents (unchanged ones are skipped; one that fails is reported and skipped)."""
    from shopfloor.connectors.docs import DocIndex

    index = _open(collection, create=True)
    assert isinstance(index, DocIndex)
    with index:
        report = index.add(paths, base=paths[0] if len(paths) == 1 and paths[0].is_dir() else None)
        stats = index.stats()
    if json_out:
        print_json({**report.to_json(), "collection": stats})
        return
    console.print(
        f"{report.added} added, {report.replaced} replaced, {report.unchanged} unchanged, "
        f"{report.chunks} chunks in {report.seconds:.1f} s; {collection}: {stats['documents']} documents, "
        f"{stats['chunks']} chunks"
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
    table = Table("collection", "documents", "chunks", "MB", "embedder")
    for item in found:
        table.add_row(
            item["collection"],
            str(item["documents"]),
            str(item["chunks"]),
            f"{item['bytes'] / 1e6:.1f}",
            item["embedder"],
        )
    console.print(table)


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

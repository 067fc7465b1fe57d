"""Document collections: real HTML, Markdown, PDF and text parsed by structure, embedded by the shipped
MiniLM, indexed hybrid; broken documents reported and skipped; re-ingest incremental. The collection
tests run on SQLite and on PostgreSQL (``doc_collections``)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopfloor.connectors.docs import (
    DocCollections,
    DocIndex,
    MiniLM,
    Ranking,
    chunk_sections,
    collection_path,
    fts_query,
    parser_for,
)
from shopfloor.errors import ConfigError, ConnectorError

pytestmark = pytest.mark.slow  # the embedding model runs on the CPU


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


def test_minilm_in_numpy_matches_the_published_similarity(minilm: MiniLM) -> None:
    """sentence-transformers documents 0.7553 for this pair with all-MiniLM-L6-v2."""
    vectors = minilm.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]
    )
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] == pytest.approx(0.7553, abs=0.001)
    assert similarity[0, 1] > similarity[0, 2] > similarity[1, 2]
    assert minilm.embed([]).shape == (0, 384)


HTML = b"""<html><head><title>File I/O</title><script>alert('x')</script></head><body>
<nav>Home | Index</nav>
<h1>Reading and Writing Files</h1><p>open() returns a file object, and is most commonly used with two
positional arguments: open(filename, mode).</p>
<h2>Methods of File Objects</h2><p>To read a file's contents, call f.read(size).</p>
<ul><li><p>f.readline() reads a single line from the file.</p></li></ul>
<h1>Errors and Exceptions</h1><p>A ZeroDivisionError is raised when dividing by zero.</p>
</body></html>"""
MARKDOWN = b"""# Decorators

A decorator is a function returning another function, applied with the @wrapper syntax.

## functools.wraps

```python
# not a heading
```
Use functools.wraps to keep the wrapped function's name and docstring.
"""


def _pdf(text: str) -> bytes:
    """A one-page PDF with ``text`` (written by hand: the format is plain enough)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "io.html").write_bytes(HTML)
    (root / "decorators.md").write_bytes(MARKDOWN)
    (root / "sub" / "asyncio.txt").write_text(
        "asyncio.gather runs awaitables concurrently and collects results.\n"
    )
    (root / "sub" / "gc.pdf").write_bytes(_pdf("The garbage collector frees reference cycles."))
    (root / "image.png").write_bytes(b"\x89PNG not a document")
    return root


@pytest.fixture
def index(doc_collections: DocCollections, minilm: MiniLM) -> Iterator[DocIndex]:
    with doc_collections.open("python", minilm, create=True) as made:
        yield made


def test_parsers_keep_structure_and_drop_scripts(corpus: Path) -> None:
    html = parser_for(corpus / "io.html").parse(HTML, "io.html")  # type: ignore[union-attr]
    assert html.title == "File I/O"
    assert [s.headings for s in html.sections] == [
        ("Reading and Writing Files",),
        ("Reading and Writing Files", "Methods of File Objects"),
        ("Errors and Exceptions",),
    ]
    text = " ".join(s.text for s in html.sections)
    assert "alert" not in text and "Home | Index" not in text and text.count("f.readline()") == 1
    md = parser_for(corpus / "decorators.md").parse(MARKDOWN, "decorators.md")  # type: ignore[union-attr]
    assert [s.headings for s in md.sections] == [("Decorators",), ("Decorators", "functools.wraps")]
    assert "# not a heading" in md.sections[1].text
    pdf = parser_for(corpus / "sub" / "gc.pdf").parse(_pdf("hello world"), "gc.pdf")  # type: ignore[union-attr]
    assert pdf.sections[0].text == "hello world" and pdf.sections[0].headings == ("page 1",)
    assert parser_for(corpus / "image.png") is None
    long = chunk_sections(md.sections * 1, max_chars=40)
    assert all(len(c.text) <= 40 for c in long) and len(long) > 2


SPHINX = b"""<html><head><title>functools</title></head><body>
<div class="related" role="navigation"><h3>Navigation</h3><ul><li>index</li><li>modules</li></ul></div>
<div class="document"><div class="body" role="main">
<h1>functools</h1><p>Higher-order functions.</p>
<div class="inline-search" role="search"><form><input name="q"></form></div>
<h2>lru_cache</h2><p>Memoizes a function.</p>
</div></div>
<div class="sphinxsidebar" role="navigation"><h3>Previous topic</h3><p>itertools</p></div>
<div class="footer">Copyright 2023</div></body></html>"""


def test_a_page_with_main_content_is_read_without_its_sidebars() -> None:
    parsed = parser_for(Path("functools.html")).parse(SPHINX, "functools.html")  # type: ignore[union-attr]
    assert [(s.headings, s.text) for s in parsed.sections] == [
        (("functools",), "Higher-order functions."),
        (("functools", "lru_cache"), "Memoizes a function."),
    ]


def test_short_sections_share_a_chunk_and_long_ones_are_split() -> None:
    from shopfloor.connectors.docs import Section

    short = [
        Section(headings=("os",), text="Miscellaneous operating system interfaces."),
        Section(headings=("os", "getcwd"), text="Return the current working directory."),
        Section(headings=("os", "chdir"), text="Change the current working directory. " * 3),
    ]
    (chunk,) = chunk_sections(short, max_chars=300, min_chars=200)
    assert chunk.heading == "os"  # where it starts; the later sections' headings are lines of its text
    assert chunk.text.splitlines()[:3] == [
        "Miscellaneous operating system interfaces.",
        "getcwd",
        "Return the current working directory.",
    ]
    # Nothing is carried over min_chars, nor past max_chars: each section then starts a chunk.
    assert [c.heading for c in chunk_sections(short, max_chars=300, min_chars=10)] == [
        "os",
        "os > getcwd",
        "os > chdir",
    ]
    assert [c.heading for c in chunk_sections(short, max_chars=90, min_chars=200)] == [
        "os",
        "os > chdir",
        "os > chdir",
    ]
    long = [Section(headings=("a",), text="word " * 110), Section(headings=("b",), text="tail")]
    chunks = chunk_sections(long, max_chars=500, min_chars=100)  # a section's short tail goes on too
    assert all(len(c.text) <= 500 for c in chunks) and chunks[-1].text.endswith("b\ntail")


def test_ingest_search_hybrid_and_incremental(index: DocIndex, corpus: Path) -> None:
    report = index.add([corpus], base=corpus)
    assert (report.added, report.unchanged, report.failed) == (4, 0, [])
    # io.html's three short sections are one chunk, its later headings lines of its text.
    assert index.stats()["documents"] == 4 and index.stats()["chunks"] == 4
    for mode in ("hybrid", "bm25", "dense"):
        hits = index.search("how do I read one line of a file", k=3, mode=mode)  # type: ignore[arg-type]
        assert hits and hits[0].source == "io.html", mode
    dense = index.search("cleaning up cyclic garbage in memory", k=1, mode="dense")
    assert dense[0].source == "sub/gc.pdf" and dense[0].dense_rank == 1 and dense[0].bm25_rank is None
    hybrid = index.search("functools.wraps decorator name", k=2)
    assert hybrid[0].source == "decorators.md" and hybrid[0].bm25_rank and hybrid[0].dense_rank
    # Unchanged files are skipped; a changed one replaced, its old chunks gone from both rankings.
    (corpus / "sub" / "asyncio.txt").write_text(
        "asyncio.TaskGroup replaces gather for structured concurrency.\n"
    )
    again = index.add([corpus], base=corpus)
    assert (again.added, again.replaced, again.unchanged) == (0, 1, 3)
    assert all("gather runs" not in h.text for h in index.search("gather awaitables concurrently", k=10))
    assert index.search("TaskGroup structured concurrency", k=1)[0].source == "sub/asyncio.txt"


def test_broken_documents_are_reported_and_skipped_and_lose_nothing(index: DocIndex, corpus: Path) -> None:
    index.add([corpus], base=corpus)
    before = index.stats()
    bad = corpus / "bad"
    bad.mkdir()
    (bad / "truncated.pdf").write_bytes(_pdf("cut short")[:120])
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (bad / "latin1.txt").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e recipe".encode("latin-1"))
    (bad / "broken.html").write_bytes(b"<html><body><h1>Unclosed <p>tags <div><div><div>" + b"<b>" * 5000)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", b"\0" * 50_000_000)
    (bad / "bomb.pdf").write_bytes(bomb.getvalue())
    report = index.add([bad], base=corpus)
    failed = dict(report.failed)
    assert set(failed) == {"bad/truncated.pdf", "bad/binary.txt", "bad/bomb.pdf"}, failed
    assert "bad/truncated.pdf" in failed["bad/truncated.pdf"] or "PDF" in failed["bad/truncated.pdf"]
    assert report.added == 2  # the latin-1 text and the broken HTML are still read
    after = index.stats()
    assert after["documents"] == before["documents"] + 2
    assert index.search("crème brûlée", k=1)[0].source == "bad/latin1.txt"
    with pytest.raises(ConnectorError, match="no such file"):
        index.add([corpus / "missing"])


def test_the_ranking_weighs_headings_and_caps_a_documents_share(
    tmp_path: Path, minilm: MiniLM, doc_collections: DocCollections
) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    filler = "More words on other matters fill the section out. " * 7
    # caching.md: three long sections that each say lru_cache thrice; memo.md: once, under a heading naming it
    (pages / "caching.md").write_text(
        "".join(f"# Caching part {n}\n\n{'The lru_cache decorator. ' * 3}{filler}\n\n" for n in range(3))
    )
    (pages / "memo.md").write_text(f"# lru_cache\n\nThe lru_cache decorator. {filler}\n")
    ranking = Ranking(heading_weight=0.0, per_document=0)
    with doc_collections.open("c", minilm, create=True, ranking=ranking) as index:
        index.add([pages], base=pages)
        assert index.stats()["chunks"] == 4
        top = [h.source for h in index.search("lru_cache", k=3, mode="bm25")]
        assert top == ["caching.md"] * 3, "headings aside, the text's mentions: three chunks of one page"
        index.ranking = Ranking(heading_weight=0.0, per_document=1)
        capped = [h.source for h in index.search("lru_cache", k=3, mode="bm25")]
        assert capped == ["caching.md", "memo.md", "caching.md"]
        index.ranking = Ranking(heading_weight=10.0, per_document=0)
        assert index.search("lru_cache", k=1, mode="bm25")[0].source == "memo.md"
        # rerank: the fused pool (here every chunk) in the order of the dense ranking
        query = "a memo of results by arguments: lru_cache"
        dense = [h.chunk_id for h in index.search(query, k=4, mode="dense")]
        index.ranking = Ranking(heading_weight=0.0, bm25_weight=5.0, per_document=0)
        assert [h.chunk_id for h in index.search(query, k=4)] != dense
        index.ranking = Ranking(heading_weight=0.0, bm25_weight=5.0, per_document=0, rerank=4)
        assert [h.chunk_id for h in index.search(query, k=4)] == dense


def test_queries_are_never_fts_syntax(index: DocIndex, corpus: Path) -> None:
    index.add([corpus], base=corpus)
    assert fts_query('NEAR(a b) "quoted" OR -x *') == '"near" OR "a" OR "b" OR "quoted" OR "or" OR "x"'
    hostile_queries = ['"', "AND OR NOT", "col:value", "a*", "(((", "'; DROP TABLE chunks; --", "\0"]
    hostile_queries += ["'&|!:*()", "open & !read | <-> file:*", "the of and", "%s %(x)s", "\\'"]
    for hostile in hostile_queries:
        index.search(hostile, k=3)  # never an FTS5 or tsquery syntax error
    assert index.search("open() & file | !objects", k=1, mode="bm25")[0].source == "io.html"
    with pytest.raises(ConnectorError, match="empty query"):
        index.search("   ")
    assert index.stats()["documents"] == 4


def test_the_cli_and_the_retrieve_tool_of_a_docs_connector(
    corpus: Path, doc_collections: DocCollections, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import json

    from typer.testing import CliRunner

    from shopfloor.cli import app
    from shopfloor.config import load_settings
    from shopfloor.connectors import build_connectors
    from shopfloor.spec import ConnectorSpec
    from shopfloor.tools import ToolContext

    if doc_collections.url.startswith("postgresql"):  # else the default: SQLite files under the home
        monkeypatch.setenv("SHOPFLOOR_DOCS__URL", doc_collections.url)
    cli = CliRunner()
    added = cli.invoke(app, ["docs", "add", "python", str(corpus), "--json"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["added"] == 4
    found = cli.invoke(
        app, ["docs", "search", "python", "read a single line from a file", "-k", "2", "--json"]
    )
    assert json.loads(found.stdout)[0]["source"] == "io.html"
    (listed,) = json.loads(cli.invoke(app, ["docs", "ls", "--json"]).stdout)
    assert (listed["documents"], listed["version"], listed["commit"]) == (4, 1, None)
    # the system's PostgreSQL 15 has no pgvector: its vectors are scored in the client
    assert listed["vectors"] == ("client" if doc_collections.url.startswith("postgresql") else "sqlite-vec")
    (ingest,) = json.loads(cli.invoke(app, ["docs", "history", "python", "--json"]).stdout)
    assert ingest["source"] == {
        "kind": "paths",
        "paths": [str(corpus)],
        "workspace": None,
        "ref": None,
        "commit": None,
    }
    missing = cli.invoke(app, ["docs", "search", "nothing", "x"])
    assert "no document collection 'nothing'" in str(missing.exception)

    async def retrieve() -> list[dict[str, object]]:
        pool = build_connectors(load_settings(), secrets=None)
        try:
            spec = ConnectorSpec.model_validate({"name": "pydocs", "docs": {"collection": "python", "k": 2}})
            tools = {tool.name: tool for tool in await pool.tools([spec])}
            assert set(tools) == {"pydocs__retrieve", "pydocs__read", "pydocs__research"}
            tool = tools["pydocs__retrieve"]
            result: dict[str, Any] = await tool.call(
                {"query": "garbage collector cycles"},
                ToolContext(run_id="r", step=1, call_id="c", idempotency_key="r:1"),
            )
            absent = ConnectorSpec.model_validate({"name": "other", "docs": {"collection": "absent"}})
            with pytest.raises(ConnectorError, match="no document collection 'absent'"):
                await pool.tools([absent])
            assert result["index"] == {"python": {"version": 1, "commit": None}}, "docs add recorded it"
            passages: list[dict[str, object]] = result["passages"]
            return passages
        finally:
            await pool.aclose()

    hits = asyncio.run(retrieve())
    assert len(hits) == 2 and hits[0]["source"] == "sub/gc.pdf" and str(hits[0]["id"]).startswith("python:")


@pytest.mark.parametrize("name", ["docs\n", "../etc", "x/y", "Docs", "", "x" * 64, "a\x00b", "-x", "é"])
def test_a_bad_collection_name_is_refused_and_names_the_rule(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"lower-case letters, digits"):
        collection_path(tmp_path, name)


def test_a_collection_lives_under_the_home(tmp_path: Path) -> None:
    assert collection_path(tmp_path, "py-docs_3") == tmp_path / "docs" / "py-docs_3.db"

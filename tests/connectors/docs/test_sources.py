"""What a ``docs:`` connector ingests: its sources or, where none exists, its fallback; less what its
``exclude`` patterns name; the chunks of several documents embedded in one call, with the same vectors
as one document at a time. Small fixtures only: the installed python3.11-doc is listed, never ingested."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from shopfloor.connectors import ingest_sources
from shopfloor.connectors.docs import (
    DocCollections,
    DocIndex,
    Embedder,
    MiniLM,
    collection_path,
    excluded,
    resolve_sources,
)
from shopfloor.errors import ConnectorError
from shopfloor.spec import DocsConnectorSpec, load_spec, spec_resolvers

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "researcher"
INSTALLED = Path("/usr/share/doc/python3.11/html")


@pytest.mark.parametrize(
    ("path", "patterns", "out"),
    [
        ("genindex-A.html", ["genindex*.html"], True),
        ("library/genindex.html", ["genindex*.html"], True),  # no '/': the file name anywhere
        ("_sources/library/os.rst.txt", ["_sources/*"], True),  # '*' crosses '/'
        ("library/_sources.html", ["_sources/*"], False),
        ("whatsnew/changelog.html", ["whatsnew/*"], True),
        ("library/whatsnew.html", ["whatsnew/*"], False),
        ("library/index.html", ["index.html"], True),
        ("library/os.html", ["index.html", "genindex*.html"], False),
        ("library/os.html", [], False),
        ("Library/OS.HTML", ["library/*.html"], False),  # case matters, as on the file system
    ],
)
def test_exclude_patterns_match_the_path_under_the_directory_or_the_file_name(
    path: str, patterns: list[str], out: bool
) -> None:
    assert excluded(path, patterns) is out


@pytest.mark.parametrize("pattern", ["", "  ", "/usr/share/doc/*", "x" * 201])
def test_an_exclude_pattern_that_cannot_match_a_path_under_a_source_is_refused(pattern: str) -> None:
    with pytest.raises(ValidationError, match="exclude pattern"):
        DocsConnectorSpec(collection="docs", sources=["corpus"], exclude=[pattern])


def test_a_fallback_without_sources_is_refused() -> None:
    with pytest.raises(ValidationError, match="fallback is ingested when no entry of sources exists"):
        DocsConnectorSpec(collection="docs", fallback=["corpus"])


def test_the_fallback_is_taken_only_when_no_source_exists(tmp_path: Path) -> None:
    (tmp_path / "shipped").mkdir()
    (tmp_path / "installed").mkdir()
    missing = str(tmp_path / "not-installed")

    def resolved(*sources: str) -> tuple[list[Path], bool]:
        spec = DocsConnectorSpec(collection="docs", sources=list(sources), fallback=["shipped"])
        found = resolve_sources(spec, tmp_path)
        return found.paths, found.fallback

    assert resolved(missing) == ([tmp_path / "shipped"], True)
    assert resolved(missing, "pkg:no_such_package_here/docs") == ([tmp_path / "shipped"], True)
    assert resolved("installed") == ([tmp_path / "installed"], False)
    # One source there and one not: a typo, not a package missing; the ingest names it.
    paths, fallback = resolved("installed", missing)
    assert (paths, fallback) == ([tmp_path / "installed", Path(missing)], False)
    without = resolve_sources(DocsConnectorSpec(collection="docs", sources=[missing]), tmp_path)
    assert (without.paths, without.fallback) == ([Path(missing)], False)


def test_the_researcher_reads_the_installed_docs_or_its_shipped_pages_under_the_same_ids() -> None:
    loaded = load_spec(EXAMPLE, resolvers=spec_resolvers())
    (docs,) = [c.docs for c in loaded.spec.connectors if c.docs is not None]
    resolved = resolve_sources(docs, loaded.base_dir)
    assert resolved.fallback is not (INSTALLED / "tutorial").is_dir()
    shipped = EXAMPLE / "corpus"
    assert sorted(p.relative_to(shipped).as_posix() for p in shipped.rglob("*.html")) == [
        f"tutorial/{page}.html"
        for page in ("appetite", "errors", "floatingpoint", "interpreter", "modules", "stdlib", "venv")
    ]
    for page in shipped.rglob("*.html"):  # the gold ids of the evaluation hold in both corpora
        assert not excluded(page.relative_to(shipped).as_posix(), docs.exclude)
        installed = INSTALLED / page.relative_to(shipped)
        if installed.is_file():
            assert installed.read_bytes() == page.read_bytes(), "the shipped pages are python3.11-doc's"
    if not INSTALLED.is_dir():
        pytest.skip("python3.11-doc is not installed here (scripts/bootstrap.sh installs it)")
    files = [p.relative_to(INSTALLED).as_posix() for p in INSTALLED.rglob("*") if p.is_file()]
    kept = [f for f in files if not excluded(f, docs.exclude) and f.endswith(".html")]
    assert 300 <= len(kept) <= 450, len(kept)
    assert not [f for f in files if f.endswith((".txt", ".md")) and not excluded(f, docs.exclude)]
    assert "tutorial/errors.html" in kept and "library/functools.html" in kept and "glossary.html" in kept
    assert not {"genindex-A.html", "search.html", "whatsnew/changelog.html", "library/index.html"} & set(kept)


# ingest --------------------------------------------------------------------------------------------
pages = pytest.mark.slow  # the embedding model runs on the CPU


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


class _Counted(Embedder):
    """The shipped model, its calls' sizes recorded; texts with ``poison`` fail (a fault no real page
    causes)."""

    dim = 384

    def __init__(self, inner: MiniLM, *, poison: str | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.poison = poison
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls.append(len(texts))
        if self.poison is not None and any(self.poison in t for t in texts):
            raise ValueError(f"cannot embed a text with {self.poison!r}")
        return self.inner.embed(texts)


def _docs_tree(root: Path) -> Path:
    """A small tree shaped like python3.11-doc: pages, generated indexes, raw sources."""
    topics = {
        "library/functools.html": ("functools", "lru_cache memoizes a function's results by arguments"),
        "library/itertools.html": ("itertools", "chain yields the items of several iterables in turn"),
        "library/pathlib.html": ("pathlib", "Path.glob yields the files that match a pattern"),
        "tutorial/errors.html": ("Errors", "the else clause runs when the try clause raised nothing"),
        "howto/sorting.html": ("Sorting", "sorted takes a key function and is stable"),
        "genindex-A.html": ("Index A", "abs all any ascii"),
        "library/index.html": ("The Library", "functools itertools pathlib"),
        "whatsnew/changelog.html": ("Changelog", "gh-1234: lru_cache is faster"),
    }
    for path, (title, text) in topics.items():
        file = root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        sections = "".join(
            f"<h2>{title} part {n}</h2><p>{text}. " + "More words about it. " * (5 + 20 * n) + "</p>"
            for n in range(3)
        )
        file.write_text(
            f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{sections}</body></html>"
        )
    (root / "_sources" / "library").mkdir(parents=True)
    (root / "_sources" / "library" / "functools.rst.txt").write_text("functools\n=========\nlru_cache ...\n")
    return root


EXCLUDE = ["_sources/*", "genindex*.html", "index.html", "whatsnew/*"]


@pages
def test_excluded_files_are_not_ingested_and_the_rest_are(tmp_path: Path, minilm: MiniLM) -> None:
    root = _docs_tree(tmp_path / "html")
    spec = DocsConnectorSpec(collection="pydocs", sources=[str(root)], exclude=EXCLUDE)
    (report,) = ingest_sources(DocCollections.under(tmp_path), spec, resolve_sources(spec, tmp_path).paths)
    assert (report.added, report.failed) == (5, [])
    with DocIndex(collection_path(tmp_path, "pydocs"), minilm) as index:
        sources = {hit.source for hit in index.search("lru_cache functools index changelog", k=50)}
        assert index.stats()["documents"] == 5
    assert sources <= {
        "library/functools.html",
        "library/itertools.html",
        "library/pathlib.html",
        "tutorial/errors.html",
        "howto/sorting.html",
    }
    assert "library/functools.html" in sources
    # Without the patterns the generated pages and the raw sources come in too.
    with DocIndex(tmp_path / "all.db", minilm) as index:
        assert index.add([root], base=root).added == 9


@pages
def test_pages_dropped_from_the_sources_or_newly_excluded_leave_the_collection(
    tmp_path: Path, minilm: MiniLM
) -> None:
    root = _docs_tree(tmp_path / "html")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "notes.md").write_text("# Notes\n\nThe walrus operator assigns inside an expression.\n")
    spec = DocsConnectorSpec(collection="pydocs", sources=[str(root), str(extra)], exclude=EXCLUDE)
    first = ingest_sources(DocCollections.under(tmp_path), spec, resolve_sources(spec, tmp_path).paths)
    assert [r.added for r in first] == [5, 1] and first[-1].removed == []
    # A page deleted, a pattern added and a source dropped: all three go on the next ingest.
    (root / "library" / "pathlib.html").unlink()
    fewer = spec.model_copy(update={"sources": [str(root)], "exclude": [*EXCLUDE, "howto/*"]})
    (report,) = ingest_sources(DocCollections.under(tmp_path), fewer, resolve_sources(fewer, tmp_path).paths)
    assert report.removed == ["howto/sorting.html", "library/pathlib.html", "notes.md"]
    assert (report.added, report.unchanged) == (0, 3) and report.to_json()["removed"] == report.removed
    with DocIndex(collection_path(tmp_path, "pydocs"), minilm) as index:
        assert index.stats()["documents"] == 3
        found = {h.source for h in index.search("walrus stable sort Path.glob", k=50)}
        assert found <= {"library/functools.html", "library/itertools.html", "tutorial/errors.html"}
    # Nothing else changed: nothing more is removed.
    (again,) = ingest_sources(DocCollections.under(tmp_path), fewer, resolve_sources(fewer, tmp_path).paths)
    assert (again.unchanged, again.removed) == (3, [])


@pages
def test_a_missing_package_falls_back_to_the_shipped_pages(tmp_path: Path, minilm: MiniLM) -> None:
    _docs_tree(tmp_path / "shipped")
    spec = DocsConnectorSpec(
        collection="pydocs",
        sources=[str(tmp_path / "python3.11-doc-not-installed")],
        fallback=["shipped"],
        exclude=EXCLUDE,
    )
    resolved = resolve_sources(spec, tmp_path)
    assert resolved.fallback
    (report,) = ingest_sources(DocCollections.under(tmp_path), spec, resolved.paths)
    assert (report.added, report.failed) == (5, [])
    with DocIndex(collection_path(tmp_path, "pydocs"), minilm) as index:
        assert index.search("stable sort with a key function", k=1)[0].source == "howto/sorting.html"
    # Without a fallback the missing source is an error naming it.
    bare = DocsConnectorSpec(collection="bare", sources=[str(tmp_path / "python3.11-doc-not-installed")])
    with pytest.raises(ConnectorError, match=r"python3\.11-doc-not-installed: no such file"):
        ingest_sources(DocCollections.under(tmp_path), bare, resolve_sources(bare, tmp_path).paths)


def _rows(index: DocIndex) -> tuple[list[tuple[str, int, str, str]], Any]:
    rows = index.store._conn.execute(  # type: ignore[attr-defined]
        "SELECT d.source, c.ord, c.heading, c.text, c.vector FROM chunks c "
        "JOIN documents d ON d.doc_id = c.doc_id ORDER BY d.source, c.ord"
    ).fetchall()
    vectors = np.stack([np.frombuffer(r[4], dtype=np.float32) for r in rows])
    return [tuple(r[:4]) for r in rows], vectors


@pages
def test_batched_embedding_stores_what_one_document_at_a_time_does(tmp_path: Path, minilm: MiniLM) -> None:
    root = _docs_tree(tmp_path / "html")
    made = {}
    for batch in (1, 7, 10_000):
        embedder = _Counted(minilm)
        with DocIndex(tmp_path / f"batch{batch}.db", embedder) as index:
            report = index.add([root], base=root, exclude=EXCLUDE, embed_batch=batch)
            assert (report.added, report.failed) == (5, [])
            calls = list(embedder.calls)
            hits = [(h.source, h.heading, h.score) for h in index.search("key function for sorting", k=5)]
            made[batch] = (calls, *_rows(index), hits)
    per_doc, chunks, vectors, hits = made[1]
    assert len(per_doc) == 5 and sum(per_doc) == len(chunks) > 5, "one call per document"
    assert made[10_000][0] == [len(chunks)], "one call for all"
    assert 1 < len(made[7][0]) < 5 and all(n >= 7 for n in made[7][0][:-1]), "documents never split"
    for batch in (7, 10_000):
        assert made[batch][1] == chunks
        assert np.allclose(made[batch][2], vectors, atol=1e-5)
        assert [h[:2] for h in made[batch][3]] == [h[:2] for h in hits]


@pages
def test_a_document_that_fails_its_batch_is_the_only_one_lost(tmp_path: Path, minilm: MiniLM) -> None:
    root = _docs_tree(tmp_path / "html")
    embedder = _Counted(minilm, poison="stable")  # howto/sorting.html
    with DocIndex(tmp_path / "poisoned.db", embedder) as index:
        report = index.add([root], base=root, exclude=EXCLUDE)
        assert report.added == 4
        assert [(path, "stable" in error) for path, error in report.failed] == [("howto/sorting.html", True)]
        assert index.stats()["documents"] == 4
    assert embedder.calls[0] > embedder.calls[1], "the batch, then each document alone"


@pages
def test_progress_is_reported_after_each_stored_batch(tmp_path: Path, minilm: MiniLM) -> None:
    root = _docs_tree(tmp_path / "html")
    seen: list[tuple[int, int, float]] = []
    with DocIndex(tmp_path / "progress.db", _Counted(minilm)) as index:
        report = index.add(
            [root],
            base=root,
            exclude=EXCLUDE,
            embed_batch=7,
            progress=lambda r: seen.append((r.added, r.chunks, r.seconds)),
        )
    assert len(seen) >= 2, "a line per stored batch, not only at the end"
    assert seen[-1][:2] == (report.added, report.chunks) == (5, report.chunks)
    assert all(b[0] >= a[0] and b[1] > a[1] for a, b in itertools.pairwise(seen)), "counts grow"
    assert all(s[2] >= 0 for s in seen)

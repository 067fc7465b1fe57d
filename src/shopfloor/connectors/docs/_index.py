"""A document collection: BM25 and dense vectors over a ``DocStore`` (``_store.py``: a SQLite file by
default, or PostgreSQL), searched hybrid.

``add`` ingests files and directories incrementally: a document whose bytes did not change (sha256) is
skipped, a changed one replaced in one transaction, a document that fails to parse (truncated PDF,
binary, too large) reported with its path and skipped; nothing indexed before it is lost. The chunks of
consecutive documents are embedded together, ``embed_batch`` at a time (the embedder sorts a call's texts
by length and runs its batches on its threads side by side: per document, a page of three chunks was one
small batch on one thread), and each document is then written in a transaction of its own. ``search``
fuses the BM25 ranking and the cosine ranking by reciprocal rank fusion (k = 60), or runs one of them,
as its ``Ranking`` says (``_rank.py``).
Every ingest is recorded (``record``: ``_ingests.py``) with the next index version, its source (host
paths, or a workspace commit: ``_workspace.py``) and the digest set; ``current`` is the version a search
reads, and ``read`` gives one chunk or its whole document by id.
The dense ranking is the store's (``DocStore.nearest``: sqlite-vec in the SQLite file, exact; numpy in
the client on PostgreSQL), and the re-rank reads only the fused pool's vectors (``vectors_of``), so no
process holds a collection's vectors; the index records its embedding model and refuses to mix vectors
of another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shopfloor.connectors.docs._chunk import chunk_sections
from shopfloor.connectors.docs._embed import Embedder
from shopfloor.connectors.docs._ingests import IndexVersion, IngestRecord, IngestSource
from shopfloor.connectors.docs._parse import MAX_DOCUMENT_BYTES, parser_for
from shopfloor.connectors.docs._rank import Ranking, fuse, query_terms
from shopfloor.connectors.docs._sources import excluded
from shopfloor.connectors.docs._sqlite_store import SqliteDocStore
from shopfloor.connectors.docs._store import DocStore, DocumentChunks, StoredDocument
from shopfloor.errors import ConnectorError, WorkspaceError

__all__ = ["DocIndex", "Hit", "IngestReport", "Reading", "SearchMode", "SourceFile", "host_files"]

SearchMode = Literal["hybrid", "bm25", "dense"]
#: chunks embedded in one call at ingest (a document's chunks are never split between calls)
EMBED_BATCH = 256
#: what skips one document (a workspace blob that fails its hash check among them), never the ingest
_INGEST_ERRORS = (
    ConnectorError,
    WorkspaceError,
    OSError,
    UnicodeError,
    ValueError,
    RecursionError,
    MemoryError,
)


@dataclass(frozen=True, kw_only=True)
class Hit:
    chunk_id: int
    source: str
    title: str
    heading: str
    text: str
    score: float
    bm25_rank: int | None
    dense_rank: int | None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class Reading:
    """One chunk, or the whole document holding it (its chunks' headings as ``##`` lines), cut at the
    characters asked for (``truncated`` says so), with the index version it was read at."""

    chunk_id: int
    source: str
    title: str
    #: the chunk's heading ("" for a whole document)
    heading: str
    text: str
    truncated: bool
    #: the chunks the text holds, in order
    chunk_ids: tuple[int, ...]
    version: IndexVersion


@dataclass(kw_only=True)
class IngestReport:
    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    chunks: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: the ids of the documents removed because their pages are no longer among the sources
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: the id of every file the ingest found (unchanged and failed ones too), for ``remove_except``
    seen: set[str] = field(default_factory=set, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "seen"}
        data["failed"] = [{"path": path, "error": error} for path, error in self.failed]
        return data

    @staticmethod
    def total(reports: Sequence[IngestReport]) -> IngestReport:
        """Several reports (one per path of an ingest) as one."""
        total = IngestReport()
        for report in reports:
            total.added += report.added
            total.replaced += report.replaced
            total.unchanged += report.unchanged
            total.chunks += report.chunks
            total.failed += report.failed
            total.removed += report.removed
            total.seconds += report.seconds
            total.seen |= report.seen
        return total


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    """A file to ingest wherever it is: its document id, its name (whose suffix chooses the parser), its
    size, its sha256 where known without reading it (a workspace blob's id), and how to read it."""

    source: str
    name: str
    size: int
    read: Callable[[], bytes] = field(repr=False)
    digest: str | None = None


def host_files(
    paths: Iterable[Path], *, base: Path | None = None, exclude: Sequence[str] = ()
) -> Iterator[SourceFile]:
    """The files under ``paths`` on the host (``_files``), each one's id its path under ``base``."""
    for file in _files(paths, exclude):
        source = str(file.relative_to(base)) if base is not None and file.is_relative_to(base) else str(file)
        yield SourceFile(source=source, name=file.name, size=file.stat().st_size, read=file.read_bytes)


def _texts(doc: StoredDocument) -> list[str]:
    """What is embedded of a document's chunks."""
    return [f"{doc.title}\n{c.heading}\n{c.text}" for c in doc.chunks]


def _files(paths: Iterable[Path], exclude: Sequence[str]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from (
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not p.is_symlink()
                and not (exclude and excluded(p.relative_to(path).as_posix(), exclude))
            )
        elif path.is_file():
            yield path
        else:
            raise ConnectorError(f"{path}: no such file or directory")


class DocIndex:
    """One collection. Blocking (async callers use ``asyncio.to_thread``); one writer at a time.
    ``store``: where it is kept, or the path of its SQLite file."""

    def __init__(self, store: DocStore | Path, embedder: Embedder, *, ranking: Ranking | None = None) -> None:
        if isinstance(store, Path):
            store = SqliteDocStore(store, embedder=embedder.name)
        if store.embedder != embedder.name:
            where = store.where
            store.close()
            raise ConnectorError(
                f"{where}: indexed with {store.embedder}, not {embedder.name}; "
                "re-create the collection to change the model"
            )
        self.store = store
        self.embedder = embedder
        #: how ``search`` orders chunks (``_rank.py``)
        self.ranking = ranking or Ranking()
        self._lock = threading.Lock()
        self._current: tuple[object, IndexVersion] | None = None

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> DocIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ingest ----------------------------------------------------------------------------------
    def add(
        self,
        paths: Iterable[Path | str],
        *,
        base: Path | None = None,
        exclude: Sequence[str] = (),
        embed_batch: int = EMBED_BATCH,
        progress: Callable[[IngestReport], None] | None = None,
    ) -> IngestReport:
        """Ingest files and the files under directories, but those of a directory whose path under it
        an ``exclude`` pattern matches (``excluded``); a document's id is its path under ``base``.
        ``progress`` is called with the report so far after each batch is stored (its ``seconds``
        the time since the ingest started)."""
        return self.add_files(
            host_files((Path(p) for p in paths), base=base, exclude=exclude),
            embed_batch=embed_batch,
            progress=progress,
        )

    def add_files(
        self,
        files: Iterable[SourceFile],
        *,
        embed_batch: int = EMBED_BATCH,
        progress: Callable[[IngestReport], None] | None = None,
    ) -> IngestReport:
        """Ingest ``files`` (``add``'s work for files from anywhere: the host, a workspace commit)."""
        report = IngestReport()
        started = time.monotonic()
        pending: list[StoredDocument] = []
        # every stored digest in one query, not one a document (a round trip each on PostgreSQL); a writer
        # beside this one is still caught, by ``put``'s check inside its transaction
        stored = self.store.digests()
        for file in files:
            report.seen.add(file.source)
            try:
                prepared = self._prepare(file, report, stored.get(file.source))
            except _INGEST_ERRORS as exc:
                report.failed.append((file.source, str(exc)[:500]))
                continue
            if prepared is not None:
                pending.append(prepared)
                if sum(len(p.chunks) for p in pending) >= embed_batch:
                    self._write(pending, report, started, progress)
                    pending = []
        self._write(pending, report, started, progress)
        report.seconds = time.monotonic() - started
        return report

    def _write(
        self,
        pending: list[StoredDocument],
        report: IngestReport,
        started: float,
        progress: Callable[[IngestReport], None] | None,
    ) -> None:
        """Embed the pending documents' chunks in one call, then store each document, then tell
        ``progress``. A call that fails is made again a document at a time, so that only the document
        that fails it is lost."""
        if not pending:
            return
        try:
            vectors = self.embedder.embed([text for doc in pending for text in _texts(doc)])
        except _INGEST_ERRORS as exc:
            if len(pending) > 1:
                for doc in pending:
                    self._write([doc], report, started, progress)
            else:
                report.failed.append((pending[0].source, str(exc)[:500]))
            return
        at = 0
        for doc in pending:
            try:
                self._store(doc, vectors[at : at + len(doc.chunks)], report)
            except _INGEST_ERRORS as exc:  # a document its database refuses (PostgreSQL: a NUL character)
                report.failed.append((doc.source, str(exc)[:500]))
            at += len(doc.chunks)
        if progress is not None:
            report.seconds = time.monotonic() - started
            progress(report)

    def _prepare(self, file: SourceFile, report: IngestReport, stored: str | None) -> StoredDocument | None:
        """The document parsed and chunked, or None: unchanged (its digest ``stored``), or not a kind any
        parser reads."""
        source = file.source
        parser = parser_for(Path(file.name))
        if parser is None:
            return None  # not a document kind (images, scripts ...): silently not ours
        if file.size > MAX_DOCUMENT_BYTES:
            raise ConnectorError(
                f"{source}: {file.size:,} bytes, over the {MAX_DOCUMENT_BYTES:,} a document may have"
            )
        if file.digest is not None and stored == file.digest:  # known unchanged without reading it
            report.unchanged += 1
            return None
        data = file.read()
        if len(data) > MAX_DOCUMENT_BYTES:  # it grew since it was listed
            raise ConnectorError(
                f"{source}: {len(data):,} bytes, over the {MAX_DOCUMENT_BYTES:,} a document may have"
            )
        digest = hashlib.sha256(data).hexdigest()
        if stored == digest:
            report.unchanged += 1
            return None
        parsed = parser.parse(data, source)
        return StoredDocument(
            source=source, digest=digest, title=parsed.title, chunks=chunk_sections(parsed.sections)
        )

    def _store(self, doc: StoredDocument, vectors: Any, report: IngestReport) -> None:
        stored = self.store.put(
            dataclasses.replace(doc, vectors=[vector.astype(np.float32).tobytes() for vector in vectors])
        )
        if stored == "unchanged":  # another writer (a run starting beside this one) stored it meanwhile
            report.unchanged += 1
            return
        report.chunks += len(doc.chunks)
        if stored == "added":
            report.added += 1
        else:
            report.replaced += 1

    def remove_except(self, keep: Collection[str]) -> list[str]:
        """Remove every document whose id is not in ``keep`` (pages dropped from a connector's sources,
        or newly excluded), in one transaction; the ids removed, sorted."""
        return self.store.remove_except(keep)

    def record(self, source: IngestSource, reports: Sequence[IngestReport]) -> IngestRecord:
        """Record the ingest whose path reports are ``reports`` (read from ``source``): the next index
        version, with the digest of every document the collection holds now."""
        total = IngestReport.total(reports)
        return self.store.add_ingest(
            at=time.time(),
            source=source,
            added=total.added,
            replaced=total.replaced,
            unchanged=total.unchanged,
            removed=len(total.removed),
            failed=len(total.failed),
        )

    # reading ---------------------------------------------------------------------------------
    def current(self) -> IndexVersion:
        """The index version searches read now (0 before any recorded ingest), cached until another
        write changes the collection."""
        version = self.store.version()
        with self._lock:
            if self._current is not None and self._current[0] == version:
                return self._current[1]
        latest = self.store.ingests(1)
        current = (
            latest[0].index_version(self.store.name)
            if latest
            else IndexVersion(collection=self.store.name, version=0)
        )
        with self._lock:
            self._current = (version, current)
        return current

    def ingests(self, limit: int | None = None) -> list[IngestRecord]:
        """The collection's recorded ingests, newest first."""
        return self.store.ingests(limit)

    def document(self, chunk_id: int) -> DocumentChunks | None:
        """The document holding ``chunk_id`` with its chunks in order, or None once it is gone."""
        return self.store.document(chunk_id)

    def read(self, chunk_id: int, *, document: bool = False, max_chars: int) -> Reading | None:
        """The chunk ``chunk_id``, or with ``document`` its whole document, at most ``max_chars`` of
        text; None when no chunk has that id (never one, or re-ingested since)."""
        found = self.document(chunk_id)
        version = self.current()
        if found is None:
            return None
        source, title, chunks = found
        if document:
            heading = ""
            text = "\n\n".join((f"## {h}\n\n" if h else "") + body for _, h, body in chunks)
            ids = tuple(cid for cid, _, _ in chunks)
        else:
            heading, text = next((h, body) for cid, h, body in chunks if cid == chunk_id)
            ids = (chunk_id,)
        return Reading(
            chunk_id=chunk_id,
            source=source,
            title=title,
            heading=heading,
            text=text[:max_chars],
            truncated=len(text) > max_chars,
            chunk_ids=ids,
            version=version,
        )

    def stats(self) -> dict[str, Any]:
        documents, chunks = self.store.counts()
        current = self.current()
        return {
            "collection": self.store.name,
            "documents": documents,
            "chunks": chunks,
            "embedder": self.embedder.name,
            "bytes": self.store.size(),
            "vectors": self.store.vectors,
            "version": current.version,
            "commit": current.commit,
        }

    def _bm25(self, query: str, limit: int) -> list[int]:
        terms = query_terms(query, stop_words=self.ranking.stop_words)
        return self.store.bm25(terms, self.ranking, limit) if terms else []

    def search(self, query: str, *, k: int = 5, mode: SearchMode = "hybrid") -> list[Hit]:
        if not query.strip():
            raise ConnectorError("an empty query: say what to look for")
        k = max(1, min(k, 50))
        ranking = self.ranking
        bm25 = self._bm25(query, ranking.candidates) if mode in ("hybrid", "bm25") else []
        vector = self.embedder.embed([query])[0].astype(np.float32) if mode in ("hybrid", "dense") else None
        dense = (
            [cid for cid, _ in self.store.nearest(vector.tobytes(), ranking.candidates)]
            if vector is not None
            else []
        )
        bm25_rank = {cid: i for i, cid in enumerate(bm25, 1)}
        dense_rank = {cid: i for i, cid in enumerate(dense, 1)}
        documents: dict[int, int] = {}
        if ranking.document_boost or ranking.per_document:
            documents = self.store.documents_of(list(bm25_rank.keys() | dense_rank.keys()))
            # a chunk deleted since it was ranked (another process re-ingested its page) is left out
            bm25, dense = [c for c in bm25 if c in documents], [c for c in dense if c in documents]
        pool = max(k, ranking.rerank)
        scored = fuse([(bm25, ranking.bm25_weight), (dense, ranking.dense_weight)], documents, ranking, pool)
        if ranking.rerank and vector is not None and scored:
            # the fused pool in the order of the chunks' cosine to the query (their fused scores kept)
            stored = self.store.vectors_of([cid for cid, _ in scored])
            cosine = {
                cid: float(np.frombuffer(stored[cid], dtype=np.float32) @ vector) if cid in stored else -1.0
                for cid, _ in scored
            }
            scored = sorted(scored, key=lambda pair: -cosine[pair[0]])
        scored = scored[:k]
        fused = dict(scored)
        best = [cid for cid, _ in scored]
        if not best:
            return []
        rows = self.store.passages(best)
        return [
            Hit(
                chunk_id=cid,
                source=rows[cid][0],
                title=rows[cid][1],
                heading=rows[cid][2],
                text=rows[cid][3],
                score=round(fused[cid], 6),
                bm25_rank=bm25_rank.get(cid),
                dense_rank=dense_rank.get(cid),
            )
            for cid in best
            if cid in rows
        ]

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
The dense ranking is the store's (``DocStore.nearest``: sqlite-vec in the SQLite file, exact; numpy in
the client on PostgreSQL), and the re-rank reads only the fused pool's vectors (``vectors_of``), so no
process holds a collection's vectors; the index records its embedding model and refuses to mix vectors
of another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shopfloor.connectors.docs._chunk import chunk_sections
from shopfloor.connectors.docs._embed import Embedder
from shopfloor.connectors.docs._parse import MAX_DOCUMENT_BYTES, parser_for
from shopfloor.connectors.docs._rank import Ranking, fuse, query_terms
from shopfloor.connectors.docs._sources import excluded
from shopfloor.connectors.docs._sqlite_store import SqliteDocStore
from shopfloor.connectors.docs._store import DocStore, StoredDocument
from shopfloor.errors import ConnectorError

__all__ = ["DocIndex", "Hit", "IngestReport", "SearchMode"]

SearchMode = Literal["hybrid", "bm25", "dense"]
#: chunks embedded in one call at ingest (a document's chunks are never split between calls)
EMBED_BATCH = 256
_INGEST_ERRORS = (ConnectorError, OSError, UnicodeError, ValueError, RecursionError, MemoryError)


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
        report = IngestReport()
        started = time.monotonic()
        pending: list[StoredDocument] = []
        for file in _files((Path(p) for p in paths), exclude):
            source = (
                str(file.relative_to(base)) if base is not None and file.is_relative_to(base) else str(file)
            )
            report.seen.add(source)
            try:
                prepared = self._prepare(file, source, report)
            except _INGEST_ERRORS as exc:
                report.failed.append((source, str(exc)[:500]))
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

    def _prepare(self, file: Path, source: str, report: IngestReport) -> StoredDocument | None:
        """The document parsed and chunked, or None: unchanged, or not a kind any parser reads."""
        parser = parser_for(file)
        if parser is None:
            return None  # not a document kind (images, scripts ...): silently not ours
        size = file.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise ConnectorError(
                f"{source}: {size:,} bytes, over the {MAX_DOCUMENT_BYTES:,} a document may have"
            )
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if self.store.digest(source) == digest:
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

    # reading ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        documents, chunks = self.store.counts()
        return {
            "collection": self.store.name,
            "documents": documents,
            "chunks": chunks,
            "embedder": self.embedder.name,
            "bytes": self.store.size(),
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

"""Document collections for retrieval: parsers (HTML, Markdown, PDF, text), chunking, a CPU embedding
model (all-MiniLM-L6-v2 in numpy), a hybrid BM25 + dense index kept in SQLite or PostgreSQL
(``DocStore``, ``doc_stores()``; where: ``DocCollections``), fused by reciprocal rank, and
research over it: routed (depth, model, collections: ``Router``), planned, written with citations and
verified (``Researcher``), a deep plan's sub-questions each in a child run where the run has them
(``ChildResearch``). Every ingest is recorded with an index version (``IngestRecord``); a collection may be
built from a workspace at a commit (``WorkspaceSource``, ``ingest_workspace``)."""

from shopfloor.connectors.docs._children import (
    ChildResearch,
    SubQuestion,
    research_notes,
    research_sub_question,
)
from shopfloor.connectors.docs._chunk import Chunk, chunk_sections
from shopfloor.connectors.docs._collections import DocCollections
from shopfloor.connectors.docs._embed import Embedder, MiniLM, embedders
from shopfloor.connectors.docs._index import (
    DocIndex,
    Hit,
    IngestReport,
    Reading,
    SearchMode,
    SourceFile,
    host_files,
)
from shopfloor.connectors.docs._ingests import IndexVersion, IngestRecord, IngestSource
from shopfloor.connectors.docs._parse import MAX_DOCUMENT_BYTES, Parsed, Parser, Section, parser_for, parsers
from shopfloor.connectors.docs._rank import Ranking, fts_query, query_terms
from shopfloor.connectors.docs._research import (
    Claim,
    Found,
    Passage,
    Removed,
    Researcher,
    ResearchReport,
    SubResearch,
)
from shopfloor.connectors.docs._route import (
    Collection,
    Depth,
    ModelRoute,
    Route,
    Router,
    RouterMode,
    arithmetic,
    deep_tokens_estimate,
    direct_answer,
)
from shopfloor.connectors.docs._sources import ResolvedSources, excluded, resolve_sources
from shopfloor.connectors.docs._sqlite_store import SqliteDocStore, collection_path
from shopfloor.connectors.docs._store import DocStore, StoredDocument, check_collection_name, doc_stores
from shopfloor.connectors.docs._verify import Citation, CitationVerifier, Support, content_words
from shopfloor.connectors.docs._workspace import (
    WorkspaceSource,
    ingest_workspace,
    workspace_files,
    workspace_path,
)

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "ChildResearch",
    "Chunk",
    "Citation",
    "CitationVerifier",
    "Claim",
    "Collection",
    "Depth",
    "DocCollections",
    "DocIndex",
    "DocStore",
    "Embedder",
    "Found",
    "Hit",
    "IndexVersion",
    "IngestRecord",
    "IngestReport",
    "IngestSource",
    "MiniLM",
    "ModelRoute",
    "Parsed",
    "Parser",
    "Passage",
    "Ranking",
    "Reading",
    "Removed",
    "ResearchReport",
    "Researcher",
    "ResolvedSources",
    "Route",
    "Router",
    "RouterMode",
    "SearchMode",
    "Section",
    "SourceFile",
    "SqliteDocStore",
    "StoredDocument",
    "SubQuestion",
    "SubResearch",
    "Support",
    "WorkspaceSource",
    "arithmetic",
    "check_collection_name",
    "chunk_sections",
    "collection_path",
    "content_words",
    "deep_tokens_estimate",
    "direct_answer",
    "doc_stores",
    "embedders",
    "excluded",
    "fts_query",
    "host_files",
    "ingest_workspace",
    "parser_for",
    "parsers",
    "query_terms",
    "research_notes",
    "research_sub_question",
    "resolve_sources",
    "workspace_files",
    "workspace_path",
]

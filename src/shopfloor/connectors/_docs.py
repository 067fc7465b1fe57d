"""A document collection as a connector: the ``NAME__retrieve`` tool searches it (hybrid by default)
and returns passages with their source, heading, ranks and a citation id the answer can name; the
``NAME__research`` tool answers a question from it with verified citations (``docs/_research.py``),
routed per question (``docs/_route.py``: depth, model route, collections, fitted to the run's budget),
asking the route's model, and writes its report to the workspace; the ``NAME__read`` tool reads one
chunk, or its whole document, by the id a retrieval returned (a resource read, bounded). A connector may
search several collections (its own and ``collections``). Each search is a ``retrieval`` span with the
query, the ids, the scores and the index version it read (and the workspace commit it was built from);
the retrieve tool's result names them too (``index``)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as otel_trace

from shopfloor.connectors._base import Connector, Secrets, tool_name
from shopfloor.errors import ToolExecutionError
from shopfloor.spec import ConnectorSpec, DocsConnectorSpec
from shopfloor.telemetry import COMPONENT, open_span, record_content
from shopfloor.tools import Ask, Proposal, Tool, ToolContext

if TYPE_CHECKING:
    from shopfloor.connectors.docs import DocCollections, IngestRecord, IngestReport, Researcher
    from shopfloor.workspace import Workspace

__all__ = ["DocsConnector", "ingest_sources", "ingest_workspace_sources"]

_MAX_QUERY_CHARS = 2_000
#: the characters a ``read`` returns at most (a whole document is cut there, and says so)
_MAX_READ_CHARS = 20_000
#: a retrieval id: ``COLLECTION:CHUNK``
_CHUNK_ID = re.compile(r"^([a-z][a-z0-9_-]{0,62}):([0-9]{1,18})\Z")
#: passages each query of a research pass retrieves, and the characters of each a writer reads
_PER_QUERY = 4
_PASSAGE_CHARS = 700
_log = logging.getLogger(__name__)


def ingest_sources(
    collections: DocCollections,
    docs: DocsConnectorSpec,
    paths: list[Path],
    *,
    progress: Callable[[IngestReport], None] | None = None,
) -> list[Any]:
    """Ingest a connector's ``sources`` (resolved to ``paths``) into its collection: blocking, incremental
    by digest, safe beside another run doing the same (``resolve_sources`` gives the paths, less the
    spec's ``exclude``). Each document's id is its path under its source directory. The collection then
    holds those paths' documents only: a document no path has any more (a source dropped, a page deleted
    or newly excluded) is removed, and the last report lists it (``removed``). The reports
    (``IngestReport``), one per path; documents that failed are logged. ``progress``: called with a
    path's report so far after each embedding batch (``DocIndex.add``)."""
    from shopfloor.connectors.docs import IngestSource, MiniLM

    reports = []
    with collections.open(docs.collection, MiniLM(), create=True) as index:
        for path in paths:
            base = path if path.is_dir() else path.parent
            report = index.add([path], base=base, exclude=docs.exclude, progress=progress)
            for source, error in report.failed:
                _log.warning("collection %s: skipped %s: %s", docs.collection, source, error)
            reports.append(report)
        if reports:
            reports[-1].removed = index.remove_except(set().union(*(r.seen for r in reports)))
            if reports[-1].removed:
                _log.warning(
                    "collection %s: removed %d documents no source has any more (%s ...)",
                    docs.collection,
                    len(reports[-1].removed),
                    ", ".join(reports[-1].removed[:5]),
                )
        index.record(IngestSource(kind="paths", paths=tuple(str(p) for p in paths)), reports)
    return reports


def ingest_workspace_sources(
    collections: DocCollections,
    docs: DocsConnectorSpec,
    workspace: Workspace,
    *,
    progress: Callable[[IngestReport], None] | None = None,
) -> tuple[IngestReport, IngestRecord]:
    """Ingest a connector's ``workspace: WS[@REF]`` (``workspace`` the handle of WS; only its ``sources``
    paths inside it when given, less ``exclude``) into its collection, recorded with the commit the ref
    resolved to (``ingest_workspace``); blocking."""
    from shopfloor.connectors.docs import MiniLM, WorkspaceSource, ingest_workspace

    assert docs.workspace is not None
    source = WorkspaceSource.parse(docs.workspace, docs.sources)
    with collections.open(docs.collection, MiniLM(), create=True) as index:
        report, record = ingest_workspace(index, workspace, source, exclude=docs.exclude, progress=progress)
    for path, error in report.failed:
        _log.warning("collection %s: skipped %s: %s", docs.collection, path, error)
    return report, record


class DocsConnector(Connector):
    def __init__(self, spec: ConnectorSpec, secrets: Secrets, *, collections: DocCollections) -> None:
        super().__init__(spec, secrets)
        assert spec.docs is not None
        self.docs: DocsConnectorSpec = spec.docs
        #: where the collections are (``[docs] url``)
        self.where = collections
        #: the collections searched: the connector's own first, then its further ``collections``
        self.names = [self.docs.collection, *(c.collection for c in self.docs.collections)]
        self._indexes: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def index(self, collection: str | None = None) -> Any:
        """The index of ``collection`` (the connector's own by default), opened once."""
        name = collection or self.docs.collection
        async with self._lock:
            if name not in self._indexes:
                from shopfloor.connectors.docs import MiniLM

                self._indexes[name] = await asyncio.to_thread(self.where.open, name, MiniLM())
            return self._indexes[name]

    def collections(self) -> list[Any]:
        """The collections as the router knows them (name, description, keywords)."""
        from shopfloor.connectors.docs import Collection

        own = Collection(
            name=self.docs.collection, description=self.docs.description, keywords=tuple(self.docs.keywords)
        )
        return [
            own,
            *(
                Collection(name=c.collection, description=c.description, keywords=tuple(c.keywords))
                for c in self.docs.collections
            ),
        ]

    async def retrieve(
        self, query: str, k: int | None, collections: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The best ``k`` passages for ``query`` from ``collections`` (all the connector's when empty),
        merged by score where there are several."""
        return (await self.retrieve_versioned(query, k, collections))[0]

    async def retrieve_versioned(
        self, query: str, k: int | None, collections: Sequence[str] = ()
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """``retrieve``'s passages and, for each collection searched, the index version it read and the
        workspace commit that version was built from."""
        chosen = [name for name in collections if name in self.names] or self.names
        k = k or self.docs.k
        found = await asyncio.gather(*(self._search(name, query, k) for name in chosen))
        versions = {name: version for name, (_, version) in zip(chosen, found, strict=True)}
        if len(found) == 1:
            return found[0][0], versions
        merged = sorted((hit for hits, _ in found for hit in hits), key=lambda hit: -float(hit["score"]))
        return merged[:k], versions

    async def versions(self, collections: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        """The index version (and workspace commit) each of ``collections`` (all when empty) serves now."""
        chosen = [name for name in collections if name in self.names] or self.names
        found = {}
        for name in chosen:
            current = await asyncio.to_thread((await self.index(name)).current)
            found[name] = {"version": current.version, "commit": current.commit}
        return found

    async def _search(
        self, collection: str, query: str, k: int
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        index = await self.index(collection)
        attributes = {
            "gen_ai.operation.name": "retrieval",
            "gen_ai.data_source.id": collection,
            "shopfloor.retrieval.mode": self.docs.mode,
            COMPONENT: "retrieval",
        }
        with open_span(f"retrieval {collection}", attributes) as span:
            hits, current = await asyncio.to_thread(self._versioned_search, index, query, k)
            if span is not None:
                record_content(span, "shopfloor.retrieval.query", query[:_MAX_QUERY_CHARS], full=False)
                span.set_attribute("shopfloor.retrieval.ids", [f"{collection}:{h.chunk_id}" for h in hits])
                span.set_attribute("shopfloor.retrieval.scores", [h.score for h in hits])
                span.set_attribute("shopfloor.retrieval.index_version", current.version)
                if current.commit is not None:
                    span.set_attribute("shopfloor.retrieval.source_commit", current.commit)
        return [
            {
                "id": f"{collection}:{hit.chunk_id}",
                "source": hit.source,
                "title": hit.title,
                "heading": hit.heading,
                "text": hit.text,
                "score": hit.score,
                "bm25_rank": hit.bm25_rank,
                "dense_rank": hit.dense_rank,
            }
            for hit in hits
        ], {"version": current.version, "commit": current.commit}

    def _versioned_search(self, index: Any, query: str, k: int) -> tuple[list[Any], Any]:
        """``index``'s hits for ``query`` and the index version they are from: an ingest recorded while
        the search ran (the version before and after differ) gets the search made again, once; after a
        second such race the version is the newer one."""
        for _ in range(2):
            before = index.current()
            hits = index.search(query[:_MAX_QUERY_CHARS], k=k, mode=self.docs.mode)
            after = index.current()
            if after == before:
                break
        return hits, after

    async def read(self, chunk: str, *, document: bool = False) -> dict[str, Any]:
        """The chunk ``chunk`` (an id ``retrieve`` returned), or with ``document`` its whole document, with
        its source and the index version; at most ``_MAX_READ_CHARS`` of text (``truncated`` says so)."""
        match = _CHUNK_ID.match(chunk)
        if match is None:
            raise ToolExecutionError(
                f"id {chunk[:80]!r} is not a passage id: give one a retrieve call returned "
                "(COLLECTION:NUMBER)"
            )
        collection, number = match.group(1), int(match.group(2))
        if collection not in self.names:
            raise ToolExecutionError(
                f"id {chunk!r}: collection {collection!r} is not one this connector reads "
                f"({', '.join(self.names)})"
            )
        index = await self.index(collection)
        found = await asyncio.to_thread(index.read, number, document=document, max_chars=_MAX_READ_CHARS)
        if found is None:
            current = await asyncio.to_thread(index.current)
            raise ToolExecutionError(
                f"id {chunk!r}: no such passage in collection {collection} (index version "
                f"{current.version}); it may have been re-ingested since: retrieve again"
            )
        return {
            "id": chunk,
            "source": found.source,
            "title": found.title,
            "heading": found.heading,
            "text": found.text,
            "truncated": found.truncated,
            "chunks": [f"{collection}:{cid}" for cid in found.chunk_ids],
            "index": found.version.to_json(),
        }

    async def tools(self) -> list[Tool]:
        for name in self.names:  # a run does not start without its collections
            await self.index(name)
        return self.allowed(
            [_RetrieveTool(self), _ReadTool(self), _ResearchTool(self)],
            lambda tool: tool.name.rpartition("__")[2],
        )

    async def aclose(self) -> None:
        indexes, self._indexes = self._indexes, {}
        for index in indexes.values():
            index.close()


class _RetrieveTool(Tool):
    kind = "datastore"

    def __init__(self, connector: DocsConnector) -> None:
        self.connector = connector
        self.name = tool_name(connector.name, "retrieve")
        self.description = (
            f"Search the {connector.docs.collection} documents for passages about a question; each passage "
            "comes with an id to cite, its source and heading"
        )
        self.input_schema = {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": _MAX_QUERY_CHARS},
                "k": {"type": "integer", "minimum": 1, "maximum": 20, "description": "how many passages"},
            },
            "required": ["query"],
            "additionalProperties": False,
        }

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        k = args.get("k")
        passages, versions = await self.connector.retrieve_versioned(
            str(args["query"]), int(k) if k is not None else None
        )
        return {"passages": passages, "index": versions}


class _ReadTool(Tool):
    """A resource read: one passage, or its whole document, by the id a retrieval returned."""

    kind = "datastore"

    def __init__(self, connector: DocsConnector) -> None:
        self.connector = connector
        self.name = tool_name(connector.name, "read")
        self.description = (
            f"Read one passage of the {connector.docs.collection} documents by the id a retrieve call "
            "returned, or with document: true the whole document it is in"
        )
        self.input_schema = {
            "type": "object",
            "properties": {
                "id": {"type": "string", "minLength": 3, "maxLength": 90, "description": "a passage id"},
                "document": {"type": "boolean", "description": "the whole document, not just the passage"},
            },
            "required": ["id"],
            "additionalProperties": False,
        }

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        return await self.connector.read(str(args["id"]), document=bool(args.get("document", False)))


_SLUG = re.compile(r"[^a-z0-9]+")


def _slug(text: str, default: str) -> str:
    """A report's file name from a question: lowercase words joined by '-', at most 60 characters."""
    return _SLUG.sub("-", text.lower()).strip("-")[:60] or default


class _ResearchTool(Tool):
    """Answers a question from the collection: routed, planned, retrieved in parallel, written with numbered
    citations and verified; the output's ``answer`` is the answer with its sources (an agent with
    ``answer: tool_result`` ends its run with it)."""

    kind = "datastore"

    def __init__(self, connector: DocsConnector) -> None:
        self.connector = connector
        self.name = tool_name(connector.name, "research")
        #: a deep question's plan is approved by a person before it is researched
        self.proposes = connector.docs.research.approve_plan
        self.description = (
            f"Research a question in the {connector.docs.collection} documents and answer it with "
            "verified citations to the passages"
        )
        self.input_schema = {
            "type": "object",
            "properties": {
                "question": {"type": "string", "minLength": 1, "maxLength": _MAX_QUERY_CHARS},
                "depth": {
                    "enum": ["direct", "shallow", "deep"],
                    "description": "leave out to let the router choose",
                },
            },
            "required": ["question"],
            "additionalProperties": False,
        }

    async def next_schema(
        self, chosen: dict[str, Any], stage: int, *, task: str = ""
    ) -> dict[str, Any] | None:
        """The question is the run's task: a small model is not asked to copy (and so reword) it."""
        if stage > 0:
            return None
        if not task.strip():
            return {
                **self.input_schema,
                "properties": {"question": self.input_schema["properties"]["question"]},
            }
        return {
            "type": "object",
            "properties": {"question": {"enum": [task[:_MAX_QUERY_CHARS]]}},
            "required": ["question"],
            "additionalProperties": False,
        }

    async def _researcher(
        self,
        ctx: ToolContext,
        collections: Sequence[str] = (),
        sub_research: Any = None,
        searched: dict[str, dict[str, Any]] | None = None,
    ) -> Researcher:
        """The researcher of this call: its router, the ``easy`` and ``hard`` model routes, and a
        retrieval over ``collections`` (the connector's every collection when empty); a deep plan's
        sub-questions researched by ``sub_research`` (child runs) where given. ``searched``: filled with
        the index version each search read, per collection (the newest where they differ)."""
        from shopfloor.connectors.docs import (
            CitationVerifier,
            Passage,
            Researcher,
            Router,
            deep_tokens_estimate,
        )

        settings = self.connector.docs.research
        easy, hard = self._ask(ctx, settings.models.easy), self._ask(ctx, settings.models.hard)
        index = await self.connector.index()

        async def retrieve(query: str, k: int) -> list[Passage]:
            hits, versions = await self.connector.retrieve_versioned(query, k, collections)
            if searched is not None:
                for name, version in versions.items():
                    if version["version"] >= searched.get(name, {}).get("version", -1):
                        searched[name] = version
            return [
                Passage(
                    id=h["id"],
                    source=h["source"],
                    title=h["title"],
                    heading=h["heading"],
                    text=h["text"],
                    score=h["score"],
                )
                for h in hits
            ]

        router = Router(
            mode=settings.router,
            ask=easy if settings.router != "rules" else None,
            collections=self.connector.collections(),
            direct=settings.direct,
            easy=settings.models.easy,
            hard=settings.models.hard,
            deep_tokens=settings.deep_tokens
            or deep_tokens_estimate(
                sub_questions=settings.sub_questions, per_query=_PER_QUERY, passage_chars=_PASSAGE_CHARS
            ),
            deep_seconds=settings.deep_seconds,
        )
        return Researcher(
            retrieve=retrieve,
            verifier=CitationVerifier(index.embedder, judge=easy if settings.judge else None),
            ask=easy,
            hard=hard,
            router=router,
            per_query=_PER_QUERY,
            passage_chars=_PASSAGE_CHARS,
            max_passages=settings.passages,
            max_sub_questions=settings.sub_questions,
            max_claims=settings.sentences,
            sub_research=sub_research,
            sequential=settings.researchers == "sequential",
        )

    def _ask(self, ctx: ToolContext, route: str | None) -> Ask:
        """The run's model (``route`` None), or the model ``route`` names, as an ``Ask``."""
        ask, ask_model = ctx.services.ask, ctx.services.ask_model
        if ask is None:
            raise ToolExecutionError(f"{self.name} asks the run's model and has none here")
        if route is None:
            return ask
        if ask_model is None:
            raise ToolExecutionError(f"{self.name} asks the model route {route!r} and this run lends none")
        asking = ask_model

        async def routed(
            prompt: str, *, schema: dict[str, Any], system: str = "", max_tokens: int = 256
        ) -> str:
            return await asking(route, prompt, schema=schema, system=system, max_tokens=max_tokens)

        return routed

    def _depth(self, args: dict[str, Any]) -> Any:
        depth = self.connector.docs.research.depth
        return args.get("depth") or (None if depth == "auto" else depth)

    async def propose(self, args: dict[str, Any], ctx: ToolContext) -> Proposal | None:
        """With ``approve_plan``: the route, and for a deep question the planner's sub-questions, which a
        person approves before anything is researched."""
        researcher = await self._researcher(ctx)
        question = str(args["question"])
        route = await researcher.route(question, depth=self._depth(args), budget=ctx.services.budget)
        plan = await researcher.plan(question) if route.depth == "deep" else []
        data = {"route": route.to_json(), "sub_questions": plan}
        return Proposal(data=data, needs_approval=route.depth == "deep", editable=self._editable())

    def _editable(self) -> dict[str, Any]:
        """What the approver may change: the sub-questions, as many as a plan may have, each one line of
        the length the planner writes. The route stays as decided."""
        return {
            "sub_questions": {
                "type": "array",
                "minItems": 1,
                "maxItems": self.connector.docs.research.sub_questions,
                "items": {
                    "type": "string",
                    "minLength": 3,
                    "maxLength": 160,
                    "pattern": "^[^\\u0000-\\u001f\\u007f]*$",
                    "description": "one line without control characters",
                },
            }
        }

    async def call_child(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        """A deep question's sub-question, researched in a child run of its own (``ChildResearch``);
        its findings go to the child's branch of the workspace as well."""
        from shopfloor.connectors.docs import research_notes, research_sub_question

        found = await research_sub_question(await self._researcher(ctx), params)
        settings = self.connector.docs.research
        workspace = ctx.services.workspace
        if settings.report_dir is not None and workspace is not None and not workspace.read_only:
            slug = _slug(found["sub_question"], "sub-question")
            await workspace.write(
                f"{settings.report_dir.rstrip('/')}/sub-questions/{slug}.md", research_notes(found)
            )
        return found

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        from shopfloor.connectors.docs import ChildResearch, Route

        settings = self.connector.docs.research
        budget = ctx.services.budget
        # Deep: each sub-question researched in a child run, where the run lends its tools children.
        children = ctx.services.children
        in_children = (
            ChildResearch(
                children=children, ctx=ctx, tool=self.name, sequential=settings.researchers == "sequential"
            )
            if children
            else None
        )
        searched: dict[str, dict[str, Any]] = {}
        researcher = await self._researcher(ctx, sub_research=in_children, searched=searched)
        question = str(args["question"])
        proposal = ctx.proposal
        if self.proposes and proposal is None:
            raise ToolExecutionError(f"{self.name} researches a plan only once it was proposed and approved")
        if proposal is not None:
            route = Route.from_json(proposal["route"])
            plan: list[str] | None = [str(q) for q in proposal["sub_questions"]]
        else:
            route, plan = await researcher.route(question, depth=self._depth(args), budget=budget), None
        if route.collections:
            researcher = await self._researcher(ctx, route.collections, in_children, searched)
        report = await researcher.research(
            question, route=route, plan=plan, escalate=proposal is None, budget=budget
        )
        # passages researched in child runs were searched there: the versions the collections serve now
        report.indexes = dict(sorted(searched.items())) or (
            await self.connector.versions(route.collections) if report.passages else {}
        )
        approved = proposal is not None and proposal["route"]["depth"] == "deep"
        # The routing decision and what the verifier did, on the tool's span (the output records them too).
        otel_trace.get_current_span().set_attributes(
            {
                **report.route.attributes(),
                "shopfloor.research.depth": report.depth,
                "shopfloor.research.escalated": report.escalated or "",
                "shopfloor.research.plan_approved": approved,
                "shopfloor.research.sentences_kept": len(report.claims),
                "shopfloor.research.sentences_removed": len(report.removed),
            }
        )
        output = report.to_json()
        if in_children is not None and in_children.outcomes:
            output["children"] = in_children.to_json()
        workspace = ctx.services.workspace
        if settings.report_dir is not None and workspace is not None:
            slug = _slug(question, "report")
            path = f"{settings.report_dir.rstrip('/')}/{slug}.md"
            await workspace.write(path, report.markdown())
            output["report"] = path
        return output

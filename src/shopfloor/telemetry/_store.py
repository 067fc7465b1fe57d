"""The local trace store: finished spans in SQL (SQLite by default, PostgreSQL by URL).

Written only from the span processor's export thread, in batches (one
transaction per batch), so tracing never adds a synchronous write to a step.
SQLAlchemy Core keeps the one code path for both databases.

The export thread shares the GIL with the event loop that runs every agent, so its work per
span is kept small: the exporter turns a finished span straight into its row (``_span_row``,
no ``SpanRecord`` in between unless something reads the records) and the rows go to the
driver's ``executemany`` through one statement compiled when the store opens.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from shopfloor._json import COMPACT
from shopfloor.errors import ConfigError, TelemetryError
from shopfloor.storage import Engines, create_tables, make_engine
from shopfloor.telemetry._conventions import (
    AGENT_NAME,
    AGENT_VERSION,
    COMPONENT,
    CONVERSATION_ID,
    ERROR_TYPE,
    INPUT_MESSAGES,
    INPUT_TOKENS,
    OPERATION_NAME,
    OUTPUT_MESSAGES,
    OUTPUT_TOKENS,
    PROCESS_CPU,
    PROCESS_MEMORY,
    PROCESS_PID,
    PROVIDER_NAME,
    REQUEST_MODEL,
    RESPONSE_FINISH_REASONS,
    RESPONSE_MODEL,
    RUN_ID,
    RUN_OUTPUT,
    RUN_STATUS,
    RUN_STOP_REASON,
    RUN_TASK,
    SANDBOX_CPU,
    SANDBOX_MEMORY,
    STEP,
    STEP_NAME,
    STEP_OUTPUT,
    TIME_TO_FIRST_CHUNK,
    TOKENS_PER_SECOND,
    TOOL_ARGUMENTS,
    TOOL_CALL_ID,
    TOOL_NAME,
    TOOL_RESULT,
    TOOL_TYPE,
)
from shopfloor.telemetry._records import STATUS_NAMES, SpanRecord

__all__ = ["LocalStoreExporter", "TraceStore"]

_metadata = sa.MetaData()
spans_table = sa.Table(
    "telemetry_spans",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("span_id", sa.String(16), nullable=False),
    sa.Column("parent_span_id", sa.String(16)),
    sa.Column("run_id", sa.String(200), index=True),
    sa.Column("agent", sa.String(200)),
    sa.Column("component", sa.String(32)),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("start_ns", sa.BigInteger, nullable=False, index=True),
    sa.Column("end_ns", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("status_message", sa.Text),
    sa.Column("attributes", sa.Text, nullable=False),
    sa.Column("events", sa.Text),
    sa.Column("service", sa.String(200), nullable=False),
)
_COLUMNS = [column.name for column in spans_table.columns if column.name != "id"]

# Attribute keys are most of a span's bytes; the common ones are stored as short codes. Append
# only: a code's meaning must never change, or stored spans would decode wrongly.
_KEY_CODES = [
    OPERATION_NAME,
    PROVIDER_NAME,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    RESPONSE_FINISH_REASONS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    TIME_TO_FIRST_CHUNK,
    AGENT_NAME,
    AGENT_VERSION,
    CONVERSATION_ID,
    TOOL_NAME,
    TOOL_CALL_ID,
    TOOL_TYPE,
    INPUT_MESSAGES,
    OUTPUT_MESSAGES,
    TOOL_ARGUMENTS,
    TOOL_RESULT,
    ERROR_TYPE,
    PROCESS_PID,
    RUN_STATUS,
    RUN_STOP_REASON,
    RUN_TASK,
    RUN_OUTPUT,
    STEP,
    STEP_NAME,
    STEP_OUTPUT,
    TOKENS_PER_SECOND,
    SANDBOX_CPU,
    SANDBOX_MEMORY,
    PROCESS_CPU,
    PROCESS_MEMORY,
    "gen_ai.request.max_tokens",
    "gen_ai.request.temperature",
    "shopfloor.plan.attempt",
    "shopfloor.plan.strategy",
    "shopfloor.agent.spec",
    "shopfloor.agent.digest",
    "exception.type",
    "exception.message",
    "exception.stacktrace",
    "exception.escaped",
]
_ENCODE = {key: f"~{i}" for i, key in enumerate(_KEY_CODES)}
_DECODE = {code: key for key, code in _ENCODE.items()}
# Kept in their own columns, so not repeated in the attributes.
_IN_COLUMNS = frozenset({RUN_ID, COMPONENT})


#: ``json.dumps(value, separators=(",", ":"), default=str)`` without building an encoder per call
_json = COMPACT.encode
_KIND_NAMES = {kind: kind.name.lower() for kind in SpanKind}


def _encode(attributes: Mapping[str, Any]) -> str:
    # A tuple (a span's sequence value) is written as the list a ``SpanRecord`` holds: the same JSON.
    return _json({_ENCODE.get(k, k): v for k, v in attributes.items() if k not in _IN_COLUMNS})


def _record_row(r: SpanRecord) -> tuple[Any, ...]:
    return (
        r.trace_id,
        r.span_id,
        r.parent_span_id,
        r.run_id,
        r.agent,
        r.component,
        r.name,
        r.kind,
        r.start_ns,
        r.end_ns,
        r.status,
        r.status_message,
        _encode(r.attributes),
        _json(r.events) if r.events else None,
        r.service,
    )


def _span_row(span: ReadableSpan, service: str) -> tuple[Any, ...]:
    """The row ``_record_row(SpanRecord.from_span(span))`` makes, without the record (a test checks)."""
    ctx = span.context
    parent = span.parent
    attributes = span.attributes or {}
    run_id = attributes.get(RUN_ID, attributes.get(CONVERSATION_ID))
    agent = attributes.get(AGENT_NAME)
    component = attributes.get(COMPONENT)
    status = span.status
    start = span.start_time or 0
    events = span.events
    return (
        format(ctx.trace_id, "032x") if ctx else "0" * 32,
        format(ctx.span_id, "016x") if ctx else "0" * 16,
        format(parent.span_id, "016x") if parent else None,
        str(run_id) if run_id is not None else None,
        str(agent) if agent is not None else None,
        str(component) if component is not None else None,
        span.name,
        _KIND_NAMES[span.kind],
        start,
        span.end_time or start,
        STATUS_NAMES[status.status_code],
        status.description,
        _encode(attributes),
        _json([_event(e) for e in events]) if events else None,
        service,
    )


def _event(event: Event) -> dict[str, Any]:
    return {"name": event.name, "time_ns": event.timestamp, "attributes": dict(event.attributes or {})}


def _decode(text: str, run_id: str | None, component: str | None) -> dict[str, Any]:
    attributes = {_DECODE.get(k, k): v for k, v in json.loads(text).items()}
    if run_id is not None:
        attributes[RUN_ID] = run_id
    if component is not None:
        attributes[COMPONENT] = component
    return attributes


class TraceStore:
    """Spans by run, by time and by agent. Blocking: call from a thread in async code."""

    def __init__(self, url: str, *, engines: Engines | None = None) -> None:
        """``engines``: the process's shared engines (``storage.Engines``), else one of its own."""
        self.url = url
        self._owns_engine = engines is None
        try:
            # Traces are diagnostics: a power loss may drop the last batch, never corrupts.
            self.engine = (
                engines.get(url, durability="normal")
                if engines is not None
                else make_engine(url, durability="normal")
            )
        except ConfigError as exc:
            raise TelemetryError(f"trace store URL {url!r} is not usable: {exc}") from exc
        self._lock = threading.Lock()
        compiled = spans_table.insert().compile(dialect=self.engine.dialect, column_keys=_COLUMNS)
        self._insert = compiled.string
        self._positional = compiled.positional
        if self._positional and list(compiled.positiontup or ()) != _COLUMNS:
            raise TelemetryError(f"unexpected parameter order for {self.engine.dialect.name}")
        try:
            create_tables(self.engine, _metadata)
        except sa.exc.SQLAlchemyError as exc:
            raise TelemetryError(f"cannot open the trace store at {url}: {exc}") from exc

    def write(self, records: Sequence[SpanRecord]) -> None:
        self._insert_rows([_record_row(r) for r in records])

    def write_spans(self, spans: Sequence[ReadableSpan]) -> None:
        """Store finished spans: the rows ``write`` makes of their ``SpanRecord``s, without the records."""
        rows = []
        resource = None
        service = ""
        for span in spans:
            if span.resource is not resource:  # one resource for every span of a process
                resource = span.resource
                service = str(resource.attributes.get("service.name", "shopfloor"))
            rows.append(_span_row(span, service))
        self._insert_rows(rows)

    def _insert_rows(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        params: list[Any] = (
            rows if self._positional else [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
        )
        with self._lock, self.engine.begin() as conn:
            # The driver's executemany: Core's per-row parameter processing costs more than the insert.
            conn.exec_driver_sql(self._insert, params)

    def _select(self, where: Any) -> list[SpanRecord]:
        query = sa.select(spans_table).where(where).order_by(spans_table.c.start_ns, spans_table.c.id)
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def run_spans(self, run_id: str) -> list[SpanRecord]:
        """Every span of the run (spans opened inside a run carry its id: see ``run_scope``)."""
        return self._select(spans_table.c.run_id == run_id)

    def spans(self, *, since_ns: int | None = None, agent: str | None = None) -> list[SpanRecord]:
        """Spans started at or after ``since_ns``; with ``agent``, only those of that agent's runs."""
        where: Any = sa.true()
        if since_ns is not None:
            where = sa.and_(where, spans_table.c.start_ns >= since_ns)
        if agent is not None:
            runs = sa.select(spans_table.c.run_id).where(spans_table.c.agent == agent).distinct()
            where = sa.and_(where, spans_table.c.run_id.in_(runs.scalar_subquery()))
        return self._select(where)

    def run_ids(self, *, limit: int = 20) -> list[str]:
        """The most recent runs that have spans, newest first."""
        query = (
            sa.select(spans_table.c.run_id, sa.func.max(spans_table.c.start_ns).label("last"))
            .where(spans_table.c.run_id.is_not(None))
            .group_by(spans_table.c.run_id)
            .order_by(sa.desc("last"))
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [str(row[0]) for row in conn.execute(query)]

    def prune(self, *, before_ns: int) -> int:
        """Delete spans that started before ``before_ns``; returns how many (retention)."""
        with self._lock, self.engine.begin() as conn:
            return conn.execute(spans_table.delete().where(spans_table.c.start_ns < before_ns)).rowcount

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()


def _record(row: Any) -> SpanRecord:
    return SpanRecord(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        name=row["name"],
        kind=row["kind"],
        start_ns=row["start_ns"],
        end_ns=row["end_ns"],
        status=row["status"],
        status_message=row["status_message"],
        attributes=_decode(row["attributes"], row["run_id"], row["component"]),
        events=json.loads(row["events"]) if row["events"] else [],
        service=row["service"],
    )


class LocalStoreExporter(SpanExporter):
    """Writes batches of finished spans to a ``TraceStore``, then hands them to ``on_records`` (metrics)."""

    def __init__(
        self, store: TraceStore, *, on_records: Callable[[list[SpanRecord]], None] | None = None
    ) -> None:
        self.store = store
        self.on_records = on_records

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            if self.on_records is None:
                self.store.write_spans(spans)  # no records to make: straight to rows
            else:
                records = [SpanRecord.from_span(span) for span in spans]
                self.on_records(records)
                self.store.write(records)
        except sa.exc.SQLAlchemyError:
            # The SDK logs a failed export and carries on; a trace store fault must not fail runs.
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.store.close()

"""Metering: one record per request (who, which route and upstream, tokens, time to first token,
tokens per second, latency, status), kept off the request path.

``Meter.record`` appends to an in-memory batch (no I/O, no lock: the event loop is the only writer);
a background task writes the batch to the ``gateway_requests`` table every ``interval`` seconds in a
worker thread, and ``stop`` writes what is left, so a graceful restart loses no record.

The write holds the GIL as little as it can, because the event loop serving requests waits for it
meanwhile: each record becomes a plain tuple (the columns' own bind conversions, looked up once; no
``dataclasses.asdict``, which deep-copies every value: 85 % of the flush before) written on a raw
DBAPI connection of the engine by the storage seam's ``bulk_inserter`` (sqlite3's ``executemany``,
PostgreSQL's ``COPY``), skipping SQLAlchemy's per-row statement processing, in slices of ``_SLICE``
rows so the loop gets the GIL back between them (``benchmarks/bench_gateway_meter.py`` measures it
against the old flush). While the database is unreachable the batch is kept and retried, up to
``max_pending`` records; past that the oldest are dropped and counted
(``shopfloor_gateway_meter_dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from shopfloor.gateway.inference._metrics import GatewayMetrics
from shopfloor.storage import bulk_inserter, create_tables, make_engine

__all__ = ["Meter", "MeterRecord", "MeterStore"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class MeterRecord:
    at: datetime
    principal: str
    route: str
    upstream: str
    endpoint: str
    stream: bool
    status: int
    tokens_in: int
    tokens_out: int
    latency: float  # seconds, to the last byte
    time_to_first_token: float | None = None  # seconds, streams only
    tokens_per_second: float | None = None


_metadata = sa.MetaData()
_table = sa.Table(
    "gateway_requests",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    # Text: an OIDC principal (issuer#subject) or a configured name has no length a batch may trip on
    sa.Column("principal", sa.Text, nullable=False, index=True),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("upstream", sa.Text, nullable=False),
    sa.Column("endpoint", sa.String(40), nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("tokens_in", sa.Integer, nullable=False),
    sa.Column("tokens_out", sa.Integer, nullable=False),
    sa.Column("latency", sa.Float, nullable=False),
    sa.Column("time_to_first_token", sa.Float),
    sa.Column("tokens_per_second", sa.Float),
)


#: rows per ``executemany``: small enough that the event loop gets the GIL back between slices
_SLICE = 256
_COLUMNS = tuple(f.name for f in fields(MeterRecord))


class MeterStore:
    """The ``gateway_requests`` table of one database (blocking: called from a worker thread)."""

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url, durability="normal")
        create_tables(self._engine, _metadata)
        dialect = self._engine.dialect
        self._errors = dialect.loaded_dbapi.Error
        self._insert = bulk_inserter(self._engine)
        # what the engine would do to each value on its way to the driver (SQLite: datetimes as text)
        self._convert: list[tuple[int, Callable[[Any], Any]]] = [
            (index, processor)
            for index, name in enumerate(_COLUMNS)
            if (processor := _table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]

    def _row(self, record: MeterRecord) -> tuple[Any, ...]:
        row = [getattr(record, name) for name in _COLUMNS]
        for index, convert in self._convert:
            row[index] = convert(row[index])
        return tuple(row)

    def write(self, records: list[MeterRecord]) -> None:
        """Insert ``records`` in one transaction (all or none); a database error is raised as
        SQLAlchemy's ``DBAPIError``, as the engine would."""
        connection = self._engine.raw_connection()  # SQLAlchemy's errors on connecting
        try:
            for start in range(0, len(records), _SLICE):
                rows = [self._row(r) for r in records[start : start + _SLICE]]
                self._insert(connection, _table.name, _COLUMNS, rows)
            connection.commit()
        except self._errors as exc:
            with contextlib.suppress(self._errors):
                connection.rollback()
            raise sa.exc.DBAPIError(f"INSERT INTO {_table.name}", None, exc) from exc
        finally:
            connection.close()

    def read(self, *, limit: int = 1000) -> list[MeterRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(_table).order_by(_table.c.id).limit(limit)).mappings().all()
        return [
            MeterRecord(**{k: v for k, v in row.items() if k != "id"} | {"at": _aware(row["at"])})
            for row in rows
        ]

    def close(self) -> None:
        self._engine.dispose()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Meter:
    def __init__(
        self, store: MeterStore, metrics: GatewayMetrics, *, interval: float = 1.0, max_pending: int = 200_000
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._interval = interval
        self._max_pending = max_pending
        self._pending: list[MeterRecord] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def record(self, record: MeterRecord) -> None:
        """Queue ``record`` for the next batch; never blocks."""
        self._pending.append(record)
        if len(self._pending) > self._max_pending:
            del self._pending[0]
            self._metrics.meter_dropped.inc()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="shopfloor-gateway-meter")

    async def _loop(self) -> None:
        # Stopped by an event, not by cancelling: a write in flight finishes before the last flush.
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            await self.flush()

    async def flush(self) -> None:
        """Write every queued record; on failure keep them for the next flush."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._metrics.meter_pending.set(len(batch))
        try:
            await asyncio.to_thread(self._store.write, batch)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("gateway metering: %d records not written yet: %s", len(batch), type(exc).__name__)
            self._pending[:0] = batch  # before what came in meanwhile, in order
            self._pending = self._pending[-self._max_pending :]
        self._metrics.meter_pending.set(len(self._pending))

    async def stop(self) -> None:
        """Stop the background task and write what is left."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
        self._store.close()

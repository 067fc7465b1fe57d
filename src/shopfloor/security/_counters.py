"""Counters the budgets keep, behind one interface: reserve several amounts at once, all or nothing.

``reserve`` is the only decision point and is atomic in each backend, so N concurrent requests against a
limit that admits K admit exactly K: in-process (a lock), in the database (one transaction holding the
counters' rows, shared exactly by every process on the database: ``shared-database``), and in Redis (one Lua
script) for processes that share a Redis.

Concurrent runs are counted as slots, not amounts: ``acquire`` takes a slot of each key for a holder (a
run id), all or nothing, and ``release`` gives back every slot the holder has. Both are idempotent, so a
run is released wherever its end is seen (it finished, failed, was cancelled, or ended after a recovery
on another executor) without ever giving back more than it took. A slot is held until its
``expires_at``: a short lease that the process running the run keeps renewing (``renew``, every slot of
every run it holds in one round trip; ``LeaseRenewer``), so the slots of a process that died (kill -9)
are free for anyone once their lease lapses. A lapsed slot is not counted but is remembered for
``REMEMBER`` seconds, so that ``renew`` can take it back when its run turns out to be alive (a recovery,
or a renewal that came late).

The Redis store is in ``_redis_counters.py``; the registry of stores by location in ``_counter_stores.py``.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from shopfloor.storage import create_tables, insert_ignore, make_engine

__all__ = [
    "REMEMBER",
    "CounterStore",
    "MemoryCounters",
    "PersistedCounters",
    "Reservation",
    "Slot",
    "SqlCounters",
]


#: how long a slot whose lease lapsed is remembered for ``renew`` (a run recovered later is not counted)
REMEMBER = 86400.0


@dataclass(frozen=True, kw_only=True)
class Reservation:
    """Add ``amount`` to counter ``key`` unless the result would exceed ``maximum``; the counter expires
    at ``expires_at`` (epoch seconds; its window's end)."""

    key: str
    amount: float
    maximum: float
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class Slot:
    """One of at most ``maximum`` slots of ``key`` (concurrent runs), held until released or until
    ``expires_at`` (epoch seconds: its lease) unless renewed."""

    key: str
    maximum: float
    expires_at: float


class CounterStore(ABC):
    @abstractmethod
    def acquire(self, slots: Sequence[Slot], holder: str) -> int | None:
        """Take a slot of every key for ``holder``, or none: the index of the first key whose slots are
        all held by others, else None. A key ``holder`` holds already is not counted twice (its lease
        becomes the slot's ``expires_at``)."""

    @abstractmethod
    def renew(self, holders: Sequence[str], expires_at: float) -> set[str]:
        """Hold every slot each of ``holders`` has until ``expires_at``, in one round trip; returns the
        holders that have a slot. A slot whose lease lapsed (remembered for ``REMEMBER`` seconds) is
        taken back even where that puts its key over its maximum: its run is alive, so it counts, and no
        new run starts until the key is below its maximum again. A released slot stays released."""

    @abstractmethod
    def release(self, holder: str) -> None:
        """Give back every slot ``holder`` holds (nothing if it holds none)."""

    @abstractmethod
    def reserve(self, items: Sequence[Reservation]) -> int | None:
        """Add every amount, or none: the index of the first item that would exceed its maximum, else None.
        An item of amount 0 checks that its counter is still below its maximum."""

    @abstractmethod
    def adjust(self, items: Sequence[tuple[str, float, float]]) -> None:
        """Add ``delta`` (may be negative) to each ``(key, delta, expires_at)`` unconditionally."""

    @abstractmethod
    def value(self, key: str) -> float: ...

    def close(self) -> None:  # noqa: B027  (most stores hold nothing)
        """Release what the store holds (connections, a flushing thread); writes what is pending."""


def _exceeds(current: float, item: Reservation) -> bool:
    if item.amount == 0:
        return current >= item.maximum
    return current + item.amount > item.maximum


class MemoryCounters(CounterStore):
    """One process's counters (tests, a single gateway process without a database)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, float]] = {}
        #: key -> holder -> expires_at (lapsed ones remembered for ``REMEMBER`` seconds)
        self._slots: dict[str, dict[str, float]] = {}

    def _get(self, key: str, now: float) -> float:
        value, expires = self._values.get(key, (0.0, 0.0))
        return value if expires > now else 0.0

    def reserve(self, items: Sequence[Reservation]) -> int | None:
        now = time.time()
        with self._lock:
            for index, item in enumerate(items):
                if _exceeds(self._get(item.key, now), item):
                    return index
            for item in items:
                self._values[item.key] = (self._get(item.key, now) + item.amount, item.expires_at)
        return None

    def adjust(self, items: Sequence[tuple[str, float, float]]) -> None:
        now = time.time()
        with self._lock:
            for key, delta, expires in items:
                self._values[key] = (self._get(key, now) + delta, expires)

    def _live(self, key: str, now: float) -> set[str]:
        holders = self._slots.setdefault(key, {})
        for holder in [h for h, expires in holders.items() if expires <= now - REMEMBER]:
            del holders[holder]
        return {holder for holder, expires in holders.items() if expires > now}

    def acquire(self, slots: Sequence[Slot], holder: str) -> int | None:
        now = time.time()
        with self._lock:
            for index, slot in enumerate(slots):
                live = self._live(slot.key, now)
                if holder not in live and len(live) >= slot.maximum:
                    return index
            for slot in slots:
                self._slots[slot.key][holder] = slot.expires_at
        return None

    def renew(self, holders: Sequence[str], expires_at: float) -> set[str]:
        wanted = set(holders)
        found: set[str] = set()
        with self._lock:
            for held in self._slots.values():
                for holder in wanted.intersection(held):
                    held[holder] = expires_at
                    found.add(holder)
        return found

    def release(self, holder: str) -> None:
        with self._lock:
            for holders in self._slots.values():
                holders.pop(holder, None)

    def value(self, key: str) -> float:
        with self._lock:
            return self._get(key, time.time())


_meta = sa.MetaData()
counters_table = sa.Table(
    "budget_counters",
    _meta,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)
slots_table = sa.Table(
    "budget_slots",
    _meta,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("holder", sa.String(128), primary_key=True, index=True),
    sa.Column("expires_at", sa.Float, nullable=False),
)


class SqlCounters(CounterStore):
    """Counters in the database: each reservation is one transaction that first writes (so SQLite takes its
    write lock before reading) and reads the rows ``FOR UPDATE`` on PostgreSQL, keys in sorted order."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_tables(engine, _meta)

    @classmethod
    def open(cls, url: str) -> SqlCounters:
        return cls(make_engine(url))

    def _locked(
        self, conn: sa.Connection, keys: list[str], now: float, expires: dict[str, float]
    ) -> dict[str, float]:
        insert = insert_ignore(self.engine, counters_table, ["key"])
        conn.execute(insert, [{"key": k, "value": 0.0, "expires_at": expires[k]} for k in keys])
        rows = conn.execute(
            sa.select(counters_table)
            .where(counters_table.c.key.in_(keys))
            .order_by(counters_table.c.key)
            .with_for_update()
        )
        return {row.key: (row.value if row.expires_at > now else 0.0) for row in rows}

    def close(self) -> None:
        self.engine.dispose()

    def reserve(self, items: Sequence[Reservation]) -> int | None:
        now = time.time()
        keys = sorted({item.key for item in items})
        expires = {item.key: item.expires_at for item in items}
        with self.engine.begin() as conn:
            current = self._locked(conn, keys, now, expires)
            for index, item in enumerate(items):
                if _exceeds(current[item.key], item):
                    return index
            for item in items:
                current[item.key] += item.amount
            self._write(conn, current, expires)
        return None

    def adjust(self, items: Sequence[tuple[str, float, float]]) -> None:
        now = time.time()
        expires = {key: at for key, _, at in items}
        with self.engine.begin() as conn:
            current = self._locked(conn, sorted(expires), now, expires)
            for key, delta, _ in items:
                current[key] += delta
            self._write(conn, current, expires)

    @staticmethod
    def _write(conn: sa.Connection, values: dict[str, float], expires: dict[str, float]) -> None:
        for key, value in values.items():
            conn.execute(
                counters_table.update()
                .where(counters_table.c.key == key)
                .values(value=value, expires_at=expires[key])
            )

    def acquire(self, slots: Sequence[Slot], holder: str) -> int | None:
        # The keys' counter rows are the lock: every acquisition of a key serialises on its row.
        now = time.time()
        keys = sorted({slot.key for slot in slots})
        with self.engine.begin() as conn:
            self._locked(conn, keys, now, {slot.key: slot.expires_at for slot in slots})
            conn.execute(
                slots_table.delete().where(
                    slots_table.c.key.in_(keys), slots_table.c.expires_at <= now - REMEMBER
                )
            )
            rows = conn.execute(
                sa.select(slots_table).where(
                    slots_table.c.key.in_(keys),
                    sa.or_(slots_table.c.expires_at > now, slots_table.c.holder == holder),
                )
            ).all()
            mine = {row.key for row in rows if row.holder == holder and row.expires_at > now}
            others = {key: sum(1 for row in rows if row.key == key and row.holder != holder) for key in keys}
            for index, slot in enumerate(slots):
                if slot.key not in mine and others[slot.key] >= slot.maximum:
                    return index
            if any(row.holder == holder for row in rows):
                # its own rows (live or lapsed) are replaced by the new lease
                conn.execute(
                    slots_table.delete().where(slots_table.c.holder == holder, slots_table.c.key.in_(keys))
                )
            leases = {slot.key: slot.expires_at for slot in slots}
            conn.execute(
                sa.insert(slots_table),
                [{"key": key, "holder": holder, "expires_at": at} for key, at in leases.items()],
            )
        return None

    def renew(self, holders: Sequence[str], expires_at: float) -> set[str]:
        if not holders:
            return set()
        with self.engine.begin() as conn:
            rows = conn.execute(
                slots_table.update()
                .where(slots_table.c.holder.in_(list(holders)))
                .values(expires_at=expires_at)
                .returning(slots_table.c.holder)
            )
            return {row.holder for row in rows}

    def release(self, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(slots_table.delete().where(slots_table.c.holder == holder))

    def value(self, key: str) -> float:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(counters_table).where(counters_table.c.key == key)).first()
        return 0.0 if row is None or row.expires_at <= time.time() else float(row.value)

    def load(self) -> dict[str, tuple[float, float]]:
        """Every counter whose window has not ended: key -> (value, expires_at)."""
        now = time.time()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(counters_table).where(counters_table.c.expires_at > now))
            return {row.key: (float(row.value), float(row.expires_at)) for row in rows}

    def store(self, values: dict[str, tuple[float, float]]) -> None:
        """Set each counter to its value (a snapshot written behind), and drop ended windows."""
        insert = insert_ignore(self.engine, counters_table, ["key"])
        with self.engine.begin() as conn:
            conn.execute(insert, [{"key": k, "value": v, "expires_at": e} for k, (v, e) in values.items()])
            for key, (value, expires) in values.items():
                conn.execute(
                    counters_table.update()
                    .where(counters_table.c.key == key)
                    .values(value=value, expires_at=expires)
                )
            conn.execute(counters_table.delete().where(counters_table.c.expires_at <= time.time()))


class PersistedCounters(MemoryCounters):
    """In-process counters (exact under concurrency in this process, microseconds a request), loaded from
    the database at start and written behind to it every ``interval`` seconds and at ``close``: a restart
    keeps the current windows. Processes that must share counters exactly use ``RedisCounters``."""

    def __init__(self, sql: SqlCounters, *, interval: float = 1.0) -> None:
        super().__init__()
        self.sql = sql
        self._values.update(sql.load())
        self._dirty: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flush_every, args=(interval,), daemon=True)
        self._thread.start()

    def reserve(self, items: Sequence[Reservation]) -> int | None:
        exceeded = super().reserve(items)
        if exceeded is None:
            with self._lock:
                self._dirty.update(item.key for item in items)
        return exceeded

    def adjust(self, items: Sequence[tuple[str, float, float]]) -> None:
        super().adjust(items)
        with self._lock:
            self._dirty.update(key for key, _, _ in items)

    # A run's slot lives as long as the run (minutes to days) and is taken once a run: it is kept in the
    # database itself, exact for every process on it and never lost to a restart (its lease is renewed
    # there too, every slot of the process in one statement).
    def acquire(self, slots: Sequence[Slot], holder: str) -> int | None:
        return self.sql.acquire(slots, holder)

    def renew(self, holders: Sequence[str], expires_at: float) -> set[str]:
        return self.sql.renew(holders, expires_at)

    def release(self, holder: str) -> None:
        self.sql.release(holder)

    def flush(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            snapshot = {key: self._values[key] for key in dirty if key in self._values}
        if snapshot:
            self.sql.store(snapshot)

    def _flush_every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()
        self.sql.close()

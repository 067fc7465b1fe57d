"""The budget counter stores by location: ``counter_stores()``."""

from __future__ import annotations

from collections.abc import Callable

from shopfloor._registry import Registry
from shopfloor.security._counters import CounterStore, MemoryCounters, PersistedCounters, SqlCounters
from shopfloor.security._redis_counters import RedisCounters

__all__ = ["CounterFactory", "counter_stores"]


#: makes a counter store from its location (``memory``, ``database``, a URL) and the main database's URL
CounterFactory = Callable[[str, str], CounterStore]


def _persisted(where: str, db_url: str) -> CounterStore:
    return PersistedCounters(SqlCounters.open(db_url if where == "database" else where))


def counter_stores() -> Registry[CounterFactory]:
    """Counter backends by location scheme: ``memory``; ``database`` (the main one) or a database URL:
    in-process counters written behind to it; ``shared-database``: every reservation a transaction on
    the main database (exact across every process on it, a round trip a request); ``redis://`` (exact
    across every process using it)."""
    redis_store: CounterFactory = lambda where, _db: RedisCounters.open(where)  # noqa: E731
    return Registry(
        "budget counter store",
        {
            "memory": lambda _where, _db: MemoryCounters(),
            "database": _persisted,
            "shared-database": lambda _where, db: SqlCounters.open(db),
            "sqlite": _persisted,
            "postgresql": _persisted,
            "postgres": _persisted,
            "redis": redis_store,
            "rediss": redis_store,
        },
    )

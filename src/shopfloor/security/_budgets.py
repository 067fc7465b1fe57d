"""Budgets and rate limits: ``Budgets`` implements ``Admission`` over a ``CounterStore``.

A limit applies to a scope (``key:ID``, ``team:NAME``, ``agent:NAME``, ``route:NAME``; ``*`` for each of
a kind, counted separately) and meters requests, tokens or spend over a fixed window (a minute, a day, a
month), or runs at once. ``admit`` reserves everything a request may use in one atomic step of the store
(requests 1, tokens its estimate; spend is checked against what was spent); ``settle`` replaces the token
estimate by what was used and adds the spend (from the usage, else from the prices). A request is admitted
and settled once, however many retries it took. Concurrent runs are slots held by run id: ``start_run``
takes one of each applicable limit, ``end_run`` gives them back (both idempotent).

A slot is held with a lease of ``lease`` seconds that this process renews while the run is its own
(``LeaseRenewer``, one per ``Budgets``): from ``start_run`` until the run is handed to the queue
(``queue_run``: a queued run belongs to no process, so its slots are held for ``QUEUE_HOLD``), and from
``resume_run`` (an executor begins or recovers it) until ``end_run``. A run recovered after its
process died takes its slots back even if others took them meanwhile: it was admitted once, and
refusing it now would fail a run that was accepted; it counts, so no new run starts until the key is
below its maximum again.
"""

from __future__ import annotations

import calendar
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from shopfloor.config import Settings
from shopfloor.errors import BudgetExceededError, ConfigError
from shopfloor.security._admission import Admission, Grant, Usage, UsageRequest
from shopfloor.security._counter_stores import counter_stores
from shopfloor.security._counters import CounterStore, Reservation, Slot
from shopfloor.security._leases import LeaseRenewer

__all__ = ["Budgets", "Limit", "Metric", "Window", "build_budgets", "limits_from_settings"]

Metric = Literal["requests", "tokens", "spend", "runs"]
Window = Literal["minute", "day", "month", "concurrent"]
_KINDS = ("key", "team", "agent", "route")
#: a queued run's slots are held this long (no process renews them until an executor takes the run)
QUEUE_HOLD = 86400.0


@dataclass(frozen=True, kw_only=True)
class Limit:
    scope: str
    metric: Metric
    window: Window
    maximum: float

    def __post_init__(self) -> None:
        kind, _, value = self.scope.partition(":")
        if kind not in _KINDS or not value:
            raise ConfigError(
                f"limit scope {self.scope!r}: expected key:ID, team:NAME, agent:NAME or route:NAME "
                "(or KIND:*)"
            )

    @property
    def name(self) -> str:
        what = "concurrent runs" if self.window == "concurrent" else f"{self.metric}/{self.window}"
        return f"{self.scope} {what}"

    def subject(self, request: UsageRequest) -> str | None:
        """The scope value ``request`` counts under, or None if the limit does not apply to it."""
        kind, _, value = self.scope.partition(":")
        if kind == "key" and request.principal.kind == "agent":
            return None  # a run's model calls act as its agent, which holds no key
        actual = {
            "key": request.principal.id,
            "team": request.principal.team,
            "agent": request.agent,
            "route": request.route,
        }[kind]
        if actual is None or (value != "*" and value != actual.removeprefix(f"{kind}:")):
            return None
        return f"{kind}:{actual.removeprefix(f'{kind}:')}"


def window_bounds(window: Window, now: float) -> tuple[str, float]:
    """The window's label (part of the counter's key) and its end."""
    if window == "minute":
        start = int(now // 60) * 60
        return str(start), start + 60.0
    if window == "day":
        start = int(now // 86400) * 86400
        return str(start), start + 86400.0
    if window == "month":
        day = datetime.fromtimestamp(now, UTC)
        days = calendar.monthrange(day.year, day.month)[1]
        first = datetime(day.year, day.month, 1, tzinfo=UTC).timestamp()
        return f"{day.year}-{day.month:02d}", first + days * 86400.0
    return "now", now + QUEUE_HOLD


_FIELDS: Mapping[str, tuple[Metric, Window]] = {
    "requests_per_minute": ("requests", "minute"),
    "tokens_per_minute": ("tokens", "minute"),
    "tokens_per_day": ("tokens", "day"),
    "spend_per_day": ("spend", "day"),
    "spend_per_month": ("spend", "month"),
    "concurrent_runs": ("runs", "concurrent"),
}


def limits_from_settings(settings: Settings) -> list[Limit]:
    """The limits of ``[[security.limits]]``: one ``Limit`` per field set."""
    limits = []
    for entry in settings.security.limits:
        for field, (metric, window) in _FIELDS.items():
            maximum = getattr(entry, field)
            if maximum is not None:
                limits.append(Limit(scope=entry.scope, metric=metric, window=window, maximum=float(maximum)))
    return limits


class _BudgetGrant(Grant):
    def __init__(
        self, budgets: Budgets, request: UsageRequest, counted: Sequence[tuple[Limit, str, float]]
    ) -> None:
        self._budgets = budgets
        self._request = request
        self._counted = counted
        self._lock = threading.Lock()
        self._settled = False

    def settle(self, usage: Usage) -> None:
        with self._lock:
            if self._settled:
                return  # once, whatever retries or fallbacks call it again
            self._settled = True
        self._budgets.settle(self._request, self._counted, usage)


class Budgets(Admission):
    def __init__(
        self,
        limits: Sequence[Limit],
        store: CounterStore,
        *,
        prices: Mapping[str, tuple[float, float]] | None = None,
        lease: float = 30.0,
    ) -> None:
        if not lease > 0:
            raise ConfigError(f"slot lease {lease!r}: expected a number of seconds above 0")
        self.limits = tuple(limits)
        self.store = store
        self.prices = dict(prices or {})
        self.lease = lease
        #: renews the slots of the runs this process holds (started with the first one)
        self.renewer = LeaseRenewer(store, lease)

    def set_limits(self, limits: Sequence[Limit]) -> None:
        """Count against ``limits`` from now on (a server's reloaded GitOps policy): one assignment, so a
        request is admitted under the old limits or the new ones; what was counted stays counted."""
        self.limits = tuple(limits)

    def _amount(self, limit: Limit, request: UsageRequest) -> float | None:
        if limit.window == "concurrent":
            return None  # runs hold slots (``start_run``); a request takes none
        return {"requests": 1.0, "tokens": float(request.estimated_tokens), "spend": 0.0, "runs": None}[
            limit.metric
        ]

    def admit(self, request: UsageRequest) -> Grant:
        now = time.time()
        items: list[Reservation] = []
        counted: list[tuple[Limit, str, float]] = []
        subjects: list[str] = []
        for limit in self.limits:
            subject = limit.subject(request)
            amount = self._amount(limit, request)
            if subject is None or amount is None:
                continue
            label, end = window_bounds(limit.window, now)
            key = f"{subject}|{limit.metric}|{limit.window}|{label}"
            items.append(Reservation(key=key, amount=amount, maximum=limit.maximum, expires_at=end))
            counted.append((limit, key, end))
            subjects.append(subject)
        exceeded = self.store.reserve(items) if items else None
        if exceeded is not None:
            limit = counted[exceeded][0]
            named = limit.name.replace(limit.scope, subjects[exceeded], 1)
            retry = max(0.0, counted[exceeded][2] - now)
            raise BudgetExceededError(f"{named} = {limit.maximum:g}", retry_after=retry)
        return _BudgetGrant(self, request, counted)

    def _limits_runs(self) -> bool:
        return any(limit.window == "concurrent" for limit in self.limits)

    def start_run(self, request: UsageRequest, run_id: str) -> None:
        expires = time.time() + self.lease
        slots: list[Slot] = []
        subjects: list[tuple[Limit, str]] = []
        for limit in self.limits:
            subject = limit.subject(request)
            if limit.window != "concurrent" or subject is None:
                continue
            slots.append(Slot(key=f"{subject}|runs|concurrent", maximum=limit.maximum, expires_at=expires))
            subjects.append((limit, subject))
        if not slots:
            return
        exceeded = self.store.acquire(slots, run_id)
        if exceeded is None:
            self._hold(run_id)  # its first renewal is due a third of a lease from now
        else:
            limit, subject = subjects[exceeded]
            named = limit.name.replace(limit.scope, subject, 1)
            # No Retry-After: a slot frees when a run ends, which no clock can say.
            raise BudgetExceededError(f"{named} = {limit.maximum:g}", retry_after=None)

    def _hold(self, run_id: str) -> None:
        self.renewer.start()
        self.renewer.hold(run_id)

    def queue_run(self, run_id: str) -> None:
        if run_id in self.renewer.holders:
            self.renewer.drop(run_id)
            self.store.renew([run_id], time.time() + QUEUE_HOLD)

    def resume_run(self, run_id: str) -> None:
        if self._limits_runs() and self.store.renew([run_id], time.time() + self.lease):
            self._hold(run_id)

    def end_run(self, run_id: str) -> None:
        if self._limits_runs():
            self.store.release(run_id)
        self.renewer.drop(run_id)

    def close(self) -> None:
        self.renewer.stop()
        self.store.close()

    def cost(self, route: str, usage: Usage) -> float:
        if usage.cost:
            return usage.cost
        price_in, price_out = self.prices.get(route, (0.0, 0.0))
        return (usage.tokens_in * price_in + usage.tokens_out * price_out) / 1_000_000

    def settle(
        self, request: UsageRequest, counted: Sequence[tuple[Limit, str, float]], usage: Usage
    ) -> None:
        spent = self.cost(request.route, usage)
        used = usage.tokens_in + usage.tokens_out
        changes = []
        for limit, key, end in counted:
            if limit.metric == "tokens" and used != request.estimated_tokens:
                changes.append((key, float(used - request.estimated_tokens), end))
            elif limit.metric == "spend" and spent:
                changes.append((key, spent, end))
        if changes:
            self.store.adjust(changes)


def build_budgets(settings: Settings, *, store: CounterStore | None = None) -> Budgets:
    """The budgets of ``[[security.limits]]`` with prices from ``[telemetry] prices``, counted where
    ``[security] counters`` says (``database``, the default: the main database; ``shared-database``;
    ``memory``; ``redis://...``), run slots leased for ``[security] slot_lease_seconds``."""
    if store is None:
        where = settings.security.counters
        scheme = where.partition(":")[0].partition("+")[0]
        store = counter_stores().get(scheme)(where, settings.db_url)
    return Budgets(
        limits_from_settings(settings),
        store,
        prices=settings.telemetry.prices,
        lease=settings.security.slot_lease_seconds,
    )

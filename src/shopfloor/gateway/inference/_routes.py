"""Routes, replicas, balancing and circuit breakers: which upstream an attempt goes to.

A route is a model name clients ask for (or an alias of one); its replicas serve the same model. An
attempt goes to a replica whose breaker is closed, chosen by weight or as the least busy (fewest
requests in flight, weight breaking ties); a breaker opens after ``failures`` failures in a row and,
after ``cooldown`` seconds, lets one trial request through (half-open) that closes it again or
re-opens it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import Gauge

from shopfloor.errors import ConfigError, GatewayRequestError
from shopfloor.gateway.inference._backend import Backend

__all__ = ["CircuitBreaker", "Replica", "Route", "RouteTable"]


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
        gauge: Gauge | None,
    ) -> None:
        self._limit = failures
        self._cooldown = cooldown
        self._clock = clock
        self._gauge = gauge
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # a half-open trial request is in flight

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        if self._opened_at is None:
            return "closed"
        return "open" if self._clock() - self._opened_at < self._cooldown else "half-open"

    def allows(self) -> bool:
        """Whether an attempt may go to the replica now (claims the one half-open trial)."""
        if self._opened_at is None:
            return True
        if self._trial or self._clock() - self._opened_at < self._cooldown:
            return False
        self._trial = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._trial = False
        if self._opened_at is not None:
            self._opened_at = None
            if self._gauge is not None:
                self._gauge.set(0)

    def failure(self) -> None:
        self._failures += 1
        if self._trial or self._failures >= self._limit:
            self._trial = False
            self._opened_at = self._clock()
            if self._gauge is not None:
                self._gauge.set(1)


@dataclass(eq=False, kw_only=True)
class Replica:
    backend: Backend
    weight: float
    breaker: CircuitBreaker
    in_flight: int = 0


@dataclass(frozen=True, kw_only=True, eq=False)
class Route:
    name: str
    replicas: tuple[Replica, ...]
    balance: Literal["weighted", "least-busy"] = "weighted"
    timeout: float = 60.0
    retries: int = 2
    fallbacks: tuple[str, ...] = ()
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def pick(self, tried: list[Replica]) -> Replica | None:
        """The replica for the next attempt: one not ``tried`` yet in this request if any is available,
        else any available one; None when every breaker is open."""
        replicas = self.replicas
        if len(replicas) == 1:  # the common case, without allocating
            only = replicas[0]
            return only if only.breaker.allows() else None
        fresh = [r for r in replicas if r not in tried]
        for pool in (fresh, list(replicas)):
            chosen = self._choose([r for r in pool if r.breaker.state != "open"])
            if chosen is not None and chosen.breaker.allows():
                return chosen
        return None

    def _choose(self, candidates: list[Replica]) -> Replica | None:
        if not candidates:
            return None
        if self.balance == "least-busy":
            least = min(r.in_flight for r in candidates)
            candidates = [r for r in candidates if r.in_flight == least]
            if len(candidates) == 1:
                return candidates[0]
        return self._random.choices(candidates, weights=[r.weight for r in candidates])[0]


class RouteTable:
    """Routes by name, and aliases of them."""

    def __init__(self, routes: Mapping[str, Route], aliases: Mapping[str, str]) -> None:
        for alias, target in aliases.items():
            if target not in routes:
                raise ConfigError(f"gateway.aliases.{alias}: {target!r} is no route")
        for route in routes.values():
            for fallback in route.fallbacks:
                if fallback not in routes and fallback not in aliases:
                    raise ConfigError(f"gateway.routes.{route.name}.fallbacks: {fallback!r} is no route")
        self._by_name = dict(routes) | {alias: routes[target] for alias, target in aliases.items()}
        self.names = tuple(sorted(self._by_name))
        self._chains = {id(route): self._chain(route) for route in routes.values()}

    def get(self, model: str) -> Route:
        route = self._by_name.get(model)
        if route is None:
            shown = ", ".join(self.names[:20]) + (" ..." if len(self.names) > 20 else "")
            raise GatewayRequestError(
                f"model {model!r} is not served here; models: {shown or '(none configured)'}",
                status=404,
                param="model",
                code="model_not_found",
            )
        return route

    def chain(self, route: Route) -> list[Route]:
        """``route`` then its fallbacks (each once, recursively)."""
        return self._chains.get(id(route)) or self._chain(route)

    def _chain(self, route: Route) -> list[Route]:
        out: list[Route] = []
        pending = [route]
        while pending:
            current = pending.pop(0)
            if any(seen is current for seen in out):
                continue
            out.append(current)
            pending.extend(self._by_name[name] for name in current.fallbacks)
        return out

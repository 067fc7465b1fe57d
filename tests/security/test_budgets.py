"""Budgets and rate limits: exact under concurrency (200 concurrent admissions against a limit of 10 admit
exactly 10) in memory, in SQLite and PostgreSQL, in Redis, and across two processes sharing Redis; tokens
settled at the end (streams), spend from prices, concurrent runs, a team's limit binding all its keys,
settling once however often it is called."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shopfloor.config import Settings
from shopfloor.errors import BudgetExceededError
from shopfloor.security import (
    Budgets,
    CounterStore,
    Limit,
    MemoryCounters,
    PersistedCounters,
    Principal,
    RedisCounters,
    SqlCounters,
    Usage,
    UsageRequest,
    build_budgets,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


def who(pid: str = "key:k1", team: str = "research") -> Principal:
    return Principal(id=pid, kind="program", name=pid, team=team, roles=("ai-developer",))


def request(principal: Principal | None = None, **kw: object) -> UsageRequest:
    return UsageRequest(principal=principal or who(), route="local:qwen", **kw)  # type: ignore[arg-type]


@pytest.fixture
def redis_store() -> Iterator[RedisCounters]:
    prefix = f"test:{uuid.uuid4().hex}:"
    store = RedisCounters.open(REDIS_URL, prefix=prefix)
    yield store
    for key in store.client.scan_iter(prefix + "*"):
        store.client.delete(key)
    store.client.close()


@pytest.fixture
def budgets_of() -> Iterator[Callable[..., Budgets]]:
    """Makes ``Budgets`` whose lease renewers are stopped at the end of the test: one left running
    would keep renewing against a store the test has closed (and a database dropped)."""
    made: list[Budgets] = []

    def make(*args: Any, **kwargs: Any) -> Budgets:
        made.append(Budgets(*args, **kwargs))
        return made[-1]

    yield make
    for budgets in made:
        budgets.renewer.stop()  # the store is its fixture's to close


@pytest.fixture(params=["memory", "persisted", "sql", "redis"])
def store(request: pytest.FixtureRequest, sql_url: str) -> Iterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounters()
    elif request.param == "redis":
        yield request.getfixturevalue("redis_store")
    else:
        counters: CounterStore = SqlCounters.open(sql_url)
        if request.param == "persisted":
            counters = PersistedCounters(counters, interval=0.05)  # type: ignore[arg-type]
        yield counters
        counters.close()


def _admit_many(budgets: Budgets, count: int) -> int:
    def one(_: int) -> bool:
        try:
            budgets.admit(request())
        except BudgetExceededError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=32) as pool:
        return sum(pool.map(one, range(count)))


def test_200_concurrent_admissions_against_10_admit_exactly_10(store: CounterStore) -> None:
    budgets = Budgets([Limit(scope="team:research", metric="requests", window="minute", maximum=10)], store)
    assert _admit_many(budgets, 200) == 10
    with pytest.raises(
        BudgetExceededError, match=r"team:research requests/minute = 10; retry after"
    ) as refused:
        budgets.admit(request())
    assert refused.value.retry_after is not None and 0 <= refused.value.retry_after <= 60
    # another team is not bound by research's limit; a wildcard would count it separately
    budgets.admit(request(who("key:k9", team="payments")))


_WORKER = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from shopfloor.errors import BudgetExceededError
    from shopfloor.security import Budgets, Limit, Principal, RedisCounters, UsageRequest
    store = RedisCounters.open(sys.argv[1], prefix=sys.argv[2])
    # a day, not a minute: the two processes start seconds apart and a minute could turn between them
    budgets = Budgets([Limit(scope="key:*", metric="requests", window="day", maximum=10)], store)
    principal = Principal(id="key:shared", kind="program", name="p")
    sys.stdin.readline()  # both processes start together
    def one(_):
        try:
            budgets.admit(UsageRequest(principal=principal, route="r"))
            return 1
        except BudgetExceededError:
            return 0
    with ThreadPoolExecutor(max_workers=16) as pool:
        print(sum(pool.map(one, range(100))), flush=True)
    """
)


_RUN_WORKER = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from shopfloor.errors import BudgetExceededError
    from shopfloor.security import Budgets, Limit, Principal, RedisCounters, UsageRequest
    store = RedisCounters.open(sys.argv[1], prefix=sys.argv[2])
    budgets = Budgets([Limit(scope="team:*", metric="runs", window="concurrent", maximum=10)], store)
    principal = Principal(id="key:shared", kind="program", name="p", team="research")
    sys.stdin.readline()  # both processes start together
    def one(index):
        try:
            budgets.start_run(UsageRequest(principal=principal, route="r"), f"{sys.argv[3]}-{index}")
            return 1
        except BudgetExceededError:
            return 0
    with ThreadPoolExecutor(max_workers=16) as pool:
        print(sum(pool.map(one, range(100))), flush=True)
    """
)


@pytest.mark.parametrize("worker", [_WORKER, _RUN_WORKER], ids=["requests", "concurrent-runs"])
def test_two_processes_sharing_redis_admit_exactly_10(redis_store: RedisCounters, worker: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker, REDIS_URL, redis_store.prefix, f"p{number}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(os.environ),
        )
        for number in range(2)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    admitted = [int(proc.communicate(timeout=60)[0]) for proc in procs]
    assert sum(admitted) == 10, admitted


def test_tokens_are_reserved_then_settled_at_the_end_of_a_stream(store: CounterStore) -> None:
    budgets = Budgets([Limit(scope="key:k1", metric="tokens", window="minute", maximum=1000)], store)
    stream = budgets.admit(request(estimated_tokens=600))
    with pytest.raises(BudgetExceededError, match="key:k1 tokens/minute = 1000"):
        budgets.admit(request(estimated_tokens=600))  # the first one's reservation still counts
    stream.settle(Usage(tokens_in=100, tokens_out=50))  # the stream ended: only 150 were used
    stream.settle(Usage(tokens_in=100, tokens_out=50))  # a retry or a fallback settling again: no effect
    budgets.admit(request(estimated_tokens=800))
    with pytest.raises(BudgetExceededError):
        budgets.admit(request(estimated_tokens=100))


def test_spend_from_prices_and_concurrent_runs(
    store: CounterStore, budgets_of: Callable[..., Budgets]
) -> None:
    limits = [
        Limit(scope="agent:billing", metric="spend", window="day", maximum=1.0),
        Limit(scope="agent:billing", metric="runs", window="concurrent", maximum=2),
    ]
    budgets = budgets_of(limits, store, prices={"local:qwen": (500_000.0, 500_000.0)})  # $0.5 per token
    budgets.start_run(request(agent="billing"), "run-1")
    budgets.start_run(request(agent="billing"), "run-2")
    budgets.start_run(request(agent="billing"), "run-2")  # the same run again takes no second slot
    with pytest.raises(BudgetExceededError, match="agent:billing concurrent runs = 2") as refused:
        budgets.start_run(request(agent="billing"), "run-3")
    assert refused.value.retry_after is None
    budgets.admit(request(agent="billing")).settle(Usage(tokens_in=1, tokens_out=1))  # $1: spent
    with pytest.raises(BudgetExceededError, match="agent:billing spend/day = 1"):
        budgets.admit(request(agent="billing"))
    budgets.end_run("run-1")
    budgets.end_run("run-1")  # released twice (its end seen twice): one slot back, not two
    budgets.start_run(request(agent="billing"), "run-3")
    with pytest.raises(BudgetExceededError, match="agent:billing concurrent runs = 2"):
        budgets.start_run(request(agent="billing"), "run-4")
    budgets.start_run(request(agent="other"), "run-5")  # another agent is not bound


def test_200_concurrent_run_starts_against_10_hold_exactly_10(
    store: CounterStore, budgets_of: Callable[..., Budgets]
) -> None:
    limits = [
        Limit(scope="team:research", metric="runs", window="concurrent", maximum=10),
        Limit(scope="agent:*", metric="runs", window="concurrent", maximum=50),
    ]
    budgets = budgets_of(limits, store)

    def one(index: int) -> str | None:
        try:
            budgets.start_run(request(agent="billing"), f"run-{index}")
        except BudgetExceededError:
            return None
        return f"run-{index}"

    with ThreadPoolExecutor(max_workers=32) as pool:
        held = [run for run in pool.map(one, range(200)) if run is not None]
    assert len(held) == 10
    for run in held[:3]:
        budgets.end_run(run)
    with ThreadPoolExecutor(max_workers=32) as pool:
        again = [run for run in pool.map(one, range(200, 300)) if run is not None]
    assert len(again) == 3
    # a refused run took no slot of the limits it fitted in: the agent's 50 still has 37 free
    for run in held + again:
        budgets.end_run(run)
    budgets.start_run(request(who(team="other"), agent="billing"), "run-x")


def test_limits_from_configuration(settings: Settings) -> None:
    configured = settings.model_copy(
        update={
            "security": settings.security.model_validate(
                {
                    "limits": [{"scope": "team:*", "requests_per_minute": 2, "tokens_per_day": 10}],
                    "counters": "memory",
                }
            )
        }
    )
    budgets = build_budgets(configured)
    assert [limit.name for limit in budgets.limits] == ["team:* requests/minute", "team:* tokens/day"]
    budgets.admit(request())
    budgets.admit(request(who("key:k2")))
    with pytest.raises(BudgetExceededError, match="team:research requests/minute = 2"):
        budgets.admit(request(who("key:k3")))  # every key of the team counts against it
    budgets.admit(request(who("key:k4", team="payments")))


def test_persisted_counters_survive_a_restart(sql_url: str) -> None:
    limits = [Limit(scope="key:k1", metric="requests", window="minute", maximum=3)]
    first = Budgets(limits, PersistedCounters(SqlCounters.open(sql_url), interval=3600))
    for _ in range(3):
        first.admit(request())
    first.close()  # writes behind what the flush interval has not
    restarted = Budgets(limits, PersistedCounters(SqlCounters.open(sql_url), interval=3600))
    try:
        with pytest.raises(BudgetExceededError, match="key:k1 requests/minute = 3"):
            restarted.admit(request())
    finally:
        restarted.close()

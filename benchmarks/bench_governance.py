"""What governance costs per request: authorisation, budgets (in memory, SQLite, Redis), an audit append,
and the guardrails on a 1 KB text; per run: taking and giving back a concurrent-run slot, and per lease
interval (a third of ``slot_lease_seconds``) a process's renewal of the slots of 100 held runs.

The gateway's target is <= 0.1 ms p50 added per request for authorisation plus budgets (the audit log
records only security events, not every request). Baseline, measured in the same run: the same request
without governance (a Python call that does nothing).
Run: ``.venv/bin/python -m benchmarks.bench_governance``.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_spec import median_ms
from shopfloor.security import (
    AuditLog,
    Authorizer,
    Budgets,
    CounterStore,
    Guardrails,
    Limit,
    MemoryCounters,
    PersistedCounters,
    PiiGuardrail,
    Principal,
    PromptInjectionGuardrail,
    RedisCounters,
    Resource,
    Slot,
    SqlCounters,
    Usage,
    UsageRequest,
    load_signing_key,
)

PRINCIPAL = Principal(id="key:bench", kind="program", name="bench", team="research", roles=("ai-developer",))
REQUEST = UsageRequest(principal=PRINCIPAL, route="local:qwen", estimated_tokens=100)
LIMITS = [
    Limit(scope="key:*", metric="requests", window="minute", maximum=1e12),
    Limit(scope="team:*", metric="tokens", window="minute", maximum=1e15),
]
RUN_LIMITS = [Limit(scope="team:*", metric="runs", window="concurrent", maximum=1e9)]
TEXT = ("Quarterly numbers are attached; reach me at jane@example.com. " * 16)[:1024]


def p50_us(function: Callable[[], object], repeat: int) -> float:
    return median_ms(function, repeat) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--skip-redis", action="store_true")
    args = parser.parse_args()
    authorizer = Authorizer()
    runs = Resource(kind="runs", team="research")

    def admit_settle(budgets: Budgets) -> Callable[[], None]:
        return lambda: budgets.admit(REQUEST).settle(Usage(tokens_in=60, tokens_out=30))

    def start_end(budgets: Budgets) -> Callable[[], None]:
        numbers = itertools.count()

        def one() -> None:
            run_id = f"run-{next(numbers)}"
            budgets.start_run(REQUEST, run_id)
            budgets.end_run(run_id)

        return one

    def renew_held(store: CounterStore, count: int = 100) -> Callable[[], None]:
        holders = [f"held-{uuid.uuid4().hex}" for _ in range(count)]
        slot = Slot(key="team:research|runs|concurrent", maximum=1e9, expires_at=time.time() + 600)
        for holder in holders:
            store.acquire([slot], holder)
        return lambda: store.renew(holders, time.time() + 30)

    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'bench.db'}"
        sql = SqlCounters.open(db)
        persisted = PersistedCounters(SqlCounters.open(db))
        audit = AuditLog.open(db, signing_key=load_signing_key(Path(tmp) / "k.pem"))
        rails = Guardrails([PiiGuardrail(), PromptInjectionGuardrail()])
        rows: list[tuple[str, Callable[[], object], int]] = [
            ("baseline: no governance (a call)", lambda: None, args.repeat),
            (
                "authorize (deny by default, role lookup)",
                lambda: authorizer.authorize(PRINCIPAL, "routes:call", runs),
                args.repeat,
            ),
            (
                "budgets in memory: admit + settle",
                admit_settle(Budgets(LIMITS, MemoryCounters())),
                args.repeat,
            ),
            (
                "budgets in SQLite, exact: admit + settle",
                admit_settle(Budgets(LIMITS, sql)),
                max(50, args.repeat // 20),
            ),
            (
                "budgets default (in process, written behind)",
                admit_settle(Budgets(LIMITS, persisted)),
                args.repeat,
            ),
            (
                "run slot in memory: start_run + end_run",
                start_end(Budgets(RUN_LIMITS, MemoryCounters())),
                args.repeat,
            ),
            (
                "run slot in SQLite: start_run + end_run",
                start_end(Budgets(RUN_LIMITS, sql)),
                max(50, args.repeat // 20),
            ),
            (
                "lease renewal of 100 runs (SQLite, 1 statement)",
                renew_held(sql),
                max(50, args.repeat // 20),
            ),
            (
                "audit append (SQLite, chained)",
                lambda: audit.append("bench", actor="key:bench"),
                max(50, args.repeat // 20),
            ),
            (
                "guardrails pii + injection, 1 KB",
                lambda: rails.apply(TEXT, "tool_result"),
                max(50, args.repeat // 10),
            ),
        ]
        if not args.skip_redis:
            redis = RedisCounters.open("redis://127.0.0.1:6379/0", prefix=f"bench:{uuid.uuid4().hex}:")
            rows.insert(
                4,
                (
                    "budgets in Redis (Lua): admit + settle",
                    admit_settle(Budgets(LIMITS, redis)),
                    max(50, args.repeat // 10),
                ),
            )
            rows.insert(
                -2,
                (
                    "lease renewal of 100 runs (Redis, 1 script)",
                    renew_held(redis),
                    max(50, args.repeat // 10),
                ),
            )
        baseline = None
        print(f"{'what':48} {'p50 us':>10} {'added us':>10}")
        for name, function, repeat in rows:
            value = p50_us(function, repeat)
            baseline = value if baseline is None else baseline
            print(f"{name:48} {value:10.1f} {value - baseline:10.1f}", flush=True)
        sql.close()
        persisted.close()
        audit.close()
        if not args.skip_redis:
            for key in redis.client.scan_iter(redis.prefix + "*"):
                redis.client.delete(key)
            redis.client.close()


if __name__ == "__main__":
    main()

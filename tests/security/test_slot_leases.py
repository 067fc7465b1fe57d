"""Concurrent-run slots are leases: a process killed with -9 gives its slots back once their lease lapses
(real subprocesses, on a SQLite file, PostgreSQL and Redis), a live holder keeps its slots for as many
leases as it lives (its renewer renews them), a release is immediate, ``renew`` takes back a lapsed
slot of a run that turned out to be alive (a recovery), over the maximum, but never a released one, and a
renewer outlives a store that fails for a while."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shopfloor.config import load_settings
from shopfloor.errors import BudgetExceededError, ConfigError
from shopfloor.security import (
    Budgets,
    CounterStore,
    LeaseRenewer,
    Limit,
    MemoryCounters,
    PersistedCounters,
    Principal,
    RedisCounters,
    Slot,
    SqlCounters,
    UsageRequest,
    build_budgets,
    counter_stores,
)
from shopfloor.security._counters import slots_table
from shopfloor.storage import create_tables

REDIS_URL = "redis://127.0.0.1:6379/0"
#: short enough for the test, long enough that a loaded machine renews in time (every third of it)
LEASE = 2.0


def _open(where: str, db_url: str, prefix: str) -> CounterStore:
    if where.startswith("redis"):
        return RedisCounters.open(where, prefix=prefix)
    return counter_stores().get(where)(where, db_url)


# The child builds its store the same way (``_open``'s source is passed along with it).
_HOLDER = textwrap.dedent(
    """
    import sys
    from shopfloor.security import Budgets, Limit, Principal, RedisCounters, UsageRequest, counter_stores
    where, db_url, prefix, team, lease = sys.argv[1:6]
    store = _open(where, db_url, prefix)
    limit = Limit(scope=f"team:{team}", metric="runs", window="concurrent", maximum=1)
    budgets = Budgets([limit], store, lease=float(lease))
    principal = Principal(id="key:holder", kind="program", name="holder", team=team)
    budgets.start_run(UsageRequest(principal=principal, route="r"), "held-run")
    print("held", flush=True)
    if sys.stdin.readline().strip() == "end":
        budgets.end_run("held-run")
        print("ended", flush=True)
    sys.stdin.readline()
    """
)


class Holder:
    """A subprocess holding the one slot of ``team:TEAM`` (run ``held-run``) and renewing its lease."""

    def __init__(self, where: str, db_url: str, prefix: str, team: str) -> None:
        source = "from __future__ import annotations\n" + inspect.getsource(_open) + _HOLDER
        self.proc = subprocess.Popen(
            [sys.executable, "-c", source, where, db_url, prefix, team, str(LEASE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(os.environ),
        )
        self.expect("held")

    def expect(self, line: str) -> None:
        assert self.proc.stdout is not None
        got = self.proc.stdout.readline().decode().strip()
        assert got == line, f"the holder said {got!r} (exit {self.proc.poll()})"

    def end(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"end\n")
        self.proc.stdin.flush()
        self.expect("ended")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture(
    params=["database", "shared-database", "redis"],
)
def where(request: pytest.FixtureRequest) -> str:
    return REDIS_URL if request.param == "redis" else str(request.param)


@pytest.fixture
def contender(where: str, sql_url: str) -> Iterator[tuple[Budgets, Callable[[], Holder], str]]:
    """This process's budgets over the store a holder subprocess shares, and what starts the holder."""
    prefix = f"test:{uuid.uuid4().hex}:"
    team = f"t{uuid.uuid4().hex[:10]}"
    budgets = Budgets(
        [Limit(scope=f"team:{team}", metric="runs", window="concurrent", maximum=1)],
        _open(where, sql_url, prefix),
        lease=LEASE,
    )
    holders: list[Holder] = []

    def start() -> Holder:
        holders.append(Holder(where, sql_url, prefix, team))
        return holders[-1]

    try:
        yield budgets, start, team
    finally:
        for holder in holders:
            holder.close()
        if isinstance(budgets.store, RedisCounters):
            for key in budgets.store.client.scan_iter(prefix + "*"):
                budgets.store.client.delete(key)
        budgets.close()


def _request(team: str) -> UsageRequest:
    return UsageRequest(principal=Principal(id="key:other", kind="program", name="o", team=team), route="r")


def _takes(budgets: Budgets, team: str, run_id: str) -> bool:
    try:
        budgets.start_run(_request(team), run_id)
    except BudgetExceededError:
        return False
    return True


def test_a_killed_holder_keeps_its_slot_while_alive_and_frees_it_after_its_lease(
    contender: tuple[Budgets, Callable[[], Holder], str],
) -> None:
    budgets, start, team = contender
    holder = start()
    assert not _takes(budgets, team, "mine")
    # a live holder's renewer keeps its slot for as many leases as it lives
    time.sleep(4 * LEASE)
    assert not _takes(budgets, team, "mine"), "a live holder lost its slot: its lease was not renewed"
    holder.kill9()
    deadline = time.monotonic() + 30 * LEASE  # bounded: the lease lapses a lease after the last renewal
    while not _takes(budgets, team, "mine"):
        assert time.monotonic() < deadline, "the killed holder's slot never came back"
        time.sleep(LEASE / 10)


def test_a_release_frees_the_slot_at_once(contender: tuple[Budgets, Callable[[], Holder], str]) -> None:
    budgets, start, team = contender
    holder = start()
    assert not _takes(budgets, team, "mine")
    holder.end()
    assert _takes(budgets, team, "mine")


@pytest.fixture(params=["memory", "persisted", "sql", "redis"])
def store(request: pytest.FixtureRequest, sql_url: str) -> Iterator[CounterStore]:
    prefix = f"test:{uuid.uuid4().hex}:"
    made: CounterStore
    if request.param == "memory":
        made = MemoryCounters()
    elif request.param == "redis":
        made = RedisCounters.open(REDIS_URL, prefix=prefix)
    elif request.param == "sql":
        made = SqlCounters.open(sql_url)
    else:
        made = PersistedCounters(SqlCounters.open(sql_url), interval=3600)
    yield made
    if isinstance(made, RedisCounters):
        for key in made.client.scan_iter(prefix + "*"):
            made.client.delete(key)
    made.close()


def test_renew_takes_a_lapsed_slot_back_over_the_maximum_but_not_a_released_one(store: CounterStore) -> None:
    def slot() -> list[Slot]:
        return [Slot(key="team:x|runs|concurrent", maximum=1, expires_at=time.time() + 600)]

    assert store.acquire(slot(), "alive") is None
    assert store.acquire(slot(), "other") == 0
    store.renew(["alive"], time.time() - 1)  # its renewals stopped: the lease lapsed
    assert store.acquire(slot(), "other") is None
    # "alive" was alive after all (recovered): its slot comes back although the key is full
    store.renew(["alive"], time.time() + 600)
    store.release("other")
    assert store.acquire(slot(), "third") == 0, "the run taken back does not count"
    store.release("alive")
    store.renew(["alive"], time.time() + 600)  # a renewal after the release takes nothing back
    assert store.acquire(slot(), "third") is None


def test_renew_takes_back_every_key_of_every_holder_in_one_call(store: CounterStore) -> None:
    future = time.time() + 600
    slots = [Slot(key=f"k{n}", maximum=1, expires_at=future) for n in range(3)]
    for holder in ("a", "b"):
        assert store.acquire([s for s in slots if (s.key == "k0") == (holder == "a")], holder) is None
    assert store.renew(["a", "b", "none"], time.time() - 1) == {"a", "b"}  # "none" holds no slot
    for index, key in enumerate(("k0", "k1", "k2")):
        assert store.acquire([Slot(key=key, maximum=1, expires_at=future)], f"new-{index}") is None
        store.release(f"new-{index}")
    store.renew(["a", "b"], future)
    for key in ("k0", "k1", "k2"):
        assert store.acquire([Slot(key=key, maximum=1, expires_at=future)], "late") == 0
    store.release("a")
    assert store.renew(["a", "b"], future) == {"b"}


def test_a_renewer_stops_renewing_a_run_released_elsewhere(store: CounterStore) -> None:
    """Another executor recovered the run and ended it (or it took no slot): renewing it would be
    wasted on every interval from then on."""
    renewer = LeaseRenewer(store, LEASE)
    assert store.acquire([Slot(key="k", maximum=2, expires_at=time.time() + 600)], "mine") is None
    for holder in ("mine", "took-none"):
        renewer.hold(holder)
    renewer.renew()
    assert renewer.holders == {"mine"}
    store.release("mine")  # seen to end by another process
    renewer.renew()
    assert renewer.holders == set()


def test_a_queued_run_is_held_without_renewal_and_an_executed_one_is_renewed() -> None:
    """``queue_run``: the starting process stops renewing (the queue holds the slot); ``resume_run``:
    the executor renews it from then on, and ``end_run`` stops that."""
    store = MemoryCounters()
    budgets = Budgets(
        [Limit(scope="team:x", metric="runs", window="concurrent", maximum=1)], store, lease=LEASE
    )
    request = UsageRequest(principal=Principal(id="key:a", kind="program", name="a", team="x"), route="r")
    try:
        budgets.start_run(request, "run-1")
        assert budgets.renewer.holders == {"run-1"}
        budgets.queue_run("run-1")
        assert budgets.renewer.holders == set()
        time.sleep(2 * LEASE)  # longer than a lease, unrenewed
        with pytest.raises(BudgetExceededError):
            budgets.start_run(request, "run-2")  # queued, the slot is still held
        budgets.resume_run("run-1")
        assert budgets.renewer.holders == {"run-1"}
        budgets.end_run("run-1")
        assert budgets.renewer.holders == set()
        budgets.start_run(request, "run-2")
    finally:
        budgets.close()


def test_the_slot_lease_is_configured_and_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "shopfloor.toml"
    monkeypatch.setenv("SHOPFLOOR_CONFIG", str(config))
    config.write_text('[security]\ncounters = "memory"\n')
    assert build_budgets(load_settings()).lease == 30.0
    config.write_text('[security]\ncounters = "memory"\nslot_lease_seconds = 5\n')
    assert build_budgets(load_settings()).lease == 5.0
    config.write_text("[security]\nslot_lease_seconds = 0\n")
    with pytest.raises(ConfigError, match="slot_lease_seconds"):
        load_settings()
    with pytest.raises(ConfigError, match="slot lease 0"):
        Budgets([], MemoryCounters(), lease=0)


def test_a_renewer_whose_store_fails_keeps_renewing_once_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The renewal fails for real (its table is gone): counted, logged without the store's details, and
    tried again every third of a lease until it succeeds."""
    store = SqlCounters.open(f"sqlite:///{tmp_path / 'renew.db'}")
    renewer = LeaseRenewer(store, 0.3)
    try:
        assert store.acquire([Slot(key="k", maximum=1, expires_at=time.time() + 600)], "run-1") is None
        with store.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE budget_slots"))
        renewer.hold("run-1")
        renewer.start()
        deadline = time.monotonic() + 30
        while renewer.failures < 2:
            assert time.monotonic() < deadline, "the failing renewal was not tried again"
            time.sleep(0.05)
        assert "OperationalError" in caplog.text and "budget_slots" not in caplog.text
        create_tables(store.engine, slots_table.metadata)
        with store.engine.begin() as conn:
            conn.execute(sa.insert(slots_table).values(key="k", holder="run-1", expires_at=0.0))
        while True:  # renewed again: the lease is in the future
            with store.engine.connect() as conn:
                lease = conn.execute(sa.select(slots_table.c.expires_at)).scalar_one()
            if lease > time.time():
                break
            assert time.monotonic() < deadline, "the renewer stopped renewing after a failure"
            time.sleep(0.05)
    finally:
        renewer.stop()
        store.close()

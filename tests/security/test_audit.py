"""The audit log: a hash chain with signed checkpoints that names the first edited, deleted, inserted or
reordered entry, on SQLite and PostgreSQL; appends from threads and processes, and a process killed during
an append, leave a chain that verifies."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.security import AuditLog, load_signing_key
from shopfloor.security._audit import checkpoints_table, entries_table, entry_hash


def open_log(url: str, key: Path, every: int = 4) -> AuditLog:
    return AuditLog.open(url, signing_key=load_signing_key(key), checkpoint_every=every)


@pytest.fixture
def log(sql_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    with open_log(sql_url, tmp_path / "signing.pem") as audit:
        for n in range(10):
            audit.append(
                "test.event", actor=f"key:{n % 3}", resource=f"runs/r{n}", details={"n": n, "é": "ü"}
            )
        yield audit


def _update(log: AuditLog, seq: int, **values: object) -> None:
    with log.engine.begin() as conn:
        conn.execute(entries_table.update().where(entries_table.c.seq == seq).values(**values))


def test_a_clean_chain_verifies_with_its_checkpoints(log: AuditLog) -> None:
    result = log.verify()
    assert (result.ok, result.entries, result.checkpoints) == (True, 10, 2)
    entries = log.entries()
    assert [e.seq for e in entries] == list(range(1, 11))
    assert all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    assert [e.seq for e in log.tail(3)] == [8, 9, 10]
    assert log.entries(after=8)[0].details == {"n": 8, "é": "ü"}


def test_an_edited_entry_is_named(log: AuditLog) -> None:
    _update(log, 5, actor="key:mallory")
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 5)
    assert "entry 5 was edited" in result.problem


def test_a_deleted_entry_is_named(log: AuditLog) -> None:
    with log.engine.begin() as conn:
        conn.execute(entries_table.delete().where(entries_table.c.seq == 6))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 6)
    assert "missing" in result.problem


def test_an_inserted_entry_is_named(log: AuditLog) -> None:
    # make room by renumbering 7.. up one, then insert a forged 7 that links to 6 correctly
    with log.engine.begin() as conn:
        for seq in range(10, 6, -1):
            conn.execute(entries_table.update().where(entries_table.c.seq == seq).values(seq=seq + 1))
    forged = log.entries(after=5, limit=1)[0]
    with log.engine.begin() as conn:
        conn.execute(
            entries_table.insert().values(
                **{**forged.to_dict(), "seq": 7, "prev": forged.hash, "details": "{}"}
            )
        )
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 7)


def test_reordered_entries_are_named(log: AuditLog) -> None:
    with log.engine.begin() as conn:
        conn.execute(entries_table.update().where(entries_table.c.seq == 3).values(seq=-3))
        conn.execute(entries_table.update().where(entries_table.c.seq == 4).values(seq=3))
        conn.execute(entries_table.update().where(entries_table.c.seq == -3).values(seq=4))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 3)


def test_a_rewritten_or_truncated_chain_fails_its_checkpoints(log: AuditLog, tmp_path: Path) -> None:
    with log.engine.begin() as conn:
        conn.execute(entries_table.delete().where(entries_table.c.seq > 7))
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 8)
    assert "truncated" in result.problem
    # a log checked with another key: every checkpoint is someone else's
    other = AuditLog(log.engine, signing_key=load_signing_key(tmp_path / "other.pem"))  # shares the engine
    with log.engine.begin() as conn:
        conn.execute(checkpoints_table.delete().where(checkpoints_table.c.seq == 8))
    assert "unknown key" in other.verify().problem


def _forge(log: AuditLog, count: int, *, at: float | None = None) -> None:
    """What someone with write access to the database can do past the last checkpoint: append entries
    whose hashes chain correctly (no signing key needed for them)."""
    for _ in range(count):
        head = log.tail(1)[0]
        entry = dataclasses.replace(
            head,
            seq=head.seq + 1,
            at=head.at + 0.001 if at is None else at,
            actor="key:mallory",
            details={"forged": True},
            prev=head.hash,
            hash="",
        )
        entry = dataclasses.replace(entry, hash=entry_hash(entry))
        with log.engine.begin() as conn:
            conn.execute(entries_table.insert().values({**entry.to_dict(), "details": '{"forged":true}'}))


def test_entries_after_the_last_checkpoint_are_reported_as_an_unverified_tail(log: AuditLog) -> None:
    clean = log.verify()
    assert (clean.ok, clean.signed_through, clean.unsigned_tail) == (True, 8, 2)
    assert "unverified tail of 2 entries since checkpoint 8" in clean.summary
    # a forged entry within the bounds an honest tail keeps cannot be told from a real one: it is not
    # called verified, it is counted in the unsigned tail
    _forge(log, 1)
    forged = log.verify()
    assert (forged.ok, forged.signed_through, forged.unsigned_tail) == (True, 8, 3)
    assert "unverified tail of 3 entries since checkpoint 8" in forged.summary
    # and the next real append past the bound signs the chain, forged entry and all: the tail is bounded
    log.append("test.event", actor="key:0")
    signed = log.verify()
    assert (signed.ok, signed.signed_through, signed.unsigned_tail) == (True, 12, 0)


def test_a_tail_longer_than_an_honest_one_is_named(log: AuditLog) -> None:
    _forge(log, 2)  # entries 11 and 12: 12 would have been signed (every 4)
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 12)
    assert "not signed" in result.problem and "appended outside the log" in result.problem


def test_a_tail_entry_dated_past_the_checkpoint_interval_is_named(log: AuditLog) -> None:
    _forge(log, 1, at=log.tail(1)[0].at + 3600)  # an hour after: append would have signed it
    result = log.verify()
    assert (result.ok, result.first_bad) == (False, 11)
    assert "s after the last signed entry" in result.problem


def test_a_checkpoint_is_written_once_the_interval_has_passed(sql_url: str, tmp_path: Path) -> None:
    audit = AuditLog.open(
        sql_url,
        signing_key=load_signing_key(tmp_path / "k.pem"),
        checkpoint_every=1000,
        checkpoint_interval=1e-9,  # every entry is written after the interval: each one is signed
    )
    for n in range(5):
        audit.append("test.event", actor="key:0", details={"n": n})
    result = audit.verify()
    audit.close()
    assert (result.ok, result.checkpoints, result.signed_through, result.unsigned_tail) == (True, 4, 5, 0)


def test_concurrent_appends_from_threads_keep_one_chain(sql_url: str, tmp_path: Path) -> None:
    audit = open_log(sql_url, tmp_path / "k.pem", every=10)

    def writer(n: int) -> None:
        for i in range(15):
            audit.append("thread", actor=f"t{n}", details={"i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    result = audit.verify()
    audit.close()
    assert (result.ok, result.entries, result.checkpoints) == (True, 60, 6)


_APPENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from shopfloor.security import AuditLog, load_signing_key
    log = AuditLog.open(sys.argv[1], signing_key=load_signing_key(Path(sys.argv[2])), checkpoint_every=7)
    print("ready", flush=True)
    n = 0
    while True:
        log.append("load", actor=sys.argv[3], details={"n": n, "pad": "x" * 2000})
        n += 1
    """
)


def test_kill_9_during_appends_leaves_a_chain_that_verifies(sql_url: str, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    load_signing_key(key)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, sql_url, str(key), f"p{n}"],
            stdout=subprocess.PIPE,
            env=dict(os.environ),
        )
        for n in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        audit = open_log(sql_url, key, every=7)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            written = audit.entries()
            if len(written) >= 40 and {e.actor for e in written} == {"p0", "p1"}:
                break
            time.sleep(0.05)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    before = audit.verify()
    assert before.ok, before.problem
    assert before.entries >= 40
    assert {e.actor for e in audit.entries()} == {"p0", "p1"}
    # the chain goes on after the crash
    audit.append("after", actor="me")
    assert audit.verify().entries == before.entries + 1
    audit.close()


def test_cli_ls_tail_verify(tmp_path: Path) -> None:
    runner = CliRunner()
    from shopfloor.config import load_settings
    from shopfloor.security import build_audit_log

    audit = build_audit_log(load_settings())
    request_close = audit.close
    for n in range(3):
        audit.append("permission.denied", actor="key:v", outcome="denied", resource="runs", details={"n": n})
    listed = runner.invoke(app, ["audit", "ls", "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"kind": "permission.denied"' in listed.stdout
    assert runner.invoke(app, ["audit", "tail", "-n", "1", "--json"]).stdout.count('"seq"') == 1
    ok = runner.invoke(app, ["audit", "verify"], env={"COLUMNS": "200"})
    assert ok.exit_code == 0 and "3 entries" in ok.stdout
    assert "unverified tail of 3 entries since the start" in ok.stdout
    _update(audit, 2, outcome="ok")
    bad = runner.invoke(app, ["audit", "verify"], env={"COLUMNS": "200"})
    assert bad.exit_code == 1
    assert "entry 2 was edited" in bad.stdout
    request_close()


def test_authentication_and_key_events_never_hold_the_credential(log: AuditLog) -> None:
    from shopfloor.security import LOCAL_ADMIN, Principal, audit_authentication, audit_key

    alice = Principal(id="key:k7", kind="person", name="alice", team="research", roles=("viewer",))
    audit_key(
        log, "created", actor=LOCAL_ADMIN, key_id="k7", name="alice", roles=("viewer",), team="research"
    )
    audit_authentication(log, principal=alice, method="api-key", client="127.0.0.1")
    audit_authentication(log, principal=None, method="oidc", client="127.0.0.1", reason="expired token")
    audit_key(log, "revoked", actor=LOCAL_ADMIN, key_id="k7")
    added = [(e.kind, e.actor, e.outcome, e.resource) for e in log.entries(after=10)]
    assert added == [
        ("key.created", "local-admin", "ok", "keys/k7"),
        ("authentication.succeeded", "key:k7", "ok", "127.0.0.1"),
        ("authentication.failed", "anonymous", "denied", "127.0.0.1"),
        ("key.revoked", "local-admin", "ok", "keys/k7"),
    ]
    assert log.entries(after=12, limit=1)[0].details == {"method": "oidc", "reason": "expired token"}
    assert log.verify().ok

"""Tenant uids: allocated from a persistent table, never shared, stable across processes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shopfloor.config import Settings, load_settings
from shopfloor.errors import SandboxUnavailableError
from shopfloor.sandbox import tenant_uid


def _settings(home: Path, **sandbox: str) -> Settings:
    env = {f"SHOPFLOOR_SANDBOX__{key.upper()}": value for key, value in sandbox.items()}
    return load_settings({"SHOPFLOOR_HOME": str(home), **env})


def _old_hash_uid(tenant: str, base: int) -> int:
    """The uid the 16-bit hash used to give (what an attacker could collide offline)."""
    return base + int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:4], "big") % (1 << 16)


def _colliding_names() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in range(1_000_000):
        name = f"agent-{i}"
        slot = _old_hash_uid(name, 0)
        if slot in seen:
            return seen[slot], name
        seen[slot] = name
    raise AssertionError("no collision found")


def test_names_that_collided_under_the_hash_get_different_uids(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    victim, attacker = _colliding_names()
    base = settings.sandbox.uid_base
    assert _old_hash_uid(victim, base) == _old_hash_uid(attacker, base)
    first = tenant_uid(victim, settings)
    second = tenant_uid(attacker, settings)
    assert first != second
    assert base <= first < base + settings.sandbox.uid_count
    assert tenant_uid(victim, settings) == first and tenant_uid(attacker, settings) == second


_ALLOCATE = """
import json, sys
from shopfloor.config import load_settings
from shopfloor.sandbox import tenant_uid
settings = load_settings({"SHOPFLOOR_HOME": sys.argv[1]})
print(json.dumps({name: tenant_uid(name, settings) for name in sys.argv[2:]}))
"""


def test_concurrent_processes_allocate_distinct_stable_uids(tmp_path: Path) -> None:
    names = [f"tenant-{i}" for i in range(40)]
    # Six processes at once, each allocating the same 40 tenants in a different order.
    orders = [names[k:] + names[:k] for k in range(0, 40, 7)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _ALLOCATE, str(tmp_path), *order], stdout=subprocess.PIPE, text=True
        )
        for order in orders
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        results.append(json.loads(out))
    assert all(result == results[0] for result in results)
    assert len(set(results[0].values())) == len(names)
    # A later process (and this one) sees the same allocation.
    assert {name: tenant_uid(name, _settings(tmp_path)) for name in names} == results[0]


def test_range_is_configurable_and_exhaustion_is_an_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, uid_base="500000", uid_count="2")
    assert {tenant_uid("a", settings), tenant_uid("b", settings)} == {500000, 500001}
    with pytest.raises(SandboxUnavailableError, match=r"no free tenant uid left in \[500000, 500002\)"):
        tenant_uid("c", settings)
    # Moving the range re-allocates inside the new one.
    moved = _settings(tmp_path, uid_base="600000", uid_count="4")
    assert 600000 <= tenant_uid("a", moved) < 600004
    assert tenant_uid("a", moved) != tenant_uid("b", moved)


def test_installs_sharing_a_table_never_share_a_uid(tmp_path: Path) -> None:
    table = str(tmp_path / "host-tenants.db")
    first = _settings(tmp_path / "one", uid_table=table)
    second = _settings(tmp_path / "two", uid_table=table)
    assert tenant_uid("acme", first) != tenant_uid("globex", second)
    assert tenant_uid("acme", second) == tenant_uid("acme", first)  # one table: one name, one uid

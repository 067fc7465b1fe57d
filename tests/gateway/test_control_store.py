"""The control plane's tables (registered agents, idempotency keys) on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from shopfloor.errors import AgentNotFoundError
from shopfloor.gateway.api import AgentRecord, ControlStore


def _agent(name: str, version: str) -> AgentRecord:
    return AgentRecord(
        name=name,
        spec_path=f"/agents/{name}/agent.yaml",
        version=version,
        digest=f"sha256:{version}",
        registered_by="key:abc",
        registered_at=time.time(),
    )


def test_agents_register_and_reregister(sql_url: str) -> None:
    store = ControlStore.open(sql_url)
    try:
        store.register(_agent("b", "1"))
        store.register(_agent("a", "1"))
        store.register(_agent("b", "2"))
        assert [(a.name, a.version) for a in store.list_agents()] == [("a", "1"), ("b", "2")]
        assert store.agent("b").digest == "sha256:2"
        with pytest.raises(AgentNotFoundError, match="POST /v1/agents"):
            store.agent("nobody")
    finally:
        store.close()


def test_an_idempotency_key_is_claimed_once(sql_url: str) -> None:
    store = ControlStore.open(sql_url)
    try:
        results: list[tuple[bool, str, str]] = []

        def claim() -> None:
            results.append(store.claim("key:abc", "k1", "hash-1"))

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed for claimed, _, _ in results) == [False] * 7 + [True]
        store.settle("key:abc", "k1", "run-1")
        assert store.claim("key:abc", "k1", "hash-2") == (False, "hash-1", "run-1")
        # Another principal's key of the same name is its own.
        assert store.claim("key:other", "k1", "hash-3") == (True, "hash-3", "")
        # A claim released before its run existed can be claimed again; a settled one cannot be released.
        store.release("key:other", "k1")
        assert store.claim("key:other", "k1", "hash-4")[0] is True
        store.release("key:abc", "k1")
        assert store.claim("key:abc", "k1", "hash-1") == (False, "hash-1", "run-1")
    finally:
        store.close()

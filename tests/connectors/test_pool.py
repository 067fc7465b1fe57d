"""The connector pool and its helpers: names, secrets, one event loop."""

from __future__ import annotations

import asyncio

import pytest
from connector_support import connector, secrets_from_env

from shopfloor.connectors import Connectors, Secrets, connector_kinds, tool_name
from shopfloor.errors import ConnectorError


def test_tool_names_are_prefixed_sanitised_and_bounded() -> None:
    assert tool_name("shop", "add") == "shop__add"
    assert tool_name("shop", "files/read.v2") == "shop__files_read_v2"
    assert len(tool_name("a" * 31, "b" * 100)) == 64


def test_secrets_resolve_and_are_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPFLOOR_SECRET_TOKEN", "hunter2-long")
    secrets = Secrets(secrets_from_env)
    assert secrets.resolve("plain", where="x") == "plain"
    assert secrets.resolve("secret:TOKEN", where="x") == "hunter2-long"
    assert secrets.scrub("the token hunter2-long leaked") == "the token *** leaked"
    with pytest.raises(ConnectorError, match=r"headers\.Authorization: no secret 'MISSING'"):
        secrets.resolve_all({"Authorization": "secret:MISSING"}, where="headers")
    with pytest.raises(ConnectorError, match="no secret store is configured"):
        Secrets(None).resolve("secret:TOKEN", where="env.API_TOKEN")


def test_the_same_spec_shares_a_connector_and_kinds_are_a_registry() -> None:
    pool = Connectors(secrets=None)
    a = connector(name="w", sql={"url": "sqlite:///a.db"})
    assert pool.connector(a) is pool.connector(a.model_copy())
    assert pool.connector(a) is not pool.connector(connector(name="w", sql={"url": "sqlite:///b.db"}))
    assert connector_kinds().names() == ["mcp", "sql", "a2a"]


def test_a_pool_serves_one_event_loop() -> None:
    pool = Connectors(secrets=None)
    spec = connector(name="w", sql={"url": "sqlite:///nothing.db"})
    asyncio.run(pool.tools([spec]))
    with pytest.raises(ConnectorError, match="another event loop"):
        asyncio.run(pool.tools([spec]))

"""``shopfloor keys create|ls|revoke``: the key is shown once, listed without its secret, revocable."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.errors import AuthenticationError, ConfigError, KeyNotFoundError
from shopfloor.security import ApiKeyAuthenticator, KeyStore

cli = CliRunner()


def test_create_list_revoke() -> None:
    created = cli.invoke(
        app,
        ["keys", "create", "--name", "ci", "--role", "viewer", "--team", "ml", "--expires", "30d", "--json"],
    )
    assert created.exit_code == 0, created.output
    data = json.loads(created.stdout)
    key = data["key"]
    assert key.startswith(f"sf_{data['key_id']}_") and data["state"] == "active" and data["expires_at"]
    human = cli.invoke(app, ["keys", "create", "--name", "person"])
    assert human.exit_code == 0 and "sf_" in human.stdout and "not shown again" in human.output
    listed = cli.invoke(app, ["keys", "ls", "--json"])
    assert [k["name"] for k in json.loads(listed.stdout)] == ["ci", "person"]
    assert key.split("_", 2)[2] not in listed.stdout and "sf_" not in cli.invoke(app, ["keys", "ls"]).stdout
    store = KeyStore.open(load_settings().db_url)
    try:
        principal = ApiKeyAuthenticator(store).authenticate(f"Bearer {key}")
        assert (principal.roles, principal.team) == (("viewer",), "ml")
        revoked = cli.invoke(app, ["keys", "revoke", data["key_id"], "--json"])
        assert json.loads(revoked.stdout)["state"] == "revoked"
        with pytest.raises(AuthenticationError, match="revoked"):
            ApiKeyAuthenticator(store).authenticate(f"Bearer {key}")
    finally:
        store.close()
    assert isinstance(cli.invoke(app, ["keys", "revoke", "000000000000"]).exception, KeyNotFoundError)
    bad = cli.invoke(app, ["keys", "create", "--name", "x", "--expires", "soon"])
    assert isinstance(bad.exception, ConfigError)

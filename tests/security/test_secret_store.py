"""Secrets: AES-GCM at rest, keys from a file or the environment, audited reads, the CLI reads values from
stdin or a file only, and no value in the database, the audit log or the command's output."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.errors import SecretError
from shopfloor.security import (
    AuditLog,
    EnvKeyProvider,
    FileKeyProvider,
    SecretStore,
    build_audit_log,
    build_secret_store,
    load_signing_key,
)
from shopfloor.security._secrets import secrets_table

VALUE = "sk-live-4242-planted-secret-value"


@pytest.fixture
def store(sql_url: str, tmp_path: Path) -> Iterator[SecretStore]:
    audit = AuditLog.open(sql_url, signing_key=load_signing_key(tmp_path / "sign.pem"))
    with SecretStore.open(sql_url, FileKeyProvider(tmp_path / "secrets.key"), audit=audit) as opened:
        yield opened


def _all_bytes(engine: sa.Engine) -> bytes:
    with engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        rows = [row for name in names for row in conn.execute(sa.text(f'SELECT * FROM "{name}"'))]
    return repr(rows).encode()


def test_set_reveal_rotate_rm_with_audit(store: SecretStore, tmp_path: Path) -> None:
    assert store.set("STRIPE_KEY", VALUE, actor="key:admin").version == 1
    assert store.reveal("STRIPE_KEY", actor="agent:billing") == VALUE
    assert store.resolve("secret:STRIPE_KEY", actor="agent:billing") == VALUE
    assert store.set("STRIPE_KEY", VALUE + "-2", actor="key:admin", must_exist=True).version == 2
    assert store.reveal("STRIPE_KEY", actor="agent:billing") == VALUE + "-2"
    assert [(i.name, i.version) for i in store.ls()] == [("STRIPE_KEY", 2)]
    assert VALUE.encode() not in _all_bytes(store.engine)  # encrypted at rest, absent from the audit log
    store.rm("STRIPE_KEY", actor="key:admin")
    with pytest.raises(SecretError, match="no secret named STRIPE_KEY"):
        store.reveal("STRIPE_KEY", actor="agent:billing")
    assert store.audit is not None
    kinds = [(e.kind, e.actor) for e in store.audit.entries()]
    assert kinds == [
        ("secret.created", "key:admin"),
        ("secret.read", "agent:billing"),
        ("secret.read", "agent:billing"),
        ("secret.rotated", "key:admin"),
        ("secret.read", "agent:billing"),
        ("secret.deleted", "key:admin"),
    ]
    assert (tmp_path / "secrets.key").stat().st_mode & 0o777 == 0o600


def test_tampering_and_wrong_keys_do_not_decrypt(store: SecretStore, tmp_path: Path) -> None:
    store.set("A", "alpha", actor="x")
    store.set("B", "beta", actor="x")
    with store.engine.begin() as conn:  # move B's ciphertext onto A
        row = conn.execute(sa.select(secrets_table).where(secrets_table.c.name == "B")).one()
        conn.execute(
            secrets_table.update()
            .where(secrets_table.c.name == "A")
            .values(nonce=row.nonce, ciphertext=row.ciphertext)
        )
    with pytest.raises(SecretError, match="secret A does not decrypt"):
        store.reveal("A", actor="x")
    other = SecretStore(store.engine, FileKeyProvider(tmp_path / "other.key"))  # shares the engine
    with pytest.raises(SecretError, match="secret B does not decrypt"):
        other.reveal("B", actor="x")


def test_bad_names_values_and_keys(store: SecretStore) -> None:
    with pytest.raises(SecretError, match="bad secret name"):
        store.set("../etc", "v", actor="x")
    with pytest.raises(SecretError, match="1 to 65536 bytes"):
        store.set("EMPTY", "", actor="x")
    with pytest.raises(SecretError, match="no secret NEW to rotate"):
        store.set("NEW", "v", actor="x", must_exist=True)
    with pytest.raises(SecretError, match="SF_KEY is not set"):
        EnvKeyProvider("SF_KEY", {}).key()
    with pytest.raises(SecretError, match="32-byte key"):
        EnvKeyProvider("SF_KEY", {"SF_KEY": "short"}).key()


def test_a_name_ending_in_a_newline_is_a_bad_name(store: SecretStore) -> None:
    """Python's ``$`` matches before a final newline; a name ends at the end of the text."""
    assert store.set("STRIPE_KEY", "v", actor="x").version == 1
    for call in (
        lambda: store.set("STRIPE_KEY\n", "v2", actor="x"),
        lambda: store.reveal("STRIPE_KEY\n", actor="x"),
        lambda: store.resolve("secret:STRIPE_KEY\n", actor="x"),
        lambda: store.rm("STRIPE_KEY\n", actor="x"),
    ):
        with pytest.raises(SecretError, match=r"^bad secret name 'STRIPE_KEY\\n': expected 1-128 letters"):
            call()
    assert [(i.name, i.version) for i in store.ls()] == [("STRIPE_KEY", 1)]
    assert store.reveal("STRIPE_KEY", actor="x") == "v"


def test_key_from_the_environment(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    env = {"SHOPFLOOR_HOME": str(tmp_path), "SHOPFLOOR_SECURITY__SECRETS__KEY_PROVIDER": "env"}
    settings = load_settings(env)
    with build_secret_store(settings, env={"SHOPFLOOR_SECRETS_KEY": key}) as store:
        store.set("N", "v", actor="x")
    with build_secret_store(settings, env={"SHOPFLOOR_SECRETS_KEY": key}) as again:
        assert again.reveal("N", actor="x") == "v"
    assert not (tmp_path / "secrets.key").exists()


def test_cli_reads_values_from_stdin_or_a_file_and_never_prints_them(tmp_path: Path) -> None:
    runner = CliRunner()
    stored = runner.invoke(app, ["secrets", "set", "DB_PASSWORD"], input=VALUE + "\n")
    assert stored.exit_code == 0, stored.output
    assert "version 1" in stored.stdout
    (tmp_path / "v").write_text(VALUE + "-rotated")
    rotated = runner.invoke(app, ["secrets", "rotate", "DB_PASSWORD", "--file", str(tmp_path / "v")])
    assert rotated.exit_code == 0 and "version 2" in rotated.stdout
    listed = runner.invoke(app, ["secrets", "ls", "--json"])
    assert '"DB_PASSWORD"' in listed.stdout
    settings = load_settings()
    with build_secret_store(settings) as store:
        assert store.reveal("DB_PASSWORD", actor="t") == VALUE + "-rotated"
    assert runner.invoke(app, ["secrets", "set", "X", VALUE]).exit_code == 2  # no value as an argument
    assert runner.invoke(app, ["secrets", "rm", "DB_PASSWORD"]).exit_code == 0
    outputs = stored.output + rotated.output + listed.output
    assert VALUE not in outputs
    with build_audit_log(settings) as audit:
        assert [e.kind for e in audit.entries()][-1] == "secret.deleted" and audit.verify().ok
    for path in settings.home.glob("shopfloor.db*"):  # the database and its WAL
        assert VALUE.encode() not in path.read_bytes(), path


@pytest.mark.usefixtures("real_models")  # a loopback server only
async def test_an_upstream_key_in_config_is_a_secret_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "models"))
    from fake_openai import FakeOpenAIServer

    from shopfloor.models import Message, ModelRequest, resolve_model
    from shopfloor.telemetry import redact

    key = "upstream-" + "9d8c7b6a5f4e3d2c"
    with build_secret_store(load_settings()) as store:
        store.set("UPSTREAM_KEY", key, actor="key:admin")
    server = FakeOpenAIServer()
    server.start()
    try:
        settings = load_settings(
            {
                "SHOPFLOOR_HOME": os.environ["SHOPFLOOR_HOME"],
                "SHOPFLOOR_OPENAI__BASE_URL": server.url,
                "SHOPFLOOR_OPENAI__API_KEY": "secret:UPSTREAM_KEY",
            }
        )
        model = resolve_model("openai:gpt-test", settings)
        await model.request(ModelRequest(messages=(Message(role="user", content="hi"),)))
    finally:
        server.stop()
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {key}"]
    assert redact(f"sent {key}") == "sent [REDACTED]"
    with build_audit_log(load_settings()) as audit:
        reads = [(e.kind, e.actor) for e in audit.entries(kind="secret.read")]
    assert reads == [("secret.read", "model:openai:gpt-test")]

"""API keys: created once, stored hashed, checked in constant time, revocable, expiring."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from shopfloor.errors import AuthenticationError, ConfigError, KeyNotFoundError
from shopfloor.security import ApiKeyAuthenticator, KeyStore, parse_duration


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_key_is_stored_hashed_and_verifies(sql_url: str) -> None:
    store = KeyStore.open(sql_url)
    try:
        key, plaintext = store.create(
            "ci bot", role="ai-developer", team="research", created_by="local-admin"
        )
        assert plaintext.startswith(f"sf_{key.key_id}_") and len(plaintext) == 3 + 12 + 1 + 43
        secret = plaintext.split("_", 2)[2]
        with store.engine.connect() as conn:
            dump = repr(conn.execute(sa.text("SELECT * FROM shopfloor_api_keys")).all())
        assert secret not in dump and hashlib.sha256(secret.encode()).hexdigest() in dump
        principal = ApiKeyAuthenticator(store).authenticate(f"Bearer {plaintext}")
        assert principal.id == f"key:{key.key_id}"
        assert (principal.name, principal.team, principal.roles, principal.method) == (
            "ci bot",
            "research",
            ("ai-developer",),
            "api-key",
        )
        assert [k.key_id for k in store.list_keys()] == [key.key_id]
    finally:
        store.close()


def test_revocation_is_honoured_within_the_cache_bound(sql_url: str) -> None:
    store = KeyStore.open(sql_url)
    try:
        key, plaintext = store.create("temp", created_by="t")
        clock = Clock(1000.0)
        auth = ApiKeyAuthenticator(store, cache_seconds=60, clock=clock)
        auth.authenticate(f"Bearer {plaintext}")
        assert store.revoke(key.key_id).revoked_at is not None
        # Cached: still valid until the cache's bound passes ...
        auth.authenticate(f"Bearer {plaintext}")
        clock.now += 61
        with pytest.raises(AuthenticationError, match="revoked"):
            auth.authenticate(f"Bearer {plaintext}")
        # ... and a fresh authenticator (another process) refuses it at once.
        with pytest.raises(AuthenticationError, match="revoked"):
            ApiKeyAuthenticator(store).authenticate(f"Bearer {plaintext}")
        with pytest.raises(KeyNotFoundError):
            store.revoke("000000000000")
    finally:
        store.close()


def test_expired_keys_and_garbage_are_refused(sql_url: str) -> None:
    store = KeyStore.open(sql_url)
    try:
        key, plaintext = store.create("short", expires_in=parse_duration("30d"), created_by="t")
        assert key.expires_at is not None
        later = Clock(key.expires_at + 1)
        with pytest.raises(AuthenticationError, match="expired"):
            ApiKeyAuthenticator(store, clock=later).authenticate(f"Bearer {plaintext}")
        auth = ApiKeyAuthenticator(store)
        auth.authenticate(f"Bearer {plaintext}")
        wrong_secret = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")
        for header in (
            None,
            "",
            "Bearer",
            "Basic dXNlcjpwYXNz",
            f"Bearer {wrong_secret}",
            "Bearer sf_000000000000_" + "A" * 43,
            "Bearer sf_nothex_abc",
            "Bearer " + "sf_" + "a" * 10000,
            "Bearer sf_\x00",
            f"Bearer {plaintext} extra",
        ):
            with pytest.raises(AuthenticationError):
                auth.authenticate(header)
    finally:
        store.close()


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "0d", "1y", "30 days"])
def test_bad_durations_name_the_form(text: str) -> None:
    with pytest.raises(ConfigError, match="unit s, m, h, d or w"):
        parse_duration(text)


def test_durations() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("90m") == 5400
    assert parse_duration("2w") == 14 * 86400


def test_bad_names_are_refused(tmp_path: object) -> None:
    store = KeyStore.open(f"sqlite:///{tmp_path}/k.db")
    try:
        for name in ("", " lead", "x" * 200, "a\nb"):
            with pytest.raises(ConfigError, match="key name"):
                store.create(name, created_by="t")
    finally:
        store.close()

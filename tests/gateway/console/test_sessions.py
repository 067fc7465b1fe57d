"""The console's session store on SQLite and PostgreSQL: only a hash of the token is kept; a session
ends at its expiry, when deleted, and when the API key it was opened with is revoked."""

from __future__ import annotations

import sqlalchemy as sa

from shopfloor.gateway.console import SessionStore
from shopfloor.security import KeyStore
from shopfloor.storage import make_engine


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_end_and_follow_their_key(sql_url: str) -> None:
    clock = Clock()
    store = SessionStore(make_engine(sql_url), ttl=600, clock=clock)
    try:
        keys = KeyStore(store.engine)
        made, _ = keys.create("ann", role="viewer", team="research", created_by="test")
        principal = made.principal()
        token, session = store.create(principal)
        assert session.expires_at == clock.now + 600 and len(token) >= 43
        found = store.find(token)
        assert found is not None and found.principal == principal and found.csrf == session.csrf
        assert (
            found.csrf_ok(session.csrf)
            # its first character changed (a random token starts with "x" one time in 64)
            and not found.csrf_ok(("y" if session.csrf[0] == "x" else "x") + session.csrf[1:])
            and not found.csrf_ok(None)
        )
        with store.engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT token_sha256, principal FROM shopfloor_console_sessions")
            ).all()
        assert token not in str(stored) and stored[0][0] != token
        assert store.find("made-up") is None and store.find("") is None and store.find("x" * 300) is None
        # Expiry.
        clock.now += 601
        assert store.find(token) is None
        # Sign-out.
        token, _ = store.create(principal)
        store.delete(token)
        assert store.find(token) is None
        # Revocation of the key.
        token, _ = store.create(principal)
        assert store.find(token) is not None
        keys.revoke(made.key_id)
        assert store.find(token) is None
    finally:
        store.close()

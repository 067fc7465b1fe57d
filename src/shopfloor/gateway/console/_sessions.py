"""The console's server-side sessions: a random token in an HttpOnly cookie, only its hash stored.

A session holds the principal its sign-in proved (never the credential), its CSRF token and its expiry.
It lives in the runtime's database (``settings.db_url``), so every worker process of ``shopfloor serve``
recognises it; it ends at its expiry, at sign-out, or as soon as the API key it was opened with is
revoked or expires (checked on each request: the key store is asked, not a cache).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from shopfloor.security import KeyStore, Principal
from shopfloor.storage import create_tables, make_engine

__all__ = ["ConsoleSession", "SessionStore"]

_meta = sa.MetaData()
sessions = sa.Table(
    "shopfloor_console_sessions",
    _meta,
    #: sha256 of the cookie's token: a stolen database row does not sign anyone in
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("principal", sa.Text, nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ConsoleSession:
    principal: Principal
    csrf: str
    expires_at: float

    def csrf_ok(self, sent: str | None) -> bool:
        """Whether a form's token is this session's (constant time)."""
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


def _principal_json(principal: Principal) -> str:
    return json.dumps(
        {
            "id": principal.id,
            "kind": principal.kind,
            "name": principal.name,
            "team": principal.team,
            "roles": list(principal.roles),
            "method": principal.method,
        }
    )


def _principal(text: str) -> Principal:
    data = json.loads(text)
    return Principal(
        id=data["id"],
        kind=data["kind"],
        name=data["name"],
        team=data["team"],
        roles=tuple(data["roles"]),
        method=data["method"],
    )


class SessionStore:
    """The ``shopfloor_console_sessions`` table (synchronous; the console calls it from a thread)."""

    def __init__(self, engine: sa.Engine, *, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.ttl = ttl
        self.clock = clock
        self.keys = KeyStore(engine)
        create_tables(engine, _meta)

    @classmethod
    def open(cls, url: str, *, ttl: float) -> SessionStore:
        return cls(make_engine(url), ttl=ttl)

    def close(self) -> None:
        self.engine.dispose()

    def create(self, principal: Principal) -> tuple[str, ConsoleSession]:
        """A new session of ``principal``: the cookie's token (shown once) and the session."""
        token, now = secrets.token_urlsafe(32), self.clock()
        session = ConsoleSession(
            principal=principal, csrf=secrets.token_urlsafe(32), expires_at=now + self.ttl
        )
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.expires_at <= now))
            conn.execute(
                sessions.insert().values(
                    token_sha256=_digest(token),
                    principal=_principal_json(principal),
                    csrf=session.csrf,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return token, session

    def find(self, token: str | None) -> ConsoleSession | None:
        """The live session of a cookie's token; None when there is none, it expired, or its API key
        was revoked or expired since (the session is then deleted)."""
        if not token or len(token) > 256:
            return None
        digest = _digest(token)
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(sessions).where(sessions.c.token_sha256 == digest)).mappings().first()
            )
        if row is None:
            return None
        principal = _principal(row["principal"])
        if row["expires_at"] <= self.clock() or not self._credential_alive(principal):
            self.delete(token)
            return None
        return ConsoleSession(principal=principal, csrf=row["csrf"], expires_at=row["expires_at"])

    def _credential_alive(self, principal: Principal) -> bool:
        if principal.method != "api-key" or not principal.id.startswith("key:"):
            return True  # an OIDC sign-in lasts the session's lifetime (at most ``ttl``)
        found = self.keys.lookup(principal.id.removeprefix("key:"))
        return found is not None and found[0].state(self.clock()) == "active"

    def delete(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.token_sha256 == _digest(token)))

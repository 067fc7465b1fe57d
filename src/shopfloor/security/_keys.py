"""API keys: created once and shown once, stored hashed, revocable, expiring.

A key reads ``sf_<key id>_<secret>``: the id (12 hex digits, not secret) finds the row, the secret
(256 random bits, base64url) is checked against its stored SHA-256 with ``hmac.compare_digest``. A
plain hash is enough for 256 random bits (nothing to guess, so nothing for a slow hash to slow down),
and it keeps verification at microseconds on the gateway's hot path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shopfloor.errors import AuthenticationError, ConfigError, KeyNotFoundError
from shopfloor.security._bearer import BearerAuthenticator, TTLCache
from shopfloor.security._principal import Principal
from shopfloor.storage import create_tables, make_engine

__all__ = ["ApiKey", "ApiKeyAuthenticator", "KeyStore", "key_id_of", "parse_duration"]

PREFIX = "sf_"
_KEY = re.compile(r"sf_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@:-]{0,127}")

_meta = sa.MetaData()
api_keys = sa.Table(
    "shopfloor_api_keys",
    _meta,
    sa.Column("key_id", sa.String(12), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(64)),
    sa.Column("team", sa.String(128)),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
)


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``30d``, ``12h``, ``90m``, ``2w``; ConfigError naming the form."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"duration {text!r}: write a positive number and a unit s, m, h, d or w (e.g. 30d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def key_id_of(text: str) -> str:
    """The key id of ``text``: an id, or a whole key (whose secret is dropped here, before it can reach a
    URL, a log or an error message)."""
    return text.removeprefix(PREFIX).split("_")[0]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """A key as stored (never its secret)."""

    key_id: str
    name: str
    role: str | None
    team: str | None
    created_by: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["state"] = self.state(time.time() if now is None else now)
        return data

    def principal(self) -> Principal:
        return Principal(
            id=f"key:{self.key_id}",
            kind="person",
            name=self.name,
            team=self.team,
            roles=(self.role,) if self.role else (),
            method="api-key",
        )


def _record(row: Any) -> tuple[ApiKey, str]:
    data = dict(row)
    digest = data.pop("secret_sha256")
    return ApiKey(**data), digest


class KeyStore:
    """The ``shopfloor_api_keys`` table (synchronous; async callers use a thread)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_tables(engine, _meta)

    @classmethod
    def open(cls, url: str) -> KeyStore:
        return cls(make_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    def create(
        self,
        name: str,
        *,
        role: str | None = None,
        team: str | None = None,
        expires_in: float | None = None,
        created_by: str,
    ) -> tuple[ApiKey, str]:
        """A new key and its plaintext (``sf_...``), which is shown once and never stored."""
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"key name {name!r}: 1-128 letters, digits, spaces and ._@:- starting with a letter or digit"
            )
        for label, value in (("role", role), ("team", team)):
            if value is not None and not _NAME.fullmatch(value):
                raise ConfigError(f"{label} {value!r}: 1-128 letters, digits and ._@:- characters")
        key_id = secrets.token_hex(6)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        now = time.time()
        key = ApiKey(
            key_id=key_id,
            name=name,
            role=role,
            team=team,
            created_by=created_by,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        values = {name: getattr(key, name) for name in key.__dataclass_fields__}
        with self.engine.begin() as conn:
            conn.execute(sa.insert(api_keys).values(**values, secret_sha256=_digest(secret)))
        return key, f"{PREFIX}{key_id}_{secret}"

    def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its secret's digest, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).mappings().first()
        return None if row is None else _record(row)

    def get(self, key_id: str) -> ApiKey:
        """The key of ``key_id`` (or of a whole key); KeyNotFoundError naming the id when there is none."""
        key_id = key_id_of(key_id)
        found = self.lookup(key_id)
        if found is None:
            raise KeyNotFoundError(f"no API key {key_id!r}; `shopfloor keys ls` lists them")
        return found[0]

    def list_keys(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).mappings().all()
        return [_record(row)[0] for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (revoking twice keeps the first time); KeyNotFoundError for an unknown id."""
        key_id = key_id_of(key_id)
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return self.get(key_id)


class ApiKeyAuthenticator(BearerAuthenticator):
    """Verifies ``sf_...`` keys against the store, answering from memory for ``cache_seconds``.

    A revoked or expired key stops working within ``cache_seconds`` in every process (at once in the
    process that revoked it through ``forget``); an unknown key id is remembered as unknown for the
    same time, so garbage keys cost one database read per id, not per request.
    """

    def __init__(
        self, store: KeyStore, *, cache_seconds: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._clock = clock
        #: key id -> (key, digest); (None, "") remembers an unknown id
        self._cache: TTLCache[tuple[ApiKey | None, str]] = TTLCache(clock=clock)

    def handles(self, token: str) -> bool:
        return token.startswith(PREFIX)

    def forget(self, key_id: str) -> None:
        self._cache.discard(key_id)

    def verify(self, token: str) -> Principal:
        match = _KEY.fullmatch(token)
        if match is None:
            raise AuthenticationError("malformed API key: expected sf_<12 hex digits>_<43 characters>")
        key_id, secret = match.groups()
        found = self._cache.get(key_id)
        if found is None:
            found = self.store.lookup(key_id) or (None, "")
            self._cache.put(key_id, found, ttl=self.cache_seconds)
        key, digest = found
        # Compare even for an unknown id, so the time taken does not tell which ids exist.
        matches = hmac.compare_digest(digest or "0" * 64, _digest(secret))
        if key is None or not matches:
            raise AuthenticationError("invalid API key")
        state = key.state(self._clock())
        if state != "active":
            raise AuthenticationError(f"API key {key_id} is {state}")
        return key.principal()

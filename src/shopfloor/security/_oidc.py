"""OIDC bearer JWTs, verified against the provider's JWKS (``[server.oidc]``).

What is checked: the signature with a key of the JWKS chosen by the token's ``kid``, an algorithm of
the allow-list (asymmetric only: ``none`` and HS* never verify, so a token "signed" with the public
key as an HMAC secret is refused), ``iss`` and ``aud`` equal to the configured ones, ``exp`` present
and ``exp``/``nbf``/``iat`` within ``leeway`` seconds of now. Symmetric (``oct``) keys in the JWKS are
ignored. The JWKS is fetched at the first token and again when a token names a ``kid`` it lacks (key
rotation), at most once per ``jwks_min_refresh`` seconds, so made-up ``kid`` values cannot make the
server hammer the provider. Verified tokens are remembered until ``cache_seconds`` pass or they
expire, whichever is first.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeGuard

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet

from shopfloor.config import OIDCSettings
from shopfloor.errors import AuthenticationError, ConfigError
from shopfloor.security._bearer import BearerAuthenticator, TTLCache
from shopfloor.security._principal import Principal

__all__ = ["OIDCAuthenticator"]

#: the JWKS document's size cap: a provider's has a handful of keys
MAX_JWKS_BYTES = 256 * 1024
_ASYMMETRIC = frozenset({"RSA", "EC", "OKP"})


class OIDCAuthenticator(BearerAuthenticator):
    def __init__(
        self,
        settings: OIDCSettings,
        *,
        cache_seconds: float = 5.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (settings.jwks_url and settings.issuer and settings.audience):
            raise ConfigError("[server.oidc] needs issuer, audience and jwks_url together")
        if not settings.algorithms:
            raise ConfigError("[server.oidc] algorithms: list at least one of RS256, ES256, EdDSA")
        self.settings = settings
        self.issuer: str = settings.issuer
        self.audience: str = settings.audience
        self.jwks_url: str = settings.jwks_url
        self.algorithms = tuple(settings.algorithms)
        self.cache_seconds = cache_seconds
        self._client = client or httpx.Client(timeout=settings.jwks_timeout, follow_redirects=False)
        self._clock = clock
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()
        self._cache: TTLCache[Principal] = TTLCache(clock=clock)
        #: how many times the JWKS was fetched (for tests and the rate limit's proof)
        self.fetches = 0

    def handles(self, token: str) -> bool:
        # A compact JWS: three base64url parts; its header is checked in verify.
        return token.count(".") == 2

    def close(self) -> None:
        self._client.close()

    # JWKS -----------------------------------------------------------------------------------
    def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            response = self._client.get(self.jwks_url, headers={"Accept": "application/json"})
            response.raise_for_status()
            if len(response.content) > MAX_JWKS_BYTES:
                raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
            document = json.loads(response.content)
            keys = [key for key in document["keys"] if key.get("kty") in _ASYMMETRIC]
            key_set = KeySet.import_key_set({"keys": keys})
        except (httpx.HTTPError, ValueError, KeyError, TypeError, JoseError) as exc:
            raise AuthenticationError(
                f"the OIDC provider's keys could not be read from {self.jwks_url}: {type(exc).__name__}"
            ) from exc
        self._keys = key_set
        self._kids = frozenset(str(key.kid) for key in key_set.keys if key.kid)

    def _key_set(self, kid: str | None) -> KeySet:
        with self._lock:
            known = self._keys is not None and (kid is None or kid in self._kids)
            interval = self.settings.jwks_min_refresh
            if not known and time.monotonic() - self._fetched_at >= interval:
                self._fetch()
            if self._keys is None:
                raise AuthenticationError("the OIDC provider's keys are not available yet; retry shortly")
            if kid is not None and kid not in self._kids:
                raise AuthenticationError("the token's key id is not among the OIDC provider's keys")
            return self._keys

    # tokens ---------------------------------------------------------------------------------
    def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise AuthenticationError("malformed bearer token (not a JWT)") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthenticationError(
                f"token algorithm {str(alg)[:16]!r} is not allowed (allowed: {', '.join(self.algorithms)})"
            )
        kid = header.get("kid")
        key_set = self._key_set(kid if isinstance(kid, str) else None)
        try:
            with warnings.catch_warnings():
                # EdDSA is deprecated by RFC 9864 in favour of Ed25519; it is still what providers send.
                warnings.simplefilter("ignore", SecurityWarning)
                decoded = jwt.decode(token, key_set, algorithms=list(self.algorithms))
        except (JoseError, ValueError) as exc:
            raise AuthenticationError("the token's signature does not verify") from exc
        claims = decoded.claims
        exp = self._check_claims(claims)
        principal = self._principal(claims)
        self._cache.put(token, principal, ttl=min(self.cache_seconds, exp - self._clock()))
        return principal

    def _check_claims(self, claims: dict[str, Any]) -> float:
        """The token's expiry, once every claim checked out."""
        now = self._clock()
        leeway = self.settings.leeway
        if claims.get("iss") != self.issuer:
            raise AuthenticationError("the token's issuer is not the configured OIDC issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise AuthenticationError("the token's audience does not include this server")
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if not _number(exp):
            raise AuthenticationError("the token has no expiry (exp)")
        if float(exp) + leeway <= now:
            raise AuthenticationError("the token has expired")
        if nbf is not None and (not _number(nbf) or float(nbf) - leeway > now):
            raise AuthenticationError("the token is not valid yet (nbf)")
        if iat is not None and (not _number(iat) or float(iat) - leeway > now):
            raise AuthenticationError("the token was issued in the future (iat)")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError("the token has no subject (sub)")
        return float(exp)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        roles = claims.get(self.settings.roles_claim) or ()
        if isinstance(roles, str):
            roles = (roles,)
        team = claims.get(self.settings.team_claim)
        name = claims.get("email") or claims.get("name") or claims["sub"]
        return Principal(
            id=f"oidc:{self.issuer}#{claims['sub']}",
            kind="person",
            name=str(name),
            team=str(team) if isinstance(team, str) else None,
            roles=tuple(str(role) for role in roles if isinstance(role, str)),
            method="oidc",
        )


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)

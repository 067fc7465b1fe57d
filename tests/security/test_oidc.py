"""OIDC bearer JWTs against a JWKS served by a real loopback HTTP server with keys the test makes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from shopfloor.config import OIDCSettings, ServerSettings, Settings
from shopfloor.errors import AuthenticationError
from shopfloor.security import AuthenticatorChain, KeyStore, OIDCAuthenticator, build_authenticator

ISSUER = "https://idp.example.test"
AUDIENCE = "shopfloor"


class JWKSServer:
    """Serves ``document`` at /jwks on loopback and counts the requests."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *keys: Any) -> None:
        self.document = {"keys": [key.as_dict(private=False) for key in keys]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[JWKSServer]:
    server = JWKSServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "RS256": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
        "ES256": ECKey.generate_key("P-256", parameters={"kid": "ec-1"}),
        "EdDSA": OKPKey.generate_key("Ed25519", parameters={"kid": "okp-1"}),
    }


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "team": "research",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key: Any, alg: str, claims: dict[str, Any], kid: str | None = None) -> str:
    import warnings

    from joserfc.errors import SecurityWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode({"alg": alg, "kid": kid or key.kid}, claims, key, algorithms=[alg])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _authenticator(jwks: JWKSServer, **settings: Any) -> OIDCAuthenticator:
    return OIDCAuthenticator(
        OIDCSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks.url, **settings), cache_seconds=5
    )


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_a_valid_token_of_each_algorithm_verifies(jwks: JWKSServer, keys: dict[str, Any], alg: str) -> None:
    jwks.publish(*keys.values())
    auth = _authenticator(jwks)
    principal = auth.authenticate("Bearer " + _sign(keys[alg], alg, _claims(roles=["viewer"])))
    assert principal.id == f"oidc:{ISSUER}#alice"
    assert (principal.team, principal.roles, principal.method) == ("research", ("viewer",), "oidc")


def test_the_token_fuzz_is_refused(jwks: JWKSServer, keys: dict[str, Any]) -> None:
    rsa = keys["RS256"]
    jwks.publish(*keys.values())
    auth = _authenticator(jwks, leeway=10)
    good = _sign(rsa, "RS256", _claims())
    header, payload, signature = good.split(".")
    public_pem = rsa.as_pem(private=False)
    hs_header = _b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    hs_signature = _b64(hmac.new(public_pem, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest())
    none_header = _b64(json.dumps({"alg": "none"}).encode())
    evil_payload = _b64(json.dumps(_claims(sub="root")).encode())
    other = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    cases = {
        "expired": _sign(rsa, "RS256", _claims(exp=int(time.time()) - 60)),
        "no expiry": _sign(rsa, "RS256", _claims(exp=None)),
        "not yet valid": _sign(rsa, "RS256", _claims(nbf=int(time.time()) + 600)),
        "wrong audience": _sign(rsa, "RS256", _claims(aud="someone-else")),
        "wrong issuer": _sign(rsa, "RS256", _claims(iss="https://evil.test")),
        "no subject": _sign(rsa, "RS256", _claims(sub=None)),
        "alg none": f"{none_header}.{payload}.",
        "HS256 with the public key": f"{hs_header}.{payload}.{hs_signature}",
        "tampered payload": f"{header}.{evil_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-6]}AAAAAA",
        "another key, same kid": _sign(other, "RS256", _claims()),
        "unknown kid": _sign(rsa, "RS256", _claims(), kid="nope"),
        "garbage": "a.b.c",
        "not base64": "!!!.???.***",
    }
    for name, token in cases.items():
        with pytest.raises(AuthenticationError):
            auth.authenticate(f"Bearer {token}")
            pytest.fail(f"{name} was accepted")
    assert auth.authenticate(f"Bearer {good}").id.endswith("#alice")


def test_only_allowed_algorithms(jwks: JWKSServer, keys: dict[str, Any]) -> None:
    jwks.publish(*keys.values())
    auth = _authenticator(jwks, algorithms=["ES256"])
    with pytest.raises(AuthenticationError, match="not allowed"):
        auth.authenticate("Bearer " + _sign(keys["RS256"], "RS256", _claims()))
    auth.authenticate("Bearer " + _sign(keys["ES256"], "ES256", _claims()))


def test_key_rotation_refetches_and_unknown_kids_are_rate_limited(
    jwks: JWKSServer, keys: dict[str, Any]
) -> None:
    jwks.publish(keys["RS256"])
    auth = _authenticator(jwks, jwks_min_refresh=0.5)
    auth.authenticate("Bearer " + _sign(keys["RS256"], "RS256", _claims()))
    assert jwks.requests == 1
    # A flood of made-up kids costs at most one fetch per interval.
    for i in range(50):
        with pytest.raises(AuthenticationError):
            auth.authenticate("Bearer " + _sign(keys["RS256"], "RS256", _claims(), kid=f"made-up-{i}"))
    assert jwks.requests <= 2
    # The provider rotates in a new key: after the interval its tokens verify.
    jwks.publish(keys["RS256"], keys["ES256"])
    time.sleep(0.6)
    auth.authenticate("Bearer " + _sign(keys["ES256"], "ES256", _claims()))
    assert jwks.requests <= 3


def test_the_chain_routes_by_shape(jwks: JWKSServer, keys: dict[str, Any]) -> None:
    jwks.publish(keys["RS256"])
    chain = AuthenticatorChain([_authenticator(jwks)])
    assert chain.authenticate("Bearer " + _sign(keys["RS256"], "RS256", _claims())).method == "oidc"
    with pytest.raises(AuthenticationError, match="neither an API key"):
        chain.authenticate("Bearer sf_000000000000_" + "A" * 43)


def test_the_server_authenticator_takes_keys_and_tokens_from_settings(
    jwks: JWKSServer, keys: dict[str, Any], tmp_path: Path
) -> None:
    jwks.publish(keys["ES256"])
    oidc = OIDCSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks.url)
    settings = Settings(home=tmp_path, server=ServerSettings(oidc=oidc))
    settings.ensure_home()
    store = KeyStore.open(settings.db_url)
    try:
        _, api_key = store.create("bot", created_by="test")
        chain = build_authenticator(settings, store)
        assert chain.authenticate(f"Bearer {api_key}").method == "api-key"
        assert chain.authenticate("Bearer " + _sign(keys["ES256"], "ES256", _claims())).method == "oidc"
        with pytest.raises(AuthenticationError):
            chain.authenticate("Bearer " + _sign(keys["ES256"], "ES256", _claims(aud="other")))
        # Without [server.oidc] a JWT is not a credential at all.
        bare = build_authenticator(Settings(home=tmp_path), store)
        with pytest.raises(AuthenticationError, match="neither an API key"):
            bare.authenticate("Bearer " + _sign(keys["ES256"], "ES256", _claims()))
    finally:
        store.close()

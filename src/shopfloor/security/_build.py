"""What a server authenticates with, built from its settings: API keys always, OIDC when configured."""

from __future__ import annotations

from shopfloor.config import Settings
from shopfloor.security._bearer import AuthenticatorChain, BearerAuthenticator
from shopfloor.security._keys import ApiKeyAuthenticator, KeyStore
from shopfloor.security._oidc import OIDCAuthenticator

__all__ = ["build_authenticator"]


def build_authenticator(settings: Settings, keys: KeyStore | None = None) -> AuthenticatorChain:
    """API keys from ``keys`` (default: the key table of ``settings.db_url``), then OIDC bearer tokens
    where ``[server.oidc]`` names a JWKS."""
    server = settings.server
    store = keys or KeyStore.open(settings.db_url)
    chain: list[BearerAuthenticator] = [ApiKeyAuthenticator(store, cache_seconds=server.auth_cache_seconds)]
    if server.oidc.jwks_url:
        chain.append(OIDCAuthenticator(server.oidc, cache_seconds=server.auth_cache_seconds))
    return AuthenticatorChain(chain)

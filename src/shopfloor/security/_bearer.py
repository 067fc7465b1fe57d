"""Bearer credentials: parsing the ``Authorization`` header once, a bounded cache of verified
credentials, and the chain that hands a token to the authenticator that owns its shape.

Every authenticator here is called on every request, so a credential seen recently is answered from
memory. The cache holds what was verified (never a token's secret part: keys are cached by their id
and the hash is compared again each time), for at most ``ttl`` seconds, which bounds how long a
revocation takes to be honoured by a process that has the key cached.
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from shopfloor.errors import AuthenticationError
from shopfloor.security._principal import Authenticator, Principal

__all__ = ["AuthenticatorChain", "BearerAuthenticator", "TTLCache", "bearer_token"]

#: no credential Shopfloor accepts is longer (an RS256 JWT with many claims is ~1-2 KB)
MAX_TOKEN_CHARS = 8192

V = TypeVar("V")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value; AuthenticationError otherwise."""
    if not authorization:
        raise AuthenticationError("no credentials: send the header Authorization: Bearer <API key or token>")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("the Authorization header must be 'Bearer <API key or token>'")
    if len(token) > MAX_TOKEN_CHARS or not token.isascii() or not token.isprintable() or " " in token:
        raise AuthenticationError("the bearer token is malformed")
    return token


class TTLCache(Generic[V]):
    """A thread-safe map whose entries expire at a time given per entry, holding at most ``size``
    entries (least recently used go first), so a flood of distinct credentials cannot grow memory."""

    def __init__(self, *, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            until, value = item
            if until <= self._clock():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: str, value: V, *, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._items[key] = (self._clock() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class BearerAuthenticator(Authenticator):
    """An authenticator of one shape of bearer token (an API key, a JWT)."""

    @abstractmethod
    def handles(self, token: str) -> bool:
        """Whether ``token`` has this authenticator's shape (cheap, no verification)."""

    @abstractmethod
    def verify(self, token: str) -> Principal:
        """The principal of ``token``; AuthenticationError when it does not verify."""

    def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        if not self.handles(token):
            raise AuthenticationError("the bearer token is not a credential this server accepts")
        return self.verify(token)


class AuthenticatorChain(Authenticator):
    """Hands each token to the first authenticator whose shape it has; deny when none has."""

    def __init__(self, authenticators: Sequence[BearerAuthenticator]) -> None:
        self.authenticators = tuple(authenticators)

    def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        for authenticator in self.authenticators:
            if authenticator.handles(token):
                return authenticator.verify(token)
        raise AuthenticationError(
            "the bearer token is neither an API key (sf_...) nor a token of a configured OIDC issuer"
        )

    def forget(self, key_id: str) -> None:
        for authenticator in self.authenticators:
            authenticator.forget(key_id)

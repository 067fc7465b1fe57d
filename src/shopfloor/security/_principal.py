"""Who is asking: the ``Principal`` every request, command and run acts as, and the ``Authenticator`` seam.

A principal is resolved once, at the edge (an HTTP request's ``Authorization`` header, the local
command line), and passed down explicitly; nothing below the edge reads a credential. Roles and team
are facts about the principal that authorisation reads; which permissions a role grants is the
policy's business, not this value's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

__all__ = ["LOCAL_ADMIN", "Authenticator", "Principal", "PrincipalKind"]

#: ``person``: a human (API key or OIDC token); ``program``: a service key; ``agent``: a run acting as its
#: agent's service identity; ``local-admin``: the machine's administrator on the local command line
PrincipalKind = Literal["person", "program", "agent", "local-admin"]


@dataclass(frozen=True, kw_only=True)
class Principal:
    """An authenticated identity. ``id`` is stable and unique (``key:<key id>``, ``oidc:<iss>#<sub>``,
    ``agent:<name>``, ``local-admin``); ``name`` is for people to read."""

    id: str
    kind: PrincipalKind
    name: str
    team: str | None = None
    roles: tuple[str, ...] = ()
    #: how the principal proved itself (``api-key``, ``oidc``, ``local``, ``run``): for the audit log
    method: str = "local"

    def __str__(self) -> str:
        return self.id


#: who the local command line acts as (no server, no key): the machine's administrator
LOCAL_ADMIN = Principal(
    id="local-admin",
    kind="local-admin",
    name="local administrator",
    roles=("platform-admin",),
    method="local",
)


class Authenticator(ABC):
    """Turns a request's credentials into a principal.

    Implementations are called on every request, the inference gateway's hot path included: they must
    answer from memory for a credential seen recently (a verified key or token cached until it expires
    or is revoked) and compare secrets in constant time.
    """

    @abstractmethod
    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value (``Bearer <token>``); raises
        ``AuthenticationError`` (never returns ``None``) when it is missing or does not verify."""

    def forget(self, key_id: str) -> None:
        """Drop what is remembered of the API key ``key_id``, so its revocation holds at once in this
        process; an authenticator that remembers nothing by key id has nothing to drop."""
        del key_id

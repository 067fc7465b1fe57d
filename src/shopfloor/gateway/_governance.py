"""The governance of one server process, shared by every entry point (the control plane's routes and the
sub-applications): its authoriser, approval policy and audit log, and the authentication outcomes it
audits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shopfloor.errors import AuthenticationError
from shopfloor.security import Authenticator, Governance, Principal, audit_authentication

__all__ = ["ServerGovernance", "authenticate_request"]


class ServerGovernance:
    """``governance`` (built once per server), and authentication outcomes appended to its audit log:
    every failure, and a principal's success once per ``every`` seconds (a key used a thousand times a
    second would otherwise flood the chain)."""

    def __init__(self, governance: Governance, *, every: float = 300.0, clock: Callable[[], float]) -> None:
        self.governance = governance
        self.audit = governance.audit
        self.every = every
        self.clock = clock
        self._seen: dict[str, float] = {}

    def due(self, principal: Principal) -> bool:
        """Whether ``principal``'s success is to be recorded now (then it is not again for ``every``
        seconds); cheap enough for every request."""
        now = self.clock()
        if self._seen.get(principal.id, -self.every - 1.0) + self.every > now:
            return False
        if len(self._seen) > 10_000:  # bounded: forget everyone, each is audited once more
            self._seen.clear()
        self._seen[principal.id] = now
        return True

    def succeeded(self, principal: Principal, client: str) -> None:
        audit_authentication(self.audit, principal=principal, method=principal.method, client=client)

    def failed(self, error: AuthenticationError, client: str) -> None:
        audit_authentication(self.audit, principal=None, method="bearer", client=client, reason=str(error))


async def authenticate_request(
    authenticator: Authenticator, audit: ServerGovernance | None, authorization: bytes | None, client: str
) -> Principal:
    """The principal of a request's ``Authorization`` header, each failure and a principal's periodic
    success audited (what every sub-application does first)."""
    try:
        principal = authenticator.authenticate(
            None if authorization is None else authorization.decode("latin-1")
        )
    except AuthenticationError as exc:
        if audit is not None:
            await asyncio.to_thread(audit.failed, exc, client)
        raise
    if audit is not None and audit.due(principal):
        await asyncio.to_thread(audit.succeeded, principal, client)
    return principal

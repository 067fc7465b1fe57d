"""The dependency every authenticated route has: the request's principal (or a 401), allowed the route's
permission (or a 403 naming it); both outcomes of an authentication go to the audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shopfloor.errors import AuthenticationError
from shopfloor.gateway._governance import ServerGovernance
from shopfloor.gateway._permissions import DECIDED_BY_APPROVAL_POLICY, authorize_route
from shopfloor.security import Authenticator, Principal

__all__ = ["principal_dependency"]

#: documents the scheme in /openapi.json; the authenticator reads the header itself
_bearer = HTTPBearer(auto_error=False, description="an API key (sf_...) or an OIDC bearer token")


def principal_dependency(authenticator: Authenticator, server: ServerGovernance) -> Callable[..., Principal]:
    # A plain function: FastAPI runs it in a thread, so an OIDC key fetch or an audit append never
    # blocks the loop.
    def principal(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        client = request.client.host if request.client else ""
        try:
            found = authenticator.authenticate(request.headers.get("authorization"))
        except AuthenticationError as error:
            server.failed(error, client)
            raise
        if server.due(found):
            server.succeeded(found, client)
        request.state.principal = found
        route = request.scope["route"]
        key = (request.method, route.path)
        if key not in DECIDED_BY_APPROVAL_POLICY:
            authorize_route(server.governance.authorizer, found, *key)
        return found

    return principal

"""``/v1/keys``: the API keys of the server, managed over HTTP as ``shopfloor keys`` manages them locally.

A caller never hands out more than it holds: a key is created (or revoked) for a team only by a
principal holding ``keys:write`` (``keys:delete``) on that team and every permission the key's role
grants there (``Authorizer.authorize_grant``); a key of every team (no team) only by one holding them
on every team. The secret is in the creation's answer alone (``Cache-Control: no-store``): never
listed, shown, logged or audited. Creation and revocation are audit entries naming the caller.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (the local `Caller`
# dependency alias among them) when they are defined.

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from shopfloor.gateway._errors import ERRORS
from shopfloor.gateway.api._plane import ControlPlane
from shopfloor.security import ApiKey, Principal, Resource, audit_key

__all__ = ["KeyCreate", "KeyCreated", "KeyOut", "keys_router"]

#: a century: longer lifetimes are a typo (and would overflow a timestamp)
_LONGEST = 100 * 365 * 86400.0


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=128, description="who or what the key is for")
    role: str | None = Field(None, max_length=64, description="the role the key acts with (none: no role)")
    team: str | None = Field(
        None, max_length=128, description="the team the key belongs to (none: every team's resources)"
    )
    expires_in: float | None = Field(
        None, gt=0, le=_LONGEST, description="lifetime in seconds (none: until revoked)"
    )


class KeyOut(BaseModel):
    """A key as stored: never its secret."""

    key_id: str
    name: str
    role: str | None
    team: str | None
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    state: Literal["active", "revoked", "expired"]

    @classmethod
    def of(cls, key: ApiKey) -> "KeyOut":
        return cls(**key.to_dict())


class KeyCreated(KeyOut):
    key: str = Field(description="the key (sf_<id>_<secret>): in this answer only, never shown again")


def keys_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=ERRORS)
    authorizer = plane.governance.authorizer
    Caller = Annotated[Principal, Depends(plane.principal)]

    async def audited(action: Literal["created", "revoked"], caller: Principal, key: ApiKey) -> None:
        roles = (key.role,) if key.role else ()
        await asyncio.to_thread(
            audit_key,
            plane.governance.audit,
            action,
            actor=caller,
            key_id=key.key_id,
            name=key.name,
            roles=roles,
            team=key.team,
        )

    @router.get("", summary="List the keys the caller's team may see (never their secrets)")
    async def list_keys(caller: Caller) -> list[KeyOut]:
        keys = await asyncio.to_thread(plane.keys.list_keys)
        return [
            KeyOut.of(key)
            for key in keys
            if authorizer.allows(caller, "keys:read", Resource(kind="keys", team=key.team))
        ]

    @router.post(
        "",
        status_code=201,
        summary="Create a key (its secret is in this answer only); never more than the caller holds",
    )
    async def create_key(body: KeyCreate, caller: Caller, response: Response) -> KeyCreated:
        if body.role is not None:
            authorizer.check_role(body.role)
        authorizer.authorize_grant(caller, "write", role=body.role, team=body.team)
        key, plaintext = await asyncio.to_thread(
            plane.keys.create,
            body.name,
            role=body.role,
            team=body.team,
            expires_in=body.expires_in,
            created_by=caller.id,
        )
        await audited("created", caller, key)
        response.headers["Cache-Control"] = "no-store"
        return KeyCreated(**key.to_dict(), key=plaintext)

    @router.get("/{key_id}", summary="One key (never its secret)")
    async def show_key(key_id: str, caller: Caller) -> KeyOut:
        key = await asyncio.to_thread(plane.keys.get, key_id)
        authorizer.authorize(caller, "keys:read", Resource(kind="keys", name=key.key_id, team=key.team))
        return KeyOut.of(key)

    @router.post(
        "/{key_id}/revoke",
        summary="Revoke a key: refused at once by this process, by the others within auth_cache_seconds",
    )
    async def revoke_key(key_id: str, caller: Caller) -> KeyOut:
        key = await asyncio.to_thread(plane.keys.get, key_id)
        authorizer.authorize_grant(caller, "delete", role=key.role, team=key.team)
        revoked = await asyncio.to_thread(plane.keys.revoke, key.key_id)
        plane.authenticator.forget(key.key_id)
        if key.revoked_at is None:
            await audited("revoked", caller, revoked)
        return KeyOut.of(revoked)

    return router

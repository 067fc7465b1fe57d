"""The governance objects one process holds, built from the settings: the authoriser (its refusals
audited), the audit log and the approval policy."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from shopfloor.config import Settings
from shopfloor.security._approvals import ApprovalPolicy
from shopfloor.security._audit import AuditLog, build_audit_log
from shopfloor.security._authorize import Authorizer, Resource, build_authorizer
from shopfloor.security._principal import Principal

__all__ = ["Governance", "audit_authentication", "audit_denial", "audit_key", "build_governance"]


@dataclass(frozen=True, kw_only=True)
class Governance:
    authorizer: Authorizer
    approvals: ApprovalPolicy
    audit: AuditLog


def audit_denial(audit: AuditLog, principal: Principal, permission: str, resource: Resource | None) -> None:
    audit.append(
        "permission.denied",
        actor=principal.id,
        outcome="denied",
        resource=str(resource) if resource else "",
        details={"permission": permission, "roles": list(principal.roles), "method": principal.method},
    )


def audit_authentication(
    audit: AuditLog, *, principal: Principal | None, method: str, client: str = "", reason: str = ""
) -> None:
    """An authentication's outcome (``principal`` None: refused, ``reason`` saying which check failed;
    never the credential)."""
    audit.append(
        "authentication.succeeded" if principal is not None else "authentication.failed",
        actor=principal.id if principal is not None else "anonymous",
        outcome="ok" if principal is not None else "denied",
        resource=client,
        details={"method": method, **({"reason": reason} if reason else {})},
    )


def audit_key(
    audit: AuditLog,
    action: Literal["created", "revoked"],
    *,
    actor: Principal,
    key_id: str,
    name: str = "",
    roles: tuple[str, ...] = (),
    team: str | None = None,
) -> None:
    """An API key created or revoked (by whom, for which roles and team; never the key)."""
    audit.append(
        f"key.{action}",
        actor=actor.id,
        resource=f"keys/{key_id}",
        details={"name": name, "roles": list(roles), "team": team},
    )


def build_governance(settings: Settings) -> Governance:
    """Roles, bindings and policy from ``[security]``; the audit log every refusal is appended to."""
    audit = build_audit_log(settings)
    authorizer = build_authorizer(settings, on_deny=functools.partial(audit_denial, audit))
    approvals = ApprovalPolicy(
        authorizer=authorizer, separation_of_duties=settings.security.separation_of_duties
    )
    return Governance(authorizer=authorizer, approvals=approvals, audit=audit)

"""Authorisation: deny by default; a principal may do what a role bound to it grants, on the resources of
the team the binding names (or on every resource, for a binding without a team).

A principal's own ``roles`` are bound to its ``team`` (to every team when it has none: the local
administrator, a platform key); the configuration adds bindings by principal id (``[[security.bindings]]``)
and custom roles (``[security.roles.NAME]``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from shopfloor.config import Settings
from shopfloor.errors import ConfigError, PermissionDeniedError
from shopfloor.security._principal import Principal
from shopfloor.security._roles import PRESET_ROLES, Binding, Role, check_permission

__all__ = ["Authorizer", "DenialHook", "Resource", "build_authorizer"]


@dataclass(frozen=True, kw_only=True)
class Resource:
    """What a permission is asked on: a kind (``runs``), optionally one of them, and the team owning it."""

    kind: str
    name: str | None = None
    team: str | None = None

    def __str__(self) -> str:
        where = f"{self.kind}/{self.name}" if self.name else self.kind
        return f"{where} of team {self.team}" if self.team else where


#: called with every refusal before it is raised (the audit log records it)
DenialHook = Callable[[Principal, str, Resource | None], None]


@dataclass(frozen=True)
class _Policy:
    roles: dict[str, Role]
    granted: dict[str, frozenset[str]]
    bindings: tuple[Binding, ...]


class Authorizer:
    """``authorize(principal, permission, resource)``: returns, or raises ``PermissionDeniedError``.

    Its roles and bindings are one snapshot, replaced whole by ``adopt`` (a server's reloaded GitOps
    policy): a check sees the old policy or the new one, never a mix."""

    def __init__(
        self,
        *,
        roles: Mapping[str, Role] | None = None,
        bindings: Iterable[Binding] = (),
        on_deny: DenialHook | None = None,
    ) -> None:
        roles = dict(PRESET_ROLES if roles is None else roles)
        bound = tuple(bindings)
        for binding in bound:
            if binding.role not in roles:
                raise ConfigError(
                    f"binding of {binding.principal!r}: no role {binding.role!r} "
                    f"(roles: {', '.join(sorted(roles))})"
                )
        granted = {name: role.permissions() for name, role in roles.items()}
        self._policy = _Policy(roles=roles, granted=granted, bindings=bound)
        self.on_deny = on_deny

    @property
    def roles(self) -> dict[str, Role]:
        return self._policy.roles

    @property
    def bindings(self) -> tuple[Binding, ...]:
        return self._policy.bindings

    def adopt(self, other: Authorizer) -> None:
        """Serve from ``other``'s roles and bindings from now on (one assignment: atomic)."""
        self._policy = other._policy

    def bindings_of(self, principal: Principal) -> list[Binding]:
        return self._bindings_of(self._policy, principal)

    @staticmethod
    def _bindings_of(policy: _Policy, principal: Principal) -> list[Binding]:
        own = [Binding(principal=principal.id, role=role, team=principal.team) for role in principal.roles]
        return own + [binding for binding in policy.bindings if binding.principal == principal.id]

    def allows(self, principal: Principal, permission: str, resource: Resource | None = None) -> bool:
        check_permission(permission)
        policy = self._policy
        team = resource.team if resource is not None else None
        for binding in self._bindings_of(policy, principal):
            if binding.team is not None and binding.team != team:
                continue
            if permission in policy.granted.get(binding.role, ()):
                return True
        return False

    def authorize(self, principal: Principal, permission: str, resource: Resource | None = None) -> None:
        if self.allows(principal, permission, resource):
            return
        self._deny(principal, permission, resource, str(resource) if resource else None)

    def _deny(
        self, principal: Principal, permission: str, resource: Resource | None, where: str | None
    ) -> None:
        if self.on_deny is not None:
            self.on_deny(principal, permission, resource)
        roles = ", ".join(principal.roles) or "no roles"
        raise PermissionDeniedError(permission, principal=f"{principal.id} ({roles})", resource=where)

    def check_role(self, role: str) -> str:
        """``role`` if this authoriser knows it, else ``ConfigError`` naming the roles there are."""
        if role not in self.roles:
            raise ConfigError(f"role {role!r}: no such role (roles: {', '.join(sorted(self.roles))})")
        return role

    def authorize_grant(
        self, principal: Principal, action: str, *, role: str | None, team: str | None
    ) -> None:
        """Whether ``principal`` may create (``action`` ``write``) or revoke (``delete``) a key acting as
        ``role`` for ``team`` (None: every team): it needs ``keys:ACTION`` on that team, and every
        permission the role grants there, so nobody hands out (or takes away) more than it holds itself.
        Raises ``PermissionDeniedError`` naming the first permission missing (audited). A role this
        authoriser does not know grants nothing (check it first with ``check_role`` when creating)."""
        self.authorize(principal, f"keys:{action}", Resource(kind="keys", team=team))
        for permission in sorted(self._policy.granted.get(role, ()) if role else ()):
            resource = Resource(kind=permission.partition(":")[0], team=team)
            if not self.allows(principal, permission, resource):
                why = (
                    f"{resource}: the role {role!r} grants it, and a key gets no more than its creator holds"
                )
                self._deny(principal, permission, resource, why)


def build_authorizer(settings: Settings, *, on_deny: DenialHook | None = None) -> Authorizer:
    """The authoriser of ``settings``: the preset roles, the custom roles and the bindings configured."""
    roles = dict(PRESET_ROLES)
    for name, custom in settings.security.roles.items():
        if name in PRESET_ROLES:
            raise ConfigError(f"security.roles.{name}: {name!r} is a preset role; pick another name")
        roles[name] = Role(name=name, grants=tuple(custom.permissions), description=custom.description)
    bindings = [Binding(principal=b.principal, role=b.role, team=b.team) for b in settings.security.bindings]
    return Authorizer(roles=roles, bindings=bindings, on_deny=on_deny)

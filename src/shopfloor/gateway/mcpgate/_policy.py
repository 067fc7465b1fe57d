"""Which gateway tools a principal may see and call, and with which arguments (``[[mcp.policies]]``).

The authoriser decides first (each tool's permission on its team: ``runs:start`` for an agent,
``routes:call`` for an upstream's tool); the policy then narrows. With no rule configured the
authoriser alone decides; with any, a tool no applicable rule allows is hidden and refused.
A rule may restrict string arguments to path prefixes: the value is normalised first (``a/../b`` is
``b``), so a ``..`` cannot climb out of an allowed prefix.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shopfloor.config import McpPolicySettings
from shopfloor.errors import PermissionDeniedError
from shopfloor.security import Principal

__all__ = ["PolicyRule", "ToolPolicy"]


@dataclass(frozen=True, kw_only=True)
class PolicyRule:
    """One ``[[mcp.policies]]`` entry."""

    principals: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    tools: tuple[str, ...]
    #: argument name -> the path prefixes its value must lie under
    arguments: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_settings(cls, settings: McpPolicySettings) -> PolicyRule:
        return cls(
            principals=frozenset(settings.principals),
            roles=frozenset(settings.roles),
            teams=frozenset(settings.teams),
            tools=tuple(settings.tools),
            arguments={name: tuple(prefixes) for name, prefixes in settings.arguments.items()},
        )

    def applies_to(self, principal: Principal) -> bool:
        if not (self.principals or self.roles or self.teams):
            return True
        return (
            principal.id in self.principals
            or bool(self.roles.intersection(principal.roles))
            or (principal.team is not None and principal.team in self.teams)
        )

    def covers(self, tool: str) -> bool:
        return any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.tools)

    def refusal(self, tool: str, args: Mapping[str, Any]) -> str | None:
        """Why ``args`` break this rule's argument restrictions, or None when they keep to them."""
        for name, prefixes in self.arguments.items():
            if name not in args:
                continue
            value = args[name]
            if not isinstance(value, str):
                return f"{tool}: argument {name!r} must be a path string under {', '.join(prefixes)}"
            if not any(_under(value, prefix) for prefix in prefixes):
                return f"{tool}: argument {name!r} = {value[:200]!r} is not under {', '.join(prefixes)}"
        return None


def _under(value: str, prefix: str) -> bool:
    if "\0" in value:
        return False
    normal = posixpath.normpath(value) if value else value
    base = prefix.rstrip("/") or "/"
    if base == "/":
        return normal.startswith("/")
    return normal == base or normal.startswith(base + "/")


class ToolPolicy:
    """The rules of ``[[mcp.policies]]``; ``allows`` decides visibility, ``check`` a call's arguments."""

    def __init__(self, rules: Sequence[PolicyRule]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def from_settings(cls, settings: Sequence[McpPolicySettings]) -> ToolPolicy:
        return cls([PolicyRule.from_settings(rule) for rule in settings])

    def _matching(self, principal: Principal, tool: str) -> list[PolicyRule]:
        return [rule for rule in self.rules if rule.applies_to(principal) and rule.covers(tool)]

    def allows(self, principal: Principal, tool: str) -> bool:
        """Whether a rule lets ``principal`` see and call ``tool`` (always, with no rules)."""
        return not self.rules or bool(self._matching(principal, tool))

    def check(self, principal: Principal, tool: str, args: Mapping[str, Any]) -> None:
        """Return if one applicable rule allows this call with ``args``; else ``PermissionDeniedError``
        naming the argument and the prefixes allowed."""
        if not self.rules:
            return
        reasons = []
        for rule in self._matching(principal, tool):
            reason = rule.refusal(tool, args)
            if reason is None:
                return
            reasons.append(reason)
        raise PermissionDeniedError(
            f"tools:{tool}", principal=principal.id, resource="; ".join(reasons) or "no policy rule allows it"
        )

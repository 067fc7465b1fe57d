"""Every command checks its permission (``CLI_PERMISSIONS``) before it runs, as the principal the command
line acts as: on the local command line, the machine's administrator (``LOCAL_ADMIN``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from shopfloor.cli._permissions import CLI_PERMISSIONS, iter_commands
from shopfloor.errors import PermissionDeniedError

if TYPE_CHECKING:
    from shopfloor.security import Authorizer, Principal

__all__ = ["guarded_command"]


def _guard(command: Any, path: str, principal: Principal, authorizer: Callable[[], Authorizer]) -> None:
    original = command.callback
    if original is None:
        return

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        from shopfloor.security import Resource

        if path not in CLI_PERMISSIONS:
            raise PermissionDeniedError(
                f"command:{path}", principal=principal.id, resource="a command no permission covers"
            )
        permission = CLI_PERMISSIONS[path]
        if permission is not None:
            kind = permission.partition(":")[0]
            authorizer().authorize(principal, permission, Resource(kind=kind, team=principal.team))
        return original(*args, **kwargs)

    command.callback = checked


def guarded_command(
    app: typer.Typer, principal: Principal, authorizer: Callable[[], Authorizer]
) -> TyperGroup:
    """``app`` as a command group whose every command first authorises ``principal``."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    for path, command in iter_commands(group):
        _guard(command, path, principal, authorizer)
    return group

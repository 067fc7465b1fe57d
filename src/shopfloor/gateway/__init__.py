"""gateway layer: the HTTP entry point, ``shopfloor serve``: the control plane's API
(``gateway.api``) and the sub-applications it dispatches to by exact path (``SubApp``).

The server's names (``build_server``, ``serve``, ...) are loaded at first use: a process that only
runs ``gateway.inference`` (the standalone gateway of the benchmark) does not import the control
plane, the runtime and DBOS (~50 MB of its RSS)."""

from typing import TYPE_CHECKING, Any

from shopfloor.gateway._governance import ServerGovernance
from shopfloor.gateway._mount import ASGIReceive, ASGIScope, ASGISend, SubApp
from shopfloor.gateway._permissions import CONSOLE_PERMISSIONS, DECIDED_BY_APPROVAL_POLICY, ROUTE_PERMISSIONS

if TYPE_CHECKING:
    from shopfloor.gateway._app import ShopfloorApp, create_app
    from shopfloor.gateway._serve import (
        SubAppFactory,
        app_from_environment,
        build_server,
        canary_judge,
        console_sub_app,
        serve,
        sub_app_factories,
    )

__all__ = [
    "CONSOLE_PERMISSIONS",
    "DECIDED_BY_APPROVAL_POLICY",
    "ROUTE_PERMISSIONS",
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "ServerGovernance",
    "ShopfloorApp",
    "SubApp",
    "SubAppFactory",
    "app_from_environment",
    "build_server",
    "canary_judge",
    "console_sub_app",
    "create_app",
    "serve",
    "sub_app_factories",
]

_LAZY = {
    "ShopfloorApp": "shopfloor.gateway._app",
    "create_app": "shopfloor.gateway._app",
    "SubAppFactory": "shopfloor.gateway._serve",
    "app_from_environment": "shopfloor.gateway._serve",
    "build_server": "shopfloor.gateway._serve",
    "canary_judge": "shopfloor.gateway._serve",
    "console_sub_app": "shopfloor.gateway._serve",
    "serve": "shopfloor.gateway._serve",
    "sub_app_factories": "shopfloor.gateway._serve",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

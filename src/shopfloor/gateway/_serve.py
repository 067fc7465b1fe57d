"""``shopfloor serve``: build the server from settings and run it on uvicorn (uvloop + httptools).

Each worker process builds its own application from the same settings (``app_from_environment``,
uvicorn's factory), so N workers are N executors of the same run queue over the same database: any
of them answers any request the same way, and a run started through one is executed by whichever
dequeues it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from shopfloor._registry import Registry
from shopfloor.config import GITOPS_POLICY, Settings, load_settings
from shopfloor.gateway._app import ShopfloorApp, create_app
from shopfloor.gateway._governance import ServerGovernance
from shopfloor.gateway._mount import PolicySwap, SubApp
from shopfloor.gateway._policy import PolicyWatcher
from shopfloor.gateway.api import ControlPlane, ControlStore, principal_dependency
from shopfloor.ops.releases import DeploymentRouter, Deployments, Releases
from shopfloor.runtime import RunJudge, Runtime, Services, compose
from shopfloor.security import (
    AuditLog,
    Authenticator,
    Authorizer,
    KeyStore,
    SecretStore,
    build_authenticator,
    build_authorizer,
    build_budgets,
    build_governance,
    build_secret_store,
)
from shopfloor.telemetry import TraceStore, trace_store_url
from shopfloor.workspace import Workspaces

__all__ = [
    "SubAppFactory",
    "app_from_environment",
    "build_server",
    "canary_judge",
    "console_sub_app",
    "policy_watcher",
    "serve",
    "sub_app_factories",
]

#: builds one sub-application with the server's metrics registry, authenticator and governance (its
#: authoriser and audit log, the authentication outcomes audited)
SubAppFactory = Callable[[Services, CollectorRegistry, Authenticator, ServerGovernance], SubApp]


def sub_app_factories(
    *, runtime: Runtime | None = None, store: ControlStore | None = None
) -> Registry[SubAppFactory]:
    """The sub-applications ``shopfloor serve`` mounts, by name (a fresh registry). With the server's
    ``runtime`` and ``store``, the inference gateway serves the registered agents as ``agent/NAME``."""
    inference = functools.partial(inference_sub_app, runtime=runtime, store=store)
    mcp = functools.partial(mcp_sub_app, runtime=runtime, store=store)
    factories: dict[str, SubAppFactory] = {"inference": inference, "mcp": mcp}
    if runtime is not None and store is not None:  # A2A serves agents: nothing to serve without them
        factories["a2a"] = functools.partial(a2a_sub_app, runtime=runtime, store=store)
    return Registry("gateway sub-application", factories)


def a2a_sub_app(
    services: Services,
    registry: CollectorRegistry,
    authenticator: Authenticator,
    server: ServerGovernance,
    *,
    runtime: Runtime,
    store: ControlStore,
) -> SubApp:
    """Every registered agent as an A2A server (``/a2a/NAME``), its tasks the server's durable runs."""
    from shopfloor.gateway.a2aserve import A2AGateway, RunTasks

    del services, registry
    authorizer = server.governance.authorizer
    handler = RunTasks(runtime=runtime, store=store, authorizer=authorizer)
    return A2AGateway(handler=handler, authenticator=authenticator, authorizer=authorizer, audit=server)


def mcp_sub_app(
    services: Services,
    registry: CollectorRegistry,
    authenticator: Authenticator,
    server: ServerGovernance,
    *,
    runtime: Runtime | None = None,
    store: ControlStore | None = None,
) -> SubApp:
    """The MCP gateway (``/mcp``) with the server's authenticator and authoriser; with its ``runtime``
    and ``store``, the registered agents as tools; the signed skills run with ``services``' sandbox
    backends; upstream credentials from the secret store, resolved when an upstream first connects."""
    from shopfloor.gateway.mcpgate import build_mcp_gateway

    del registry  # the gateway's calls are traced; its metrics are the runs' and the connectors'
    settings = services.settings
    opened: list[SecretStore] = []

    def resolve(name: str) -> str:
        if not opened:
            opened.append(build_secret_store(settings, audit=server.audit))
        return opened[0].reveal(name, actor="mcp-gateway")

    return build_mcp_gateway(
        settings,
        authenticator=authenticator,
        authorizer=server.governance.authorizer,
        audit=server,
        runtime=runtime,
        store=store,
        services=services,
        resolve_secret=resolve,
    )


def inference_sub_app(
    services: Services,
    registry: CollectorRegistry,
    authenticator: Authenticator,
    server: ServerGovernance,
    *,
    runtime: Runtime | None = None,
    store: ControlStore | None = None,
) -> SubApp:
    """The OpenAI-compatible inference gateway with the server's authenticator, authoriser and metrics,
    the budgets of ``[[security.limits]]`` and upstream keys from the secret store
    (``api_key = "secret:NAME"``); with the server's ``runtime`` and ``store``, its agents as
    ``agent/NAME`` models."""
    from shopfloor.gateway.inference import AgentModels, build_inference_app

    agents = None
    if runtime is not None and store is not None:
        agents = AgentModels(runtime=runtime, store=store, authorizer=server.governance.authorizer)

    settings = services.settings
    opened: list[SecretStore] = []

    def resolve(name: str) -> str:  # upstream keys are resolved while the routes are built
        if not opened:
            opened.append(build_secret_store(settings, audit=server.audit))
        return opened[0].reveal(name, actor="gateway")

    # One set of counters a process: the runtime's budgets (its runs' model calls count against the
    # same limits) where it has them; they are the runtime's to close.
    shared = runtime.admission if runtime is not None else None
    own = build_budgets(settings) if shared is None else None
    budgets = shared or own
    closing: tuple[Callable[[], None], ...] = (own.close,) if own is not None else ()
    try:
        return build_inference_app(
            settings,
            authenticator=authenticator,
            authorizer=server.governance.authorizer,
            audit=server,
            registry=registry,
            admission=budgets,
            resolve_secret=resolve,
            on_shutdown=closing,
            agents=agents,
        )
    except BaseException:
        for close in closing:
            close()
        raise
    finally:
        for (
            opened_store
        ) in opened:  # its own database connection; the audit log is the server's and stays open
            opened_store.engine.dispose()


def build_server(
    settings: Settings,
    *,
    services: Services | None = None,
    authenticator: Authenticator | None = None,
    sub_apps: Registry[SubAppFactory] | Sequence[SubAppFactory] | None = None,
    worker: bool = True,
) -> ShopfloorApp:
    """The application of one server process: its services, authenticator, governance (authoriser,
    approval policy, audit log: one per server, passed to every route, the runtime and the
    sub-applications), metrics registry, stores, runtime (a run worker when ``worker``) and
    sub-applications."""
    settings.ensure_home()
    services = services or compose(
        settings,
        run_router=DeploymentRouter(),
        run_judge=canary_judge(settings),
        evaluations=finished_evaluations,
    )
    keys = KeyStore.open(settings.db_url)
    authenticator = authenticator or build_authenticator(settings, keys)
    governance = build_governance(settings)
    registry = CollectorRegistry(auto_describe=True)
    runtime = Runtime(services, caller="server", governance=governance)
    store = ControlStore.open(settings.db_url)
    factories = sub_app_factories(runtime=runtime, store=store) if sub_apps is None else sub_apps
    if isinstance(factories, Registry):
        factories = [factories.get(name) for name in factories.names()]
    server = ServerGovernance(governance, clock=time.monotonic)
    built = [factory(services, registry, authenticator, server) for factory in factories]
    plane = ControlPlane(
        services=services,
        runtime=runtime,
        store=store,
        traces=TraceStore(trace_store_url(settings)),
        workspaces=Workspaces.from_settings(settings),
        principal=principal_dependency(authenticator, server),
        authenticator=authenticator,
        keys=keys,
        registry=registry,
        governance=governance,
    )
    if settings.server.console.enabled:
        built.append(console_sub_app(plane, authenticator, server))
    policy = None
    if settings.server.policy_poll_seconds > 0:
        policy = policy_watcher(settings, governance.authorizer, runtime, built, governance.audit)
    return create_app(
        plane, sub_apps=built, max_body=settings.server.max_body_bytes, worker=worker, policy=policy
    )


def policy_watcher(
    settings: Settings, authorizer: Authorizer, runtime: Runtime, sub_apps: Sequence[SubApp], audit: AuditLog
) -> PolicyWatcher:
    """What follows the GitOps policy file for this server: its authoriser (roles and bindings), its
    runtime's concurrent-run limits, and each sub-application's part (the gateway's routes, aliases and
    request limits). The file is read with the configuration of the server's home."""

    async def roles_and_bindings(current: Settings) -> PolicySwap:
        rebuilt = build_authorizer(current)
        return PolicySwap(commit=functools.partial(authorizer.adopt, rebuilt))

    async def run_limits(current: Settings) -> PolicySwap:
        return PolicySwap(commit=functools.partial(runtime.use_limits, current))

    env = {**os.environ, "SHOPFLOOR_HOME": str(settings.home)}
    parts = [roles_and_bindings, run_limits, *(sub.prepare_policy for sub in sub_apps)]
    return PolicyWatcher(
        path=settings.home / GITOPS_POLICY,
        load=functools.partial(load_settings, env),
        parts=parts,
        audit=audit,
        interval=settings.server.policy_poll_seconds,
        served=settings,
    )


def canary_judge(settings: Settings) -> RunJudge | None:
    """What grades a canary's sampled runs (``[releases] judge_model``); the evaluation layer is imported
    only where one is set."""
    if settings.releases.judge_model is None:
        return None
    from shopfloor.evals import RunQualityJudge

    return RunQualityJudge()


def finished_evaluations(services: Services, digest: str) -> list[dict[str, Any]]:
    """The evaluations run on an agent digest (a canary's gates); the evaluation layer is imported at
    first use."""
    from shopfloor.evals import finished_evaluations as found

    return found(services, digest)


def console_sub_app(plane: ControlPlane, authenticator: Authenticator, server: ServerGovernance) -> SubApp:
    """The web console over the control plane's runtime, stores and authoriser, its sessions in the
    runtime's database (``[server.console]``)."""
    from shopfloor.evals import EvalStore
    from shopfloor.gateway.console import Console, ConsoleApp, SessionStore, make_environment

    settings = plane.services.settings
    sessions = SessionStore.open(settings.db_url, ttl=settings.server.console.session_seconds)
    console = Console(
        plane=plane,
        authenticator=authenticator,
        server=server,
        sessions=sessions,
        evals=EvalStore.open(settings.db_url),
        deployments=Deployments(Releases(plane.services, audit=plane.governance.audit)),
        settings=settings.server.console,
        env=make_environment(),
    )
    return ConsoleApp(console)


def app_from_environment() -> ShopfloorApp:
    """uvicorn's factory in each worker process: the settings of the environment it inherited."""
    return build_server(load_settings())


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve until interrupted (SIGINT/SIGTERM stop gracefully: runs in flight resume elsewhere)."""
    import uvicorn

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }
    if workers > 1:
        uvicorn.run("shopfloor.gateway._serve:app_from_environment", factory=True, workers=workers, **options)
    else:
        uvicorn.run(build_server(settings), **options)

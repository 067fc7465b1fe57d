"""The composition root: what a Shopfloor process runs with, built once from ``Settings``.

``compose(settings)`` puts the layers together (the spec layer's reference resolvers
with the skills layer's over them, the validators of every kind of file, the registries of
every extension point, one engine per database, the telemetry) and the command line, the
worker and the server each call it once, then pass the ``Services`` down explicitly. Nothing
is found by scanning packages or registered as a side effect of an import, so what a process
can do is what this module wrote down. What is expensive is built at first use: the
telemetry (its trace store and exporters), each database's engine, DBOS (launched by the
``Runtime`` that executes runs), a model's weights (loaded by its provider).

A process uses it so::

    services = compose(load_settings())
    try:
        async with services.runtime() as runtime:   # or Runtime(services, caller=...)
            await runtime.start_executor(worker=True)  # executes runs; a pure client skips this
            ...
    finally:
        services.close()  # flushes the telemetry, disposes the engines

A server builds one ``Services`` and one executing ``Runtime`` (DBOS is one per process) and
hands both to every request handler.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shopfloor._registry import Registry
from shopfloor.agent import BuiltinFactory, builtin_tools
from shopfloor.config import Settings
from shopfloor.connectors import Connectors, SecretResolver, build_connectors
from shopfloor.diagnostics import Check, CheckFn, doctor_checks
from shopfloor.models import LoadedWeights, ProviderFactory, model_providers
from shopfloor.runtime._store import RunRecord, Track
from shopfloor.sandbox import Sandbox, SandboxPolicy, sandbox_backends, sandbox_checks, select_backend
from shopfloor.security import build_audit_log, build_secret_store
from shopfloor.skills import SkillRegistry, skill_checks, skill_ref_resolvers, skill_validator
from shopfloor.spec import (
    LoadedSpec,
    ParsedSpecs,
    RefResolver,
    ValidationReport,
    Validator,
    agent_validator,
    load_spec,
    spec_resolvers,
    validate_path,
)
from shopfloor.storage import Engines
from shopfloor.telemetry import ExporterFactory, Telemetry, build_telemetry, telemetry_exporters
from shopfloor.workspace import Workspaces

if TYPE_CHECKING:
    from shopfloor.runtime._runtime import Runtime

__all__ = [
    "EvalFinder",
    "RoutedRun",
    "RunJudge",
    "RunJudgement",
    "RunRouter",
    "Services",
    "agent_resolvers",
    "compose",
]


@dataclass(frozen=True, kw_only=True)
class RoutedRun:
    """Where a new run of an agent started by name goes: the release its deployment picked."""

    #: the release's materialised agent directory
    spec_path: str
    #: the digest that directory must have (a release that no longer verifies is refused)
    digest: str
    #: ``NAME@VERSION``
    release: str
    #: the deployment's track that picked it (recorded in the run)
    track: Track = "stable"


#: (services, agent name, caller id) -> the routed run, or None where no deployment names the agent.
#: The ops layer's deployments provide it; entry points hand it to ``compose``.
RunRouter = Callable[["Services", str, str], RoutedRun | None]


#: (services, agent digest) -> the finished evaluations run on that digest (``eval_id``, ``suite``,
#: ``summary`` with ``gates_passed``, ``finished_at``...): the evaluation layer provides it
#: (``shopfloor.evals.finished_evaluations``); a canary whose candidate fails an evaluation's gates is
#: rolled back
EvalFinder = Callable[["Services", str], list[dict[str, Any]]]


@dataclass(frozen=True, kw_only=True)
class RunJudgement:
    """A judge's grade of one finished run's answer."""

    run_id: str
    #: 0 (worst) to 1 (best)
    score: float
    #: who judged (the judge model's reference)
    judge: str
    #: the judge's reply, kept with the score
    reply: str = ""


class RunJudge(ABC):
    """Grades the answer of a finished run: the judged quality a canary's sampled runs are compared on.
    The evaluation layer provides it (``shopfloor.evals.RunQualityJudge``); entry points hand it to
    ``compose``, as they do the ``RunRouter``."""

    @abstractmethod
    async def judge(self, services: Services, run: RunRecord) -> RunJudgement:
        """Grade ``run``; raises where the judge cannot (the run is then judged at a later round)."""


@dataclass(frozen=True, kw_only=True)
class Services:
    """A process's services; ``compose`` makes them."""

    settings: Settings
    #: what each kind of reference adds to an agent's digest
    resolvers: Mapping[str, RefResolver]
    #: what ``shopfloor validate`` checks, first match wins
    validators: tuple[Validator, ...]
    #: model providers by reference prefix (``openai``, ``local``, ``test``...)
    models: Registry[ProviderFactory]
    #: the embedded models' weights, loaded at a ``local:`` model's first use, shared by the process
    weights: LoadedWeights
    #: the ``builtin:NAME`` tools an agent spec may grant
    builtins: Registry[BuiltinFactory]
    #: sandbox backends by name (``bwrap``, ``landlock``, ``gvisor``, ``none``)
    sandboxes: Registry[type[Sandbox]]
    #: where traces and metrics go besides the local store (OTLP over HTTP or gRPC)
    exporters: Registry[ExporterFactory]
    #: the lines of ``shopfloor doctor``
    checks: Registry[Check | CheckFn]

    #: one engine per database for every store of this process
    engines: Engines = field(default_factory=Engines)
    #: agent specs parsed once by text (``load_spec``: a run loads its spec to start and to run)
    parsed_specs: ParsedSpecs = field(default_factory=ParsedSpecs)
    #: which release serves a run started by agent name (``Runtime.start_run(agent=...)``); None: none
    run_router: RunRouter | None = None
    #: what grades sampled runs of a canary's releases (``Deployments.evaluate``); None: not judged
    run_judge: RunJudge | None = None
    #: the evaluations run on an agent digest (a canary's gates); None: none are looked up
    evaluations: EvalFinder | None = None
    #: every run gets a workspace of its own (``run-<id>``, seeded like the agent's) whatever the spec
    #: names, so that no state leaks from one run to the next (an evaluation's items)
    own_workspaces: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _built: dict[str, Telemetry | None] = field(default_factory=dict, repr=False, compare=False)
    _finalizer: weakref.finalize[..., Any] = field(init=False, repr=False, compare=False)
    #: the connector pool of each event loop (MCP sessions and server processes belong to their loop)
    _pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Connectors] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # What ``close`` does also happens when the services are collected or the process exits,
        # so connections and span queues are never left to the garbage collector.
        finalizer = weakref.finalize(self, _release, self._lock, self._built, self.engines, self.weights)
        object.__setattr__(self, "_finalizer", finalizer)

    def load_spec(self, path: Path | str) -> LoadedSpec:
        """Load an agent spec, its references resolved by this process's resolvers."""
        loaded = load_spec(path, resolvers=self.resolvers, parsed=self.parsed_specs)
        if self.own_workspaces:
            workspace = loaded.spec.workspace.model_copy(update={"name": None, "start_from": "last"})
            loaded = replace(loaded, spec=loaded.spec.model_copy(update={"workspace": workspace}))
        return loaded

    def with_own_workspaces(self) -> Services:
        """These services with ``own_workspaces`` on. They share this object's engines, telemetry and
        weights (closing either closes both) and keep it alive, so its finalizer cannot run under them."""
        derived = copy.copy(self)
        object.__setattr__(derived, "own_workspaces", True)
        object.__setattr__(derived, "_owner", self)
        return derived

    def validate(self, path: Path | str) -> ValidationReport:
        """Validate an agent spec or a skill directory."""
        return validate_path(path, self.validators)

    @property
    def telemetry(self) -> Telemetry | None:
        """This process's telemetry, built at first use (None where ``telemetry.enabled`` is off).
        Active only where its owner activates it: a ``Runtime`` does around each run."""
        with self._lock:
            if "telemetry" not in self._built:
                enabled = self.settings.telemetry.enabled
                self._built["telemetry"] = (
                    build_telemetry(self.settings, destinations=self.exporters, engines=self.engines)
                    if enabled
                    else None
                )
            return self._built["telemetry"]

    def sandbox(self, policy: SandboxPolicy) -> Sandbox:
        """The backend ``policy`` picks among this process's (its isolation, the settings', or auto)."""
        return select_backend(policy, self.settings, backends=self.sandboxes)(self.settings)

    def skill_registry(self) -> SkillRegistry:
        """The published skills, in the settings' database on its shared engine (close it after use)."""
        return SkillRegistry.from_settings(self.settings, self.engines)

    def workspaces(self, url: str | None = None) -> Workspaces:
        """The workspaces in the settings' store (or the one at ``url``); close them after use."""
        return Workspaces.from_settings(self.settings, url)

    def runtime(self, *, caller: str | None = None, uid: int | None = None) -> Runtime:
        """A ``Runtime`` on these services: a client, and an executor once ``start_executor`` is called
        (DBOS is launched then, once per process)."""
        from shopfloor.runtime._runtime import Runtime

        return Runtime(self, caller=caller, uid=uid)

    def connectors(self) -> Connectors:
        """The running event loop's connector pool (made at first use); ``secret:NAME`` values in a
        connector's spec are read from the secret store, audited as read by ``connectors``."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.get(loop)
            if pool is None:
                pool = build_connectors(self.settings, secrets=self._secret_resolver())
                self._pools[loop] = pool
            return pool

    async def close_connectors(self) -> None:
        """Stop the running loop's connectors: their server processes, sessions and connections."""
        with self._lock:
            pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()

    def _secret_resolver(self) -> SecretResolver:
        # The store (and its audit log's engine) is opened at the first secret a connector reads.
        opened: list[Any] = []

        def resolve(name: str) -> str:
            if not opened:
                opened.append(build_secret_store(self.settings, audit=build_audit_log(self.settings)))
            value: str = opened[0].reveal(name, actor="connectors")
            return value

        return resolve

    def close(self) -> None:
        """Flush and stop the telemetry (where it was built), dispose every engine, free the weights."""
        self._finalizer()


def _release(
    lock: threading.Lock, built: dict[str, Telemetry | None], engines: Engines, weights: LoadedWeights
) -> None:
    with lock:
        telemetry = built.get("telemetry")
        built["telemetry"] = None  # closed: nothing is traced or rebuilt any more
    if telemetry is not None:
        telemetry.shutdown()
    engines.close()
    weights.close()


def agent_resolvers() -> dict[str, RefResolver]:
    """What each kind of reference adds to an agent's digest: the spec layer's resolvers, with the
    skills layer's over them (a skill directory digests as its manifest)."""
    return {**spec_resolvers(), **skill_ref_resolvers()}


def compose(
    settings: Settings,
    *,
    run_router: RunRouter | None = None,
    run_judge: RunJudge | None = None,
    evaluations: EvalFinder | None = None,
) -> Services:
    """Build the services of a process from its settings; ``run_router``: the deployments that pick the
    release of a run started by agent name (``shopfloor.ops.releases.DeploymentRouter``); ``run_judge``:
    what grades the sampled runs of a canary (``shopfloor.evals.RunQualityJudge``); ``evaluations``: the
    evaluations run on an agent digest (``shopfloor.evals.finished_evaluations``)."""
    resolvers = agent_resolvers()
    weights = LoadedWeights()
    checks = doctor_checks()
    for name, check in {**sandbox_checks(), **skill_checks()}.items():
        checks.register(name, check)
    return Services(
        settings=settings,
        resolvers=resolvers,
        validators=(skill_validator, agent_validator(resolvers)),
        models=model_providers(weights),
        weights=weights,
        builtins=builtin_tools(),
        sandboxes=sandbox_backends(),
        exporters=telemetry_exporters(),
        checks=checks,
        run_router=run_router,
        run_judge=run_judge,
        evaluations=evaluations,
    )

"""The extension point: a ``Sandbox`` backend opens ``SandboxSession``s; backends live in a registry
(``sandbox_backends()``, which the composition root holds and passes down)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from opentelemetry.trace import Span

from shopfloor._registry import Registry
from shopfloor.config import Settings
from shopfloor.errors import SandboxUnavailableError
from shopfloor.sandbox._caps import Capabilities, probe_capabilities
from shopfloor.sandbox._policy import Command, ExecRequest, ExecResult, Mount, SandboxPolicy
from shopfloor.telemetry import SANDBOX_CPU, SANDBOX_MEMORY, mark_error, span

__all__ = [
    "AUTO_ORDER",
    "Sandbox",
    "SandboxSession",
    "get_backend",
    "open_sandbox",
    "run_sandboxed",
    "sandbox_backends",
    "select_backend",
]


class SandboxSession(ABC):
    """A sandbox that stays up between execs; close it (or use ``async with``) to kill what is left."""

    backend: str

    @abstractmethod
    async def exec(self, command: Command) -> ExecResult:
        """Run ``command`` inside (its timeout defaults to the policy's); a failing command is a result."""

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> SandboxSession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Sandbox(ABC):
    """One isolation backend. ``unavailable`` says why it cannot run here (None: it can)."""

    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    @abstractmethod
    def unavailable(cls, caps: Capabilities) -> str | None: ...

    async def open(
        self, policy: SandboxPolicy, mounts: Sequence[Mount], *, workspace: Path, tenant: str
    ) -> SandboxSession:
        """A session whose every exec is traced as a ``sandbox.exec`` span."""
        return _TracedSession(await self._open(policy, mounts, workspace=workspace, tenant=tenant), tenant)

    async def run(self, request: ExecRequest) -> ExecResult:
        """One command in a fresh sandbox, traced as a ``sandbox.exec`` span (CPU time, peak memory)."""
        with _exec_span(request.command.argv, self.name, request.tenant) as current:
            result = await self._run(request)
            _record(current, result)
        return result

    @abstractmethod
    async def _open(
        self, policy: SandboxPolicy, mounts: Sequence[Mount], *, workspace: Path, tenant: str
    ) -> SandboxSession: ...

    async def _run(self, request: ExecRequest) -> ExecResult:
        """One command in a fresh sandbox; backends override this when they have a cheaper one-shot path."""
        session = await self._open(
            request.policy, request.mounts, workspace=request.workspace, tenant=request.tenant
        )
        async with session:
            return await session.exec(request.command)


# "auto" takes the first available. gVisor is stronger but costs ~200 ms per exec, so it is used only
# when a policy or settings.sandbox.backend names it.
AUTO_ORDER = ("bwrap", "landlock")


def sandbox_backends() -> Registry[type[Sandbox]]:
    """The built-in backends, each imported when first chosen (optional dependencies stay optional)."""
    return Registry(
        "sandbox backend",
        {
            "bwrap": "shopfloor.sandbox._bwrap:BwrapSandbox",
            "landlock": "shopfloor.sandbox._landlock:LandlockSandbox",
            "gvisor": "shopfloor.sandbox._gvisor:GvisorSandbox",
            "none": "shopfloor.sandbox._none:NoSandbox",
        },
    )


def get_backend(name: str, backends: Registry[type[Sandbox]] | None = None) -> type[Sandbox]:
    """The backend called ``name`` in ``backends`` (the built-in ones by default)."""
    backends = backends if backends is not None else sandbox_backends()
    if name not in backends:
        raise SandboxUnavailableError(
            f"unknown sandbox backend {name!r}; known: {', '.join(sorted(backends.names()))}"
        )
    return backends.get(name)


def select_backend(
    policy: SandboxPolicy,
    settings: Settings,
    caps: Capabilities | None = None,
    backends: Registry[type[Sandbox]] | None = None,
) -> type[Sandbox]:
    """The backend ``policy`` names, else the settings' one, else the first usable of ``AUTO_ORDER``
    (from ``backends``, the built-in ones by default)."""
    caps = caps or probe_capabilities()
    backends = backends if backends is not None else sandbox_backends()
    wanted = policy.isolation if policy.isolation != "auto" else settings.sandbox.backend
    if wanted != "auto":
        backend = get_backend(wanted, backends)
        reason = backend.unavailable(caps)
        if reason is not None:
            raise SandboxUnavailableError(f"sandbox backend {wanted!r} cannot run here: {reason}")
        return backend
    reasons = []
    for name in AUTO_ORDER:
        backend = get_backend(name, backends)
        reason = backend.unavailable(caps)
        if reason is None:
            return backend
        reasons.append(f"{name}: {reason}")
    raise SandboxUnavailableError(
        "no isolation layer can confine commands here, so nothing will run:\n  "
        + "\n  ".join(reasons)
        + "\nFix: install bubblewrap and enable user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
        "user.max_user_namespaces>0), or run as root on a kernel with Landlock. For development only, "
        "a policy may say `isolation: none`."
    )


async def open_sandbox(
    policy: SandboxPolicy, mounts: Sequence[Mount] = (), *, workspace: Path, tenant: str, settings: Settings
) -> SandboxSession:
    """Open a session with the backend ``policy.isolation`` picks; use it as ``async with``."""
    backend = select_backend(policy, settings)
    return await backend(settings).open(policy, mounts, workspace=workspace, tenant=tenant)


async def run_sandboxed(
    request: ExecRequest, *, settings: Settings, backends: Registry[type[Sandbox]] | None = None
) -> ExecResult:
    """One command in a fresh sandbox, by the cheapest path the backend has (no session helper)."""
    backend = select_backend(request.policy, settings, backends=backends)
    return await backend(settings).run(request)


@contextmanager
def _exec_span(argv: Sequence[str], backend: str, tenant: str) -> Iterator[Span]:
    attributes = {
        "shopfloor.sandbox.backend": backend,
        "shopfloor.sandbox.tenant": tenant,
        "shopfloor.sandbox.argv0": argv[0] if argv else "",
    }
    with span("sandbox.exec", component="sandbox", attributes=attributes) as current:
        yield current


def _record(current: Span, result: ExecResult) -> None:
    """CPU time, peak memory and exit of an exec on its span; a kill (timeout, memory...) is an error."""
    current.set_attribute(SANDBOX_CPU, result.cpu_time)
    current.set_attribute(SANDBOX_MEMORY, result.peak_memory)
    current.set_attribute("shopfloor.sandbox.exit_code", result.exit_code)
    if result.killed_by is not None:
        mark_error(
            current,
            "timeout" if result.killed_by == "timeout" else result.killed_by,
            f"killed by {result.killed_by}",
        )


class _TracedSession(SandboxSession):
    """A backend's session whose every exec is a ``sandbox.exec`` span."""

    def __init__(self, inner: SandboxSession, tenant: str) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.tenant = tenant

    async def exec(self, command: Command) -> ExecResult:
        with _exec_span(command.argv, self.backend, self.tenant) as current:
            result = await self.inner.exec(command)
            _record(current, result)
        return result

    async def close(self) -> None:
        await self.inner.close()

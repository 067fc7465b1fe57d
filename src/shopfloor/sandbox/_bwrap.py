"""The default backend: bubblewrap namespaces + seccomp + cgroup + rlimits + per-tenant uid."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from shopfloor.errors import SandboxUnavailableError
from shopfloor.sandbox._base import Sandbox, SandboxSession
from shopfloor.sandbox._caps import Capabilities
from shopfloor.sandbox._host import Confinement, confine
from shopfloor.sandbox._layout import BASE_ENV, FdBag, bwrap_argv, sandbox_env
from shopfloor.sandbox._policy import ExecRequest, ExecResult, Mount, SandboxPolicy
from shopfloor.sandbox._process import run_process
from shopfloor.sandbox._python import SYSTEM_PYTHON, python_runtime
from shopfloor.sandbox._seccomp import seccomp_memfd
from shopfloor.sandbox._session import HELPER_SOURCE, HelperSession

__all__ = ["BwrapSandbox", "BwrapSession", "helper_python"]


def helper_python() -> tuple[str, tuple[Mount, ...]]:
    """The interpreter that runs the session helper inside, and the mounts it needs."""
    if SYSTEM_PYTHON.exists():
        return str(SYSTEM_PYTHON), ()
    runtime = python_runtime(interpreter=Path(sys.base_prefix) / "bin" / "python3")
    return runtime.executable, runtime.mounts


def _bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailableError("bubblewrap is not installed (fix: apt-get install bubblewrap)")
    return path


class BwrapSession(HelperSession):
    def helper_argv(self, control_fd: int, config: dict[str, object], fds: FdBag) -> list[str]:
        import json

        python, _ = helper_python()
        seccomp = fds.add(seccomp_memfd(self.confinement.policy.allows_network))
        command = [python, "-I", "-S", "-c", HELPER_SOURCE, str(control_fd), json.dumps(config)]
        return bwrap_argv(
            self.confinement, command, fds, bwrap=_bwrap(), seccomp_fd=seccomp, env=BASE_ENV, as_pid_1=True
        )


class BwrapSandbox(Sandbox):
    name = "bwrap"
    description = "bubblewrap namespaces, seccomp, cgroup, rlimits, bounded writable area, per-tenant uid"

    @classmethod
    def unavailable(cls, caps: Capabilities) -> str | None:
        if caps.bwrap is None:
            return "bubblewrap is not installed (fix: apt-get install bubblewrap)"
        if caps.userns is not None:
            return caps.userns
        if caps.seccomp is not None:
            return caps.seccomp
        if caps.compiler is None:
            return "no C compiler to build the launcher once (fix: apt-get install gcc)"
        return None

    async def _confine(
        self, policy: SandboxPolicy, mounts: Sequence[Mount], workspace: Path, tenant: str
    ) -> Confinement:
        _, helper_mounts = helper_python()
        return await confine(
            policy, (*helper_mounts, *mounts), workspace=workspace, tenant=tenant, settings=self.settings
        )

    async def _open(
        self, policy: SandboxPolicy, mounts: Sequence[Mount], *, workspace: Path, tenant: str
    ) -> SandboxSession:
        session = BwrapSession(await self._confine(policy, mounts, workspace, tenant), backend=self.name)
        await session.start()
        return session

    async def _run(self, request: ExecRequest) -> ExecResult:
        policy, timeout = request.policy, request.command.timeout
        if policy.allows_network:
            # The proxy forwarder lives in the session helper.
            return await super()._run(request)
        confinement = await self._confine(policy, request.mounts, request.workspace, request.tenant)
        fds = FdBag(stage_dir=confinement.stage_dir)
        try:
            seccomp = fds.add(seccomp_memfd(False))
            command = bwrap_argv(
                confinement,
                list(request.command.argv),
                fds,
                bwrap=_bwrap(),
                seccomp_fd=seccomp,
                env=sandbox_env(confinement, request.command.env),
            )
            return await run_process(
                confinement,
                command,
                pass_fds=list(fds.fds),
                staged=list(fds.staged),
                stdin=request.command.stdin,
                timeout=policy.timeout if timeout is None else timeout,
                backend=self.name,
                warnings=tuple(confinement.warnings),
            )
        finally:
            fds.close()
            await confinement.release()

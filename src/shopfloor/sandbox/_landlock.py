"""Fallback backend where bubblewrap or user namespaces are unavailable: Landlock + seccomp + namespaces.

The launcher (still root) joins the cgroup and makes network (only loopback), IPC, mount and PID
namespaces; its child is PID 1 of the new PID namespace and mounts a fresh /proc there, so no host
process is visible, then drops to the tenant's uid. The session helper then confines itself with a
Landlock ruleset (read-only system directories and mounts, read-write workspace and a private temp dir;
TCP only to the proxy forwarder; on ABI 6+ no signals to, and no abstract sockets of, processes outside)
and a seccomp filter that also denies creating Unix sockets: Landlock cannot stop ``connect()`` to a
host socket such as PostgreSQL's (only a connected stream ``socketpair`` stays). Paths inside are host
paths, except the workspace, which the launcher bind-mounts where the tenant can reach it (the command
starts there; ``$WORKSPACE`` names it). Mounts appear at their host path, so their parents must be
traversable by the tenant (a venv under /usr, /opt, /srv...). Where the kernel refuses one of these
namespaces the launcher fails and the sandbox does not start, saying which.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from shopfloor.errors import SandboxPolicyError
from shopfloor.sandbox._base import Sandbox, SandboxSession
from shopfloor.sandbox._caps import Capabilities
from shopfloor.sandbox._host import confine
from shopfloor.sandbox._layout import BASE_ENV, FdBag
from shopfloor.sandbox._policy import Mount, SandboxPolicy
from shopfloor.sandbox._python import SYSTEM_PYTHON, python_runtime
from shopfloor.sandbox._seccomp import seccomp_memfd
from shopfloor.sandbox._session import HELPER_SOURCE, HelperSession

__all__ = ["LandlockSandbox", "LandlockSession"]

_READ_ONLY = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/proc", "/dev/urandom", "/dev/random", "/dev/zero")
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "ssl", "nsswitch.conf",
        "passwd", "group")  # fmt: skip


class LandlockSession(HelperSession):
    private_namespaces = True
    workspace_path = ""

    @property
    def tmp_dir(self) -> Path:
        area = self.confinement.area
        return self.confinement.runtime_dir / "tmp" if area is None else area.tmp

    def helper_argv(self, control_fd: int, config: dict[str, object], fds: FdBag) -> list[str]:
        c = self.confinement
        # The tenant may not be able to traverse the workspace's host parents: the launcher bind-mounts
        # it at a path it can reach, in a private mount namespace.
        workspace = fds.stage(c.workspace_view)
        self.workspace_path = workspace
        read_only = [*_READ_ONLY, *(f"/etc/{name}" for name in _ETC)]
        read_write = [workspace, str(self.tmp_dir), "/dev/null", "/dev/full"]
        for mount in c.mounts:
            (read_only if mount.read_only else read_write).append(str(mount.host_path))
        config = {
            **config,
            "cwd": workspace,
            "landlock": {"ro": read_only, "rw": read_write},
            "seccomp_fd": fds.add(seccomp_memfd(c.policy.allows_network, allow_unix=False)),
        }
        python = str(SYSTEM_PYTHON) if SYSTEM_PYTHON.exists() else python_runtime().executable
        return [python, "-I", "-S", "-c", HELPER_SOURCE, str(control_fd), json.dumps(config)]

    def exec_env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        tmp = str(self.tmp_dir)
        env = {**BASE_ENV, "HOME": tmp, "TMPDIR": tmp, "WORKSPACE": self.workspace_path}
        return {**super().exec_env(None), **env, **(extra or {})}


class LandlockSandbox(Sandbox):
    name = "landlock"
    description = (
        "Landlock file-system rules, seccomp (no Unix sockets), private network, PID (own /proc), IPC and "
        "mount namespaces, cgroup, tenant uid"
    )

    @classmethod
    def unavailable(cls, caps: Capabilities) -> str | None:
        if caps.landlock_abi < 1:
            return "this kernel has no Landlock (needs Linux 5.13+ with landlock in the LSM list)"
        if not caps.root:
            return "needs root to make the network namespace and switch to the tenant's uid"
        if caps.seccomp is not None:
            return caps.seccomp
        if caps.compiler is None:
            return "no C compiler to build the launcher once (fix: apt-get install gcc)"
        return None

    async def _open(
        self, policy: SandboxPolicy, mounts: Sequence[Mount], *, workspace: Path, tenant: str
    ) -> SandboxSession:
        for mount in mounts:
            if mount.sandbox_path != str(mount.host_path):
                raise SandboxPolicyError(
                    f"the landlock backend shows mounts at their host path: {mount.host_path} cannot appear "
                    f"at {mount.sandbox_path} (use the same path, or the bwrap backend)"
                )
        confinement = await confine(
            policy, tuple(mounts), workspace=workspace, tenant=tenant, settings=self.settings
        )
        session = LandlockSession(confinement, backend=self.name)

        if confinement.area is None:  # not root: a private temp dir, unbounded in total

            def make_tmp() -> None:
                session.tmp_dir.mkdir(mode=0o700)

            await asyncio.to_thread(make_tmp)
        await session.start()
        return session

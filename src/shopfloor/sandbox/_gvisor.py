"""Optional stronger backend: gVisor (``runsc``), a user-space kernel between the command and the host.

Each exec is one ``runsc run`` of a generated OCI bundle (about 0.2 s here), so a session is a series
of fresh sandboxes sharing the workspace (``/tmp`` does not persist between execs). runsc runs as root
inside the session's cgroup (it sets up its own namespaces and seccomp); the command runs as the
tenant's uid inside gVisor. Allow-listed network is not offered on this backend.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

from shopfloor.errors import SandboxError, SandboxPolicyError
from shopfloor.sandbox._base import Sandbox, SandboxSession
from shopfloor.sandbox._caps import Capabilities
from shopfloor.sandbox._host import Confinement, confine
from shopfloor.sandbox._layout import BASE_ENV
from shopfloor.sandbox._policy import Command, ExecResult, Mount, SandboxPolicy
from shopfloor.sandbox._process import run_process

__all__ = ["GvisorSandbox", "GvisorSession", "oci_spec"]

_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64")
_ETC = ("ld.so.cache", "localtime", "alternatives", "ssl", "nsswitch.conf")


def _bind(source: str, destination: str, read_only: bool = True) -> dict[str, object]:
    options = ["rbind", "ro" if read_only else "rw"]
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def oci_spec(
    c: Confinement, argv: Sequence[str], env: dict[str, str], passwd: Path, cgroup: str
) -> dict[str, object]:
    """The OCI runtime spec for one command (root file system: an empty read-only directory)."""
    mounts: list[dict[str, object]] = [{"destination": "/proc", "type": "proc", "source": "proc"}]
    if c.area is None:
        mounts.append(
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
        )
    else:  # /tmp shares the sandbox's bounded writable area with the workspace
        mounts.append(_bind(str(c.area.tmp), "/tmp", read_only=False))
    for path in _SYSTEM:
        if Path(path).exists():
            mounts.append(_bind(str(Path(path).resolve()), path))
    for name in _ETC:
        if (Path("/etc") / name).exists():
            mounts.append(_bind(f"/etc/{name}", f"/etc/{name}"))
    mounts.append(_bind(str(passwd), "/etc/passwd"))
    mounts.append(_bind(str(c.workspace_view), "/workspace", read_only=False))
    mounts.extend(_bind(str(m.host_path), m.sandbox_path, m.read_only) for m in c.mounts)
    policy = c.policy
    return {
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": c.uid, "gid": c.gid},
            "args": list(argv),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": "/workspace",
            "noNewPrivileges": True,
            "capabilities": {
                "bounding": [],
                "effective": [],
                "permitted": [],
                "inheritable": [],
                "ambient": [],
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": policy.nofile, "soft": policy.nofile},
                {"type": "RLIMIT_FSIZE", "hard": policy.disk, "soft": policy.disk},
            ],
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            # runsc moves its sandbox and gofer into this group and applies the limits there itself.
            "cgroupsPath": cgroup,
            "resources": {
                "memory": {"limit": policy.memory, "swap": policy.memory},
                "pids": {"limit": policy.pids},
                "cpu": {"quota": max(1000, int(policy.cpus * 100_000)), "period": 100_000},
            },
        },
    }


class GvisorSession(SandboxSession):
    backend = "gvisor"

    def __init__(self, confinement: Confinement, runsc: str) -> None:
        self.confinement = confinement
        self.runsc = runsc
        self._closed = False
        self._lock = asyncio.Lock()

    async def exec(self, command: Command) -> ExecResult:
        if self._closed:
            raise SandboxError("sandbox session is closed")
        async with self._lock:
            return await self._exec(
                list(command.argv), command.stdin, {**BASE_ENV, **(command.env or {})}, command.timeout
            )

    async def _exec(
        self,
        argv: list[str],
        stdin: bytes,
        env: dict[str, str],
        timeout: float | None,  # noqa: ASYNC109
    ) -> ExecResult:
        c = self.confinement
        bundle = c.runtime_dir / f"bundle-{secrets.token_hex(4)}"
        passwd = bundle / "passwd"

        def write_bundle() -> None:
            (bundle / "rootfs").mkdir(parents=True)
            passwd.write_text(f"root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:{c.uid}:{c.gid}::/tmp:/bin/sh\n")
            spec = oci_spec(c, argv, env, passwd, f"/shopfloor/gvisor-{bundle.name}")
            (bundle / "config.json").write_text(json.dumps(spec))

        await asyncio.to_thread(write_bundle)
        state = c.runtime_dir / "runsc-state"
        command = [
            self.runsc, "--root", str(state), "--network=none", "--platform=ptrace",
            "run", "--bundle", str(bundle), bundle.name,
        ]  # fmt: skip
        try:
            return await run_process(
                c,
                command,
                pass_fds=[],
                stdin=stdin,
                timeout=c.policy.timeout if timeout is None else timeout,
                backend=self.backend,
                warnings=tuple(c.warnings),
            )
        finally:
            # Removes the container's state and the cgroups runsc made for it, killing what is left.
            delete = await asyncio.create_subprocess_exec(
                self.runsc, "--root", str(state), "delete", "--force", bundle.name,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await delete.wait()
            await asyncio.to_thread(shutil.rmtree, bundle, True)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            async with self._lock:
                await self.confinement.release()


class GvisorSandbox(Sandbox):
    name = "gvisor"
    description = "gVisor user-space kernel (runsc), one sandbox per exec"

    @classmethod
    def unavailable(cls, caps: Capabilities) -> str | None:
        if caps.runsc is None:
            return "runsc is not installed (fix: apt-get install runsc)"
        if not caps.root:
            return "runsc needs root here (it then runs the command as the tenant's uid inside gVisor)"
        if caps.compiler is None:
            return "no C compiler to build the launcher once (fix: apt-get install gcc)"
        return None

    async def _open(
        self, policy: SandboxPolicy, mounts: Sequence[Mount], *, workspace: Path, tenant: str
    ) -> SandboxSession:
        if policy.allows_network:
            raise SandboxPolicyError(
                "the gvisor backend offers no network; use isolation: bwrap for an allow-list"
            )
        runsc = shutil.which("runsc")
        if runsc is None:
            raise SandboxError("runsc is not installed (fix: apt-get install runsc)")
        confinement = await confine(
            policy, tuple(mounts), workspace=workspace, tenant=tenant, settings=self.settings
        )
        confinement.launch_as_root = True
        return GvisorSession(confinement, runsc)

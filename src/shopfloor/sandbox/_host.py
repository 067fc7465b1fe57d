"""Host-side set-up shared by the confining backends: tenant uid, cgroup, launcher, process spawn."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from shopfloor.config import Settings
from shopfloor.sandbox._cgroup import Cgroup, CgroupVersion, detect_cgroups
from shopfloor.sandbox._disk import RUNTIME_PREFIX, WritableArea, mount_writable_area, sweep_writable_areas
from shopfloor.sandbox._launcher import build_launcher, launcher_argv
from shopfloor.sandbox._policy import Mount, SandboxPolicy
from shopfloor.sandbox._tenant import prepare_workspace, tenant_uid

__all__ = ["CLEAN_ENV", "Confinement", "confine", "host_cgroups", "spawn"]

# The launcher and bwrap get this environment and nothing else: whatever secrets the host process holds
# must not be readable inside, not even from /proc/1/environ.
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@functools.cache
def host_cgroups() -> CgroupVersion | None:
    cgroups = detect_cgroups()
    if cgroups is not None:
        cgroups.sweep()
    return cgroups


@functools.cache
def swept_writable_areas() -> list[Path]:
    """Once per process, before the first area is mounted: what crashed hosts left (root only)."""
    return sweep_writable_areas(Path(tempfile.gettempdir())) if os.geteuid() == 0 else []


@dataclass(kw_only=True)
class Confinement:
    """Everything one session holds on the host; ``release`` undoes it."""

    policy: SandboxPolicy
    mounts: tuple[Mount, ...]
    workspace: Path
    tenant: str
    uid: int
    gid: int
    cgroup: Cgroup | None
    launcher: Path
    runtime_dir: Path
    area: WritableArea | None = None  # None: not root, so only RLIMIT_FSIZE bounds what is written
    warnings: list[str] = field(default_factory=list)
    # gVisor's runsc must start as root (it drops to the tenant's uid itself) and, being a Go program that
    # reserves far more address space and fds than it uses, gets its rlimits through its OCI spec instead.
    launch_as_root: bool = False

    @property
    def stage_dir(self) -> Path:
        return self.runtime_dir / "stage"

    @property
    def workspace_view(self) -> Path:
        """What the sandbox sees as its workspace: the bounded overlay, else the workspace itself."""
        return self.workspace if self.area is None else self.area.merged

    async def release(self) -> None:
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        try:
            if self.cgroup is not None:
                self.cgroup.remove()
        finally:
            try:
                if self.area is not None:
                    self.area.release()
            finally:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)


def _confine(
    policy: SandboxPolicy, mounts: tuple[Mount, ...], workspace: Path, tenant: str, settings: Settings
) -> Confinement:
    warnings: list[str] = []
    if os.geteuid() == 0:
        uid = gid = tenant_uid(tenant, settings)
    else:
        uid, gid = os.getuid(), os.getgid()
        warnings.append("not running as root: the sandbox runs as the current uid, not a per-tenant uid")
    prepare_workspace(workspace, uid)
    launcher = build_launcher(settings.home / "sandbox" / "bin")
    runtime_dir = Path(tempfile.mkdtemp(prefix=f"{RUNTIME_PREFIX}{os.getpid()}-"))
    os.chmod(runtime_dir, 0o711)
    (runtime_dir / "stage").mkdir(mode=0o755)
    area = None
    cgroup: Cgroup | None = None
    try:
        if os.geteuid() == 0:
            swept_writable_areas()
            area = mount_writable_area(
                runtime_dir, workspace, size=policy.disk, files=policy.files, uid=uid, gid=gid
            )
        else:
            warnings.append("not running as root: disk is bounded per file only, not in total or in files")
        cgroups = host_cgroups()
        if cgroups is None:
            warnings.append("no usable cgroup: memory, cpu and pids are bounded by rlimits only")
        else:
            name = f"{tenant[:32]}-{secrets.token_hex(6)}".replace("/", "_")
            cgroup = cgroups.create(name, memory=policy.memory, cpus=policy.cpus, pids=policy.pids)
    except BaseException:
        try:
            if area is not None:
                area.release()
        finally:
            shutil.rmtree(runtime_dir, ignore_errors=True)
        raise
    return Confinement(
        policy=policy,
        mounts=mounts,
        workspace=workspace,
        tenant=tenant,
        uid=uid,
        gid=gid,
        cgroup=cgroup,
        launcher=launcher,
        runtime_dir=runtime_dir,
        area=area,
        warnings=warnings,
    )


async def confine(
    policy: SandboxPolicy, mounts: tuple[Mount, ...], *, workspace: Path, tenant: str, settings: Settings
) -> Confinement:
    return await asyncio.to_thread(_confine, policy, mounts, workspace, tenant, settings)


async def spawn(
    confinement: Confinement,
    argv: list[str],
    *,
    pass_fds: list[int],
    staged: list[Path] | None = None,
    private_namespaces: bool = False,
    stdin: int | None = None,
) -> asyncio.subprocess.Process:
    """Start ``argv`` (bwrap, runsc, ...) through the launcher, inside the session's cgroup."""
    policy = confinement.policy
    cgroup_fds = []
    try:
        if confinement.cgroup is not None:
            cgroup_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in confinement.cgroup.join_files]
        as_root = confinement.launch_as_root
        full = launcher_argv(
            confinement.launcher,
            uid=0 if as_root else confinement.uid,
            gid=0 if as_root else confinement.gid,
            address_space=0 if as_root else policy.rlimit_as,
            file_size=0 if as_root else policy.disk,
            nofile=0 if as_root else policy.nofile,
            cgroup_fds=cgroup_fds,
            argv=argv,
            private_namespaces=private_namespaces,
            stage_dir=confinement.stage_dir,
            staged=staged,
        )
        return await asyncio.create_subprocess_exec(
            *full,
            stdin=asyncio.subprocess.PIPE if stdin is None else stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=[*cgroup_fds, *pass_fds],
            env=CLEAN_ENV,
            start_new_session=True,
        )
    finally:
        for fd in cgroup_fds:
            os.close(fd)

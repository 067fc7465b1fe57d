"""The file system and environment a bubblewrap sandbox sees, as bwrap arguments.

Host paths to mount are bind-mounted by the launcher (still root) in a private mount namespace
(``FdBag.stage``): bwrap, already running as the tenant's uid, could not otherwise reach a
workspace or interpreter whose host parents the tenant may not traverse (``/root/...``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shopfloor.sandbox._host import Confinement

__all__ = ["BASE_ENV", "PROXY_PORT", "FdBag", "bwrap_argv", "sandbox_env"]

BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "USER": "sandbox",
    "PYTHONDONTWRITEBYTECODE": "1",
    "WORKSPACE": "/workspace",
}
PROXY_PORT = 3128
_ETC = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "ssl", "ca-certificates",
    "mime.types", "nsswitch.conf", "protocols", "services",
)  # fmt: skip


@dataclass
class FdBag:
    """Fds to pass to the launcher; closed in the host once the child has them."""

    stage_dir: Path | None = None
    fds: list[int] = field(default_factory=list)
    staged: list[Path] = field(default_factory=list)

    def add(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def stage(self, path: Path) -> str:
        """Where the launcher will have bind-mounted ``path`` (a host path bwrap can reach)."""
        if self.stage_dir is None:
            raise ValueError("FdBag without a stage_dir cannot stage paths")
        self.staged.append(Path(os.path.abspath(path)))
        return str(self.stage_dir / str(len(self.staged) - 1))

    def data(self, content: bytes) -> int:
        fd = os.memfd_create("shopfloor-data", os.MFD_CLOEXEC)
        os.write(fd, content)
        os.lseek(fd, 0, os.SEEK_SET)
        return self.add(fd)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        self.staged.clear()


@functools.cache
def _system_args() -> tuple[str, ...]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--dir", "/etc"]
    for name in _ETC:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return tuple(args)


def sandbox_env(confinement: Confinement, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(BASE_ENV)
    if confinement.policy.allows_network:
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        env.update({"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy, "https_proxy": proxy})
    env.update(extra or {})
    return env


def bwrap_argv(
    confinement: Confinement,
    command: list[str],
    fds: FdBag,
    *,
    bwrap: str,
    seccomp_fd: int,
    env: dict[str, str],
    as_pid_1: bool = False,
) -> list[str]:
    c = confinement
    passwd = f"root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:{c.uid}:{c.gid}::/tmp:/bin/sh\n".encode()
    group = f"root:x:0:\nsandbox:x:{c.gid}:\n".encode()
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
        *_system_args(),
        "--ro-bind-data",
        str(fds.data(passwd)),
        "/etc/passwd",
        "--ro-bind-data",
        str(fds.data(group)),
        "/etc/group",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        # /tmp shares the bounded writable area with the workspace (root), else a tmpfs of the same size.
        *(["--size", str(c.policy.disk), "--tmpfs", "/tmp"] if c.area is None else []),
        *(["--bind", fds.stage(c.area.tmp), "/tmp"] if c.area is not None else []),
        "--bind",
        fds.stage(c.workspace_view),
        "/workspace",
    ]
    for mount in c.mounts:
        args += ["--ro-bind" if mount.read_only else "--bind", fds.stage(mount.host_path), mount.sandbox_path]
    args += ["--remount-ro", "/", "--chdir", "/workspace", "--seccomp", str(seccomp_fd), "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    if as_pid_1:
        args.append("--as-pid-1")
    return [*args, "--", *command]

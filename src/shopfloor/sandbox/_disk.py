"""The sandbox's writable area, bounded in total bytes and files: one size-limited tmpfs per sandbox.

RLIMIT_FSIZE bounds one file; this bounds them all. The host (root) mounts a tmpfs with
``size=policy.disk`` and ``nr_inodes=policy.files`` under the sandbox's runtime dir, and an overlay whose
lower layer is the workspace and whose upper layer lives in that tmpfs; the sandbox's ``/workspace`` is the
overlay and its ``/tmp`` a directory of the same tmpfs. Whatever the sandbox writes, creates, deletes or
renames lands in the tmpfs, so one budget covers both, and a write past it fails with ENOSPC inside. When
the sandbox is released the upper layer is applied to the workspace (files copied, whiteouts deleted,
opaque directories emptied first) with ``*at`` calls that never follow a link the sandbox made, and both
mounts are detached. tmpfs pages are memory: what the sandbox writes also counts toward its memory limit.

The overlay is mounted with ``redirect_dir=off,metacopy=off,index=off``, so every change is a whole file
or a whiteout in the upper layer (renaming a workspace directory fails with EXDEV; ``mv`` then copies).
Areas left mounted by a host that died are detached, unapplied, by ``sweep_writable_areas``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shopfloor.errors import SandboxError

__all__ = ["RUNTIME_PREFIX", "WritableArea", "mount_writable_area", "sweep_writable_areas"]

# Runtime dirs are named PREFIX<pid>-<random> so that a sweep can tell whose they are.
RUNTIME_PREFIX = "shopfloor-sandbox-"

_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2
_OPAQUE = "trusted.overlay.opaque"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _mount(source: str, target: Path, fstype: str, options: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    flags = _MS_NOSUID | _MS_NODEV
    if libc.mount(source.encode(), str(target).encode(), fstype.encode(), flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise SandboxError(
            f"mounting the sandbox's {fstype} at {target} failed: {os.strerror(err)}; the bound on what a "
            "sandbox writes needs tmpfs and overlayfs (fix: modprobe overlay)"
        )


def _unmount(target: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(str(target).encode(), _MNT_DETACH)


def _option_path(path: Path) -> str:
    text = str(path)
    if any(c in text for c in ",:\\\n"):
        raise SandboxError(f"the workspace path {text!r} has a character overlayfs options cannot carry")
    return text


@dataclass(frozen=True, kw_only=True)
class WritableArea:
    """The tmpfs (``disk``) and the overlay over the workspace (``merged``) of one sandbox."""

    disk: Path
    merged: Path
    workspace: Path
    uid: int
    gid: int

    @property
    def upper(self) -> Path:
        return self.disk / "upper"

    @property
    def tmp(self) -> Path:
        return self.disk / "tmp"

    def release(self) -> None:
        """Apply the sandbox's changes to the workspace, then detach both mounts (blocking)."""
        try:
            _unmount(self.merged)  # nothing may change the upper layer while it is applied
            _apply(self.upper, self.workspace, (self.uid, self.gid))
        finally:
            _unmount(self.disk)


def mount_writable_area(
    runtime_dir: Path, workspace: Path, *, size: int, files: int, uid: int, gid: int
) -> WritableArea:
    """Mount the bounded tmpfs and the workspace overlay under ``runtime_dir`` (root only; blocking)."""
    area = WritableArea(
        disk=runtime_dir / "disk", merged=runtime_dir / "workspace", workspace=workspace, uid=uid, gid=gid
    )
    area.disk.mkdir(mode=0o700)
    area.merged.mkdir(mode=0o700)
    # 0711: the tenant reaches its tmp/ by path (Landlock mode) but cannot list the area.
    _mount("tmpfs", area.disk, "tmpfs", f"size={size},nr_inodes={files},mode=0711")
    try:
        for directory in (area.upper, area.tmp):
            directory.mkdir(mode=0o700)
            os.chown(directory, uid, gid)
        (area.disk / "work").mkdir(mode=0o700)
        options = (
            f"lowerdir={_option_path(workspace)},upperdir={area.upper},workdir={area.disk / 'work'},"
            "redirect_dir=off,metacopy=off,index=off,xino=off"
        )
        _mount("overlay", area.merged, "overlay", options)
    except BaseException:
        _unmount(area.disk)
        raise
    return area


@contextlib.contextmanager
def _directory(name: str | Path, parent: int | None = None) -> Iterator[int]:
    """An fd of the directory ``name`` (relative to ``parent``), never through a symlink."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        yield fd
    finally:
        os.close(fd)


def _apply(upper: Path, workspace: Path, owner: tuple[int, int]) -> None:
    with _directory(upper) as source, _directory(workspace) as target:
        _apply_dir(source, target, owner)


def _remove(parent: int, name: str) -> None:
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)


def _apply_dir(source: int, target: int, owner: tuple[int, int]) -> None:
    for name in os.listdir(source):
        info = os.stat(name, dir_fd=source, follow_symlinks=False)
        mode = info.st_mode
        if stat.S_ISCHR(mode) and info.st_rdev == 0:  # a whiteout: deleted in the sandbox
            _remove(target, name)
        elif stat.S_ISDIR(mode):
            with _directory(name, source) as child:
                opaque = _xattr(child, _OPAQUE) == b"y"
                try:
                    existing = os.stat(name, dir_fd=target, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    existing = None
                if opaque or (existing is not None and not stat.S_ISDIR(existing)):
                    _remove(target, name)
                    existing = None
                if existing is None:
                    os.mkdir(name, stat.S_IMODE(mode) & 0o777, dir_fd=target)
                    os.chown(name, *owner, dir_fd=target, follow_symlinks=False)
                with _directory(name, target) as inner:
                    _apply_dir(child, inner, owner)
        elif stat.S_ISLNK(mode):
            _remove(target, name)
            os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=target)
            os.chown(name, *owner, dir_fd=target, follow_symlinks=False)
        elif stat.S_ISREG(mode):
            _copy_file(source, target, name, stat.S_IMODE(mode) & 0o777, owner)
        # Anything else (fifos, sockets) is not workspace content.


def _copy_file(source: int, target: int, name: str, mode: int, owner: tuple[int, int]) -> None:
    partial = f".shopfloor-partial-{name}"[:255]
    _remove(target, partial)
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source)
    try:
        dst = os.open(
            partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=target
        )
        try:
            os.fchown(dst, *owner)
            while os.sendfile(dst, src, None, 1 << 24) > 0:
                pass
        finally:
            os.close(dst)
    finally:
        os.close(src)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.stat(name, dir_fd=target, follow_symlinks=False).st_mode):
            shutil.rmtree(name, dir_fd=target)
    os.rename(partial, name, src_dir_fd=target, dst_dir_fd=target)


def _xattr(fd: int, name: str) -> bytes | None:
    try:
        return os.getxattr(fd, name)
    except OSError:
        return None


def sweep_writable_areas(directory: Path) -> list[Path]:
    """Detach the areas a crashed host left mounted under ``directory`` (runtime dirs of dead pids).

    Their changes are discarded: the run they belonged to did not finish. A live process's areas, and
    anything whose pid was reused, are left alone.
    """
    pattern = re.compile(rf"^{re.escape(str(directory))}/{RUNTIME_PREFIX}(\d+)-[^/]+/(disk|workspace)$")
    swept = []
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4].replace("\\040", " ") for line in handle]
    # Deepest first: the overlay before the tmpfs holding its upper layer.
    for point in sorted(points, key=lambda p: p.endswith("/disk")):
        match = pattern.match(point)
        if match is None or os.path.exists(f"/proc/{match.group(1)}"):
            continue
        _unmount(Path(point))
        swept.append(Path(point))
    for runtime in {path.parent for path in swept}:
        shutil.rmtree(runtime, ignore_errors=True)
    return swept

"""What an installed dependency environment holds, recorded once and checked before every use.

After an install the environment is handed back to Shopfloor's own uid, nobody else may write to it,
and ``.shopfloor-lock.json`` records the installed distributions and the sha256 of every file (a
symbolic link by its target). A run checks the environment against that record first, so a file
changed, added or removed after the install is refused, naming it; a file whose stat signature is
unchanged is not read again (see ``_scan``).
"""

from __future__ import annotations

import email.parser
import errno
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shopfloor.errors import SkillDependencyError
from shopfloor.skills._manifest import sha256_file

__all__ = ["LOCK_FILE", "is_locked", "seal", "verify_lock", "write_lock"]

LOCK_FILE = ".shopfloor-lock.json"
_FORMAT = "shopfloor-skill-environment/1"


def _scan(
    directory: Path, recorded: Mapping[str, str] | None = None, stats: Mapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Every entry's content (``sha256:HEX`` or ``symlink:TARGET``) and each file's stat signature.

    A file whose size, mtime, ctime and inode all match ``stats`` keeps its ``recorded`` hash: writing
    to a file, or setting its times back afterwards, changes its ctime, which no user can set. Any
    other file is hashed again.
    """
    entries: dict[str, str] = {}
    signatures: dict[str, str] = {}
    recorded, stats = recorded or {}, stats or {}
    pending = [("", str(directory))]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as listing:
            for entry in listing:
                rel = prefix + entry.name
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    pending.append((rel + "/", entry.path))
                elif stat.S_ISLNK(info.st_mode):
                    entries[rel] = "symlink:" + os.readlink(entry.path)
                elif stat.S_ISREG(info.st_mode):
                    if rel == LOCK_FILE:
                        continue
                    signature = f"{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}:{info.st_ino}"
                    signatures[rel] = signature
                    known = recorded.get(rel)
                    same = known is not None and stats.get(rel) == signature
                    entries[rel] = (
                        known if same and known is not None else "sha256:" + sha256_file(Path(entry.path))
                    )
                else:
                    raise SkillDependencyError(
                        f"{entry.path}: not a regular file, directory or link in an environment"
                    )
    return entries, signatures


def _python_distributions(directory: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for metadata in sorted(directory.glob("lib/python*/site-packages/*.dist-info/METADATA")):
        headers = email.parser.BytesHeaderParser().parsebytes(metadata.read_bytes())
        found[str(headers.get("Name", metadata.parent.name))] = str(headers.get("Version", ""))
    return found


def _node_distributions(directory: Path) -> dict[str, str]:
    lock = directory / "package-lock.json"
    if not lock.is_file():
        return {}
    packages = json.loads(lock.read_text()).get("packages", {})
    return {
        path.removeprefix("node_modules/"): f"{entry.get('version', '')} {entry.get('integrity', '')}".strip()
        for path, entry in sorted(packages.items())
        if path and isinstance(entry, dict)
    }


def _seal_one(path: str, uid: int, gid: int) -> None:
    try:
        # Through a descriptor opened without following links: a name swapped for a symlink meanwhile
        # cannot redirect the chown or chmod to a host file.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise SkillDependencyError(f"{path}: cannot seal the installed environment: {exc}") from exc
        os.lchown(path, uid, gid)  # a symbolic link: its owner only, it has no mode of its own
        return
    try:
        info = os.fstat(fd)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            raise SkillDependencyError(f"{path}: not a regular file, directory or link in an environment")
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
        # No set-uid/set-gid bit survives, nobody else may write, everybody may read.
        readable = 0o755 if stat.S_ISDIR(info.st_mode) else 0o444
        os.fchmod(fd, (info.st_mode & 0o755) | readable)
    finally:
        os.close(fd)


def seal(directory: Path) -> None:
    """Give the environment back to this process's uid and take write access from everyone else."""
    uid, gid = os.geteuid(), os.getegid()
    for parent, dirnames, filenames in os.walk(directory):
        _seal_one(parent, uid, gid)
        for name in filenames:
            _seal_one(os.path.join(parent, name), uid, gid)
        # os.walk lists a symbolic link to a directory among the directories and does not enter it.
        for name in dirnames:
            if os.path.islink(os.path.join(parent, name)):
                _seal_one(os.path.join(parent, name), uid, gid)


def write_lock(directory: Path, requested: list[str]) -> None:
    """Record what is installed in ``directory`` (call after ``seal``)."""
    files, stats = _scan(directory)
    doc: dict[str, Any] = {
        "format": _FORMAT,
        "requested": requested,
        "distributions": _python_distributions(directory) or _node_distributions(directory),
        "files": files,
        "stat": stats,
    }
    lock = directory / LOCK_FILE
    partial = lock.with_name(LOCK_FILE + ".partial")
    partial.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.chmod(partial, 0o444)
    # The lock's presence means "installed": it appears whole or not at all.
    os.rename(partial, lock)


def is_locked(directory: Path) -> bool:
    return (directory / LOCK_FILE).is_file()


def verify_lock(directory: Path) -> None:
    """Refuse an environment that differs from what its lock records, naming what changed."""
    lock = directory / LOCK_FILE
    try:
        doc = json.loads(lock.read_text())
        recorded, stats = (doc["files"], doc["stat"]) if doc.get("format") == _FORMAT else (None, None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SkillDependencyError(
            f"{lock}: unreadable environment lock ({exc}); delete {directory}"
        ) from exc
    if not isinstance(recorded, dict) or not isinstance(stats, dict):
        raise SkillDependencyError(f"{lock}: not a {_FORMAT} lock; delete {directory} to reinstall")
    current, _ = _scan(directory, recorded, stats)
    changes = [f"changed: {p}" for p in sorted(recorded.keys() & current.keys()) if recorded[p] != current[p]]
    changes += [f"added: {p}" for p in sorted(current.keys() - recorded.keys())]
    changes += [f"removed: {p}" for p in sorted(recorded.keys() - current.keys())]
    if changes:
        shown = "; ".join(changes[:10]) + (f"; and {len(changes) - 10} more" if len(changes) > 10 else "")
        raise SkillDependencyError(
            f"dependency environment {directory} changed since it was installed: {shown}; "
            f"delete {directory} to install it again"
        )

"""One uid per tenant: derived from ``settings.sandbox.uid_base`` and a hash of the tenant's name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from shopfloor.errors import SandboxPolicyError

__all__ = ["UID_RANGE", "prepare_workspace", "tenant_uid"]

UID_RANGE = 1 << 16


def tenant_uid(tenant: str, uid_base: int) -> int:
    """A stable uid (= gid) for ``tenant``; distinct tenants collide with probability 1/65536."""
    if not tenant:
        raise SandboxPolicyError("a sandbox needs a tenant name (the uid is derived from it)")
    digest = hashlib.sha256(tenant.encode()).digest()
    return uid_base + int.from_bytes(digest[:4], "big") % UID_RANGE


def prepare_workspace(workspace: Path, uid: int) -> None:
    """Give the workspace to the tenant: owned by its uid, mode 0700 (blocking: run in a thread)."""
    workspace.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    for directory, dirnames, filenames in os.walk(workspace):
        for name in dirnames + filenames:
            # lchown: a symlink planted in the workspace must not hand a host file to the tenant.
            os.lchown(os.path.join(directory, name), uid, uid)
    os.chown(workspace, uid, uid)
    os.chmod(workspace, 0o700)

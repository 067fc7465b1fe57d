"""A running server follows the GitOps policy file (``$SHOPFLOOR_HOME/gitops/policy.json``: roles,
bindings, limits, gateway routes and aliases) without a restart.

Every ``[server] policy_poll_seconds`` the watcher compares the file's inode, modification time and size
with what it last read (the controller replaces the file whole, so a change always shows; the first
check reads it whatever, so a change between the server's start and the watcher's is not missed). A
changed file is read with the configuration as a new process would (``load_settings``: the merge refuses
a name both define, and the merged settings are validated); where the policy it gives differs from the
one served (a file rewritten the same is no change), every part that serves from it (the authoriser,
the runtime's concurrent-run limits, each sub-application's routes and request limits) is built, and
only when all of them were is each swapped in, one assignment apiece. A file that does not load, or a
part that cannot be built, leaves the server on the policy it had; the refusal is logged and audited
(``gitops.policy_rejected``) with the reason, an applied change is audited as ``gitops.policy_reloaded``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from shopfloor.config import Settings
from shopfloor.errors import ShopfloorError
from shopfloor.gateway._mount import PolicySwap
from shopfloor.security import AuditLog

__all__ = ["POLICY_WATCHER", "PolicyWatcher"]

logger = logging.getLogger("shopfloor.gateway")
#: who the audit log names for a policy the server loaded (or refused) by itself
POLICY_WATCHER = "system:policy-watcher"
#: a part of the server: builds its share of the policy in ``settings``
PolicyPart = Callable[[Settings], Awaitable[PolicySwap | None]]

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> _Stamp:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _policy_of(settings: Settings) -> tuple[Any, ...]:
    """What of ``settings`` the GitOps policy sets."""
    security, gateway = settings.security, settings.gateway
    return (security.roles, security.bindings, security.limits, gateway.routes, gateway.aliases)


def _digest(path: Path) -> str | None:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


class PolicyWatcher:
    def __init__(
        self,
        *,
        path: Path,
        load: Callable[[], Settings],
        parts: Sequence[PolicyPart],
        audit: AuditLog,
        interval: float,
        served: Settings,
    ) -> None:
        """``load``: the settings as a new process would read them now (the policy file merged in);
        ``served``: the settings the server was built with."""
        self.path = path
        self._load = load
        self._parts = tuple(parts)
        self._audit = audit
        self.interval = interval
        self._served = _policy_of(served)
        self._seen: _Stamp | bool = False  # (never read: the first check reads the file)

    async def run(self) -> None:
        """Poll until cancelled; a failed check is logged and the next one tries again."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except (ShopfloorError, OSError) as exc:
                logger.warning("GitOps policy check failed: %s", exc)

    async def check(self) -> bool | None:
        """Reload the policy if the file changed: True applied, False refused, None unchanged."""
        stamp = await asyncio.to_thread(_stamp, self.path)
        if stamp == self._seen:
            return None
        self._seen = stamp
        digest = await asyncio.to_thread(_digest, self.path)
        try:
            settings = await asyncio.to_thread(self._load)
        except ShopfloorError as exc:
            await self._refuse(digest, str(exc))
            return False
        policy = _policy_of(settings)
        if policy == self._served:
            return None
        swaps: list[PolicySwap] = []
        try:
            for part in self._parts:
                swap = await part(settings)
                if swap is not None:
                    swaps.append(swap)
        except (ShopfloorError, OSError, ValueError) as exc:
            for built in swaps:
                if built.abandon is not None:
                    await built.abandon()
            await self._refuse(digest, str(exc))
            return False
        for swap in swaps:
            swap.commit()
        self._served = policy
        security, gateway = settings.security, settings.gateway
        details = {
            "path": str(self.path),
            "digest": digest,
            "roles": sorted(security.roles),
            "bindings": len(security.bindings),
            "limits": len(security.limits),
            "routes": sorted(gateway.routes),
            "aliases": sorted(gateway.aliases),
        }
        logger.info("GitOps policy %s applied (%s)", digest, self.path)
        await asyncio.to_thread(
            self._audit.append,
            "gitops.policy_reloaded",
            actor=POLICY_WATCHER,
            resource="gitops/policy",
            details=details,
        )
        return True

    async def _refuse(self, digest: str | None, reason: str) -> None:
        logger.warning("GitOps policy %s refused, the server keeps the policy it has: %s", self.path, reason)
        await asyncio.to_thread(
            self._audit.append,
            "gitops.policy_rejected",
            actor=POLICY_WATCHER,
            outcome="failed",
            resource="gitops/policy",
            details={"path": str(self.path), "digest": digest, "reason": reason},
        )

"""``Workspaces``: every named workspace in one store, with the caches they share and gc."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from shopfloor.workspace._history import Retention, validate_name
from shopfloor.workspace._objects import Commit, Entry, decode_commit, object_key
from shopfloor.workspace._quota import Quota
from shopfloor.workspace._store import ObjectStore, open_store
from shopfloor.workspace._trees import TreeCache, read_verified
from shopfloor.workspace._workspace import Workspace

if TYPE_CHECKING:
    from shopfloor.config import Settings
    from shopfloor.workspace._gc import GcReport

__all__ = ["Workspaces"]


class Workspaces:
    """All workspaces in one store. ``cache_dir`` holds materialisation records and fetched blobs."""

    def __init__(
        self, store: ObjectStore, *, cache_dir: Path | None = None, retention: Retention | None = None
    ) -> None:
        self.store = store
        self.trees = TreeCache(store)
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "shopfloor-workspace-cache"
        self.default_retention = retention or Retention()
        self._commits: OrderedDict[str, Commit] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> Workspaces:
        """The workspaces in the settings' store (or the store at ``url``), with their cache and retention."""
        return cls(
            open_store(url or settings.workspace_url),
            cache_dir=settings.home / "cache" / "workspace",
            retention=Retention(
                keep_last=settings.workspace.keep_last, keep_days=settings.workspace.keep_days
            ),
        )

    def workspace(self, name: str, *, quota: Quota | None = None) -> Workspace:
        """The workspace ``name``; every commit through it is held to ``quota`` (default: none)."""
        return Workspace(self, validate_name(name), quota=quota)

    async def names(self) -> list[str]:
        refs = await asyncio.to_thread(self.store.list_refs, "ws/")
        return sorted({name.split("/")[1] for name in refs})

    async def gc(self, *, grace: float = 3600.0, now: float | None = None) -> GcReport:
        """Apply every workspace's retention and delete objects nothing kept refers to.

        Objects younger than ``grace`` seconds are spared: a writer may have stored them
        and not yet moved its ref.
        """
        from shopfloor.workspace._gc import collect

        return await asyncio.to_thread(collect, self, grace=grace, now=time.time() if now is None else now)

    def close(self) -> None:
        self.store.close()

    def forget_cached(self) -> None:
        """Drop cached commits and trees (after gc deleted some)."""
        with self._lock:
            self._commits.clear()
        self.trees.clear()

    # shared blocking helpers ------------------------------------------------------------

    def commit_sync(self, commit_id: str) -> Commit:
        with self._lock:
            hit = self._commits.get(commit_id)
        if hit is not None:
            return hit
        commit = decode_commit(read_verified(self.store, object_key("commits", commit_id)), commit_id)
        with self._lock:
            self._commits[commit_id] = commit
            while len(self._commits) > 4096:
                self._commits.popitem(last=False)
        return commit

    def entries_sync(self, commit_id: str | None) -> dict[str, Entry]:
        return {} if commit_id is None else self.trees.load(self.commit_sync(commit_id).tree)

    def blob_sync(self, blob_id: str) -> bytes:
        return read_verified(self.store, object_key("blobs", blob_id))

"""Retention and garbage collection over every workspace of a store.

Mark: for each workspace, walk back from every ref through the commits its retention
keeps (the last N, or those newer than an age) and add pinned commits; keep their
trees, the delta bases those trees are stored against, and every blob they name.
Sweep: delete each object nothing kept refers to, unless it is younger than the grace
period (a writer may have stored it and not yet moved its ref).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shopfloor.errors import WorkspaceNotFoundError
from shopfloor.workspace._history import Retention
from shopfloor.workspace._materialize import prune_records
from shopfloor.workspace._objects import Commit

if TYPE_CHECKING:
    from shopfloor.workspace._repo import Workspaces

__all__ = ["GcReport", "collect"]


@dataclass(frozen=True, kw_only=True)
class GcReport:
    kept_commits: int
    deleted_commits: int
    deleted_trees: int
    deleted_blobs: int
    deleted_bytes: int
    #: temporary files of killed writers and records of materialised directories that are gone
    leftovers: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kept_commits": self.kept_commits,
            "deleted_commits": self.deleted_commits,
            "deleted_trees": self.deleted_trees,
            "deleted_blobs": self.deleted_blobs,
            "deleted_bytes": self.deleted_bytes,
            "leftovers": self.leftovers,
        }


def _kept_history(repo: Workspaces, head: str, retention: Retention, now: float) -> list[Commit]:
    kept: list[Commit] = []
    current: str | None = head
    while current is not None:
        try:
            commit = repo.commit_sync(current)
        except WorkspaceNotFoundError:
            break
        keep_all = retention.keep_last is None and retention.keep_days is None
        by_count = retention.keep_last is not None and len(kept) < retention.keep_last
        by_age = retention.keep_days is not None and commit.time >= now - retention.keep_days * 86400
        if not (keep_all or by_count or by_age or not kept):  # the head itself is always kept
            break
        kept.append(commit)
        current = commit.parents[0] if commit.parents else None
    return kept


def collect(repo: Workspaces, *, grace: float, now: float) -> GcReport:
    store = repo.store
    refs = store.list_refs("ws/")
    commits: dict[str, Commit] = {}
    for name in sorted({key.split("/")[1] for key in refs}):
        ws = repo.workspace(name)
        retention = ws.retention_sync()
        for key, value in refs.items():
            parts = key.split("/")
            if parts[1] != name:
                continue
            if parts[2] == "heads":
                commits.update((c.id, c) for c in _kept_history(repo, value, retention, now))
            elif parts[2] == "pins":
                try:
                    commits[parts[3]] = repo.commit_sync(parts[3])
                except WorkspaceNotFoundError:
                    continue
    trees: set[str] = set()
    blobs: set[str] = set()
    for commit in commits.values():
        current: str | None = commit.tree
        while current is not None and current not in trees:
            trees.add(current)
            current = repo.trees.raw(current).base
        blobs.update(e.blob for e in repo.trees.load(commit.tree).values() if e.kind == "file")
    live = {"commits": set(commits), "trees": trees, "blobs": blobs}
    cutoff = now - grace
    doomed: dict[str, list[str]] = {"commits": [], "trees": [], "blobs": []}
    freed = 0
    for kind, keep in live.items():
        for obj in store.list(f"{kind}/"):
            if obj.key.partition("/")[2] not in keep and obj.mtime < cutoff:
                doomed[kind].append(obj.key)
                freed += obj.size
    # Commits first, blobs last: a reader that races gc then fails on a missing commit
    # (history ends) rather than on a commit whose files are gone.
    counts = {kind: store.delete(doomed[kind]) for kind in ("commits", "trees", "blobs")}
    repo.forget_cached()
    return GcReport(
        kept_commits=len(commits),
        deleted_commits=counts["commits"],
        deleted_trees=counts["trees"],
        deleted_blobs=counts["blobs"],
        deleted_bytes=freed,
        leftovers=store.collect_garbage(cutoff) + prune_records(repo.cache_dir),
    )

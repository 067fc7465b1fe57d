"""One named workspace: refs, history (log, diff, restore), views, pins and retention.

Every public method is async and runs its blocking store calls in a worker thread;
the ``_sync`` helpers are what those threads run.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from shopfloor.errors import WorkspaceConflictError, WorkspaceNotFoundError
from shopfloor.workspace._history import Change, Retention, compute_diff, text_diff, validate_name
from shopfloor.workspace._objects import Commit, Entry, encode_commit, object_key, sha256
from shopfloor.workspace._quota import Quota, Usage

if TYPE_CHECKING:
    from shopfloor.workspace._mounts import MountSource
    from shopfloor.workspace._repo import Workspaces
    from shopfloor.workspace._view import WorkspaceView

__all__ = ["Workspace"]

_HEX = re.compile(r"^[0-9a-f]{4,64}\Z")
_BACK = re.compile(r"^(.+?)~(\d+)\Z")


class Workspace:
    """One named workspace: refs (``main`` and named refs), history, views, pins and retention.

    ``quota`` bounds every commit made through this handle (see ``_quota.py``).
    """

    def __init__(self, repo: Workspaces, name: str, *, quota: Quota | None = None) -> None:
        self.repo = repo
        self.name = name
        self.store = repo.store
        self.quota = quota or Quota()

    def ref_key(self, ref: str) -> str:
        return f"ws/{self.name}/heads/{validate_name(ref, 'ref')}"

    # refs and lookup ---------------------------------------------------------------------

    def head_sync(self, ref: str = "main") -> str | None:
        value = self.store.get_ref(self.ref_key(ref))
        return None if value is None else value.value

    async def head(self, ref: str = "main") -> str | None:
        """The commit ``ref`` points at, or None while the workspace has no commit."""
        return await asyncio.to_thread(self.head_sync, ref)

    async def exists(self) -> bool:
        return bool(await self.refs())

    async def refs(self) -> dict[str, str]:
        prefix = f"ws/{self.name}/heads/"
        refs = await asyncio.to_thread(self.store.list_refs, prefix)
        return {name[len(prefix) :]: value for name, value in refs.items()}

    async def set_ref(self, ref: str, rev: str, *, expected: str | None = None, create: bool = False) -> str:
        """Point ``ref`` at ``rev``; with ``create`` the ref must not exist, else it must hold ``expected``
        (when given). A branch is created with ``set_ref("experiment", "main", create=True)``."""

        def run() -> str:
            target = self.resolve_sync(rev)
            current = self.store.get_ref(self.ref_key(ref))
            if create and current is not None:
                raise WorkspaceConflictError(f"ref {ref} of workspace {self.name} already exists")
            if expected is not None and (current is None or current.value != expected):
                raise WorkspaceConflictError(f"ref {ref} of workspace {self.name} moved meanwhile; retry")
            self.store.set_ref(self.ref_key(ref), target, expected=current)
            return target

        return await asyncio.to_thread(run)

    async def delete_ref(self, ref: str) -> None:
        await asyncio.to_thread(self.store.delete_ref, self.ref_key(ref))

    def resolve_sync(self, rev: str) -> str:
        back = _BACK.match(rev)
        if back:
            commit_id = self.resolve_sync(back.group(1))
            for _ in range(int(back.group(2))):
                parents = self.repo.commit_sync(commit_id).parents
                if not parents:
                    raise WorkspaceNotFoundError(f"{rev}: history of workspace {self.name} is shorter")
                commit_id = parents[0]
            return commit_id
        if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z", rev):
            value = self.store.get_ref(self.ref_key(rev))
            if value is not None:
                return value.value
        if _HEX.match(rev):
            if len(rev) == 64:
                if self.store.exists(object_key("commits", rev)):
                    return rev
            else:
                found = [o.key.partition("/")[2] for o in self.store.list(f"commits/{rev}")]
                if len(found) == 1:
                    return found[0]
                if len(found) > 1:
                    raise WorkspaceNotFoundError(
                        f"commit prefix {rev} is ambiguous ({len(found)} commits); give more"
                    )
        raise WorkspaceNotFoundError(f"workspace {self.name} has no ref or commit {rev!r}")

    async def resolve(self, rev: str) -> str:
        """A ref name, a full or unique abbreviated commit id, optionally with ``~N`` (N parents back)."""
        return await asyncio.to_thread(self.resolve_sync, rev)

    async def commit_info(self, rev: str) -> Commit:
        return await asyncio.to_thread(lambda: self.repo.commit_sync(self.resolve_sync(rev)))

    async def log(self, ref: str = "main", *, limit: int | None = None) -> list[Commit]:
        """Commits from ``ref`` back to the first one kept by retention, newest first."""

        def run() -> list[Commit]:
            commits: list[Commit] = []
            try:
                current: str | None = self.resolve_sync(ref)
            except WorkspaceNotFoundError:
                if ref == "main":
                    return []  # a workspace with no commit yet has an empty history
                raise
            while current is not None and (limit is None or len(commits) < limit):
                try:
                    commit = self.repo.commit_sync(current)
                except WorkspaceNotFoundError:
                    break  # older history was removed by retention
                commits.append(commit)
                current = commit.parents[0] if commit.parents else None
            return commits

        return await asyncio.to_thread(run)

    async def files(self, rev: str = "main") -> dict[str, Entry]:
        """Every path of the workspace at ``rev`` (a copy)."""
        return await asyncio.to_thread(lambda: dict(self.repo.entries_sync(self.resolve_sync(rev))))

    async def read(self, rev: str, path: str) -> bytes:
        view = await self.checkout(rev)
        return await view.read(path)

    async def diff(self, a: str, b: str) -> list[Change]:
        """Paths added, changed and deleted from ``a`` to ``b``."""

        def run() -> list[Change]:
            return compute_diff(
                self.repo.entries_sync(self.resolve_sync(a)), self.repo.entries_sync(self.resolve_sync(b))
            )

        return await asyncio.to_thread(run)

    async def text_diff(self, a: str, b: str, *, context: int = 3) -> str:
        """A unified diff of every changed file from ``a`` to ``b``."""
        changes = await self.diff(a, b)

        def run() -> str:
            parts = []
            for change in changes:
                if "dir" in (change.old.kind if change.old else "", change.new.kind if change.new else ""):
                    continue
                old = self.repo.blob_sync(change.old.blob) if change.old else None
                new = self.repo.blob_sync(change.new.blob) if change.new else None
                parts.append(text_diff(change.path, old, new, context=context))
            return "".join(parts)

        return await asyncio.to_thread(run)

    # views ----------------------------------------------------------------------------------

    async def checkout(
        self, rev: str = "main", *, mounts: Mapping[str, MountSource] | None = None
    ) -> WorkspaceView:
        """A read-only view of the workspace at ``rev``."""
        from shopfloor.workspace._view import WorkspaceView

        commit_id = await self.resolve(rev)
        entries = await asyncio.to_thread(self.repo.entries_sync, commit_id)
        return WorkspaceView(self, base=commit_id, entries=entries, ref=None, read_only=True, mounts=mounts)

    async def open(
        self,
        ref: str = "main",
        *,
        mounts: Mapping[str, MountSource] | None = None,
        read_only: bool = False,
    ) -> WorkspaceView:
        """A working view over the head of ``ref`` (empty for a new workspace) that commits to ``ref``."""
        from shopfloor.workspace._view import WorkspaceView

        def run() -> tuple[str | None, dict[str, Entry]]:
            head = self.head_sync(ref)
            return head, self.repo.entries_sync(head)

        head, entries = await asyncio.to_thread(run)
        return WorkspaceView(self, base=head, entries=entries, ref=ref, read_only=read_only, mounts=mounts)

    async def restore(
        self, rev: str, *, ref: str = "main", message: str | None = None, identity: str | None = None
    ) -> str:
        """Make a new commit on ``ref`` whose files are those of ``rev``: a rollback that keeps history."""

        def run() -> str:
            target = self.resolve_sync(rev)
            head = self.head_sync(ref)
            old = self.repo.entries_sync(head)
            new = self.repo.entries_sync(target)
            changes = compute_diff(old, new)
            return self.commit_entries_sync(
                ref=ref,
                expected_head=head,
                entries=new,
                changed=[c.path for c in changes if c.new is not None],
                deleted=[c.path for c in changes if c.new is None],
                message=message or f"restore {target[:12]}",
                identity=identity,
                extra={"restored_from": target},
            )

        return await asyncio.to_thread(run)

    # the commit path ------------------------------------------------------------------------

    def commit_entries_sync(
        self,
        *,
        ref: str,
        expected_head: str | None,
        entries: Mapping[str, Entry],
        changed: Iterable[str],
        deleted: Iterable[str],
        message: str = "",
        run_id: str | None = None,
        step: int | None = None,
        identity: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> str:
        """Check the quota, write the tree and commit, then move ``ref`` from ``expected_head`` by
        compare-and-swap. Every commit of a workspace goes through here.

        Objects go first and the ref last, so a crash at any point leaves the ref on a
        complete commit; objects of a lost race stay unreferenced until gc.
        """
        key = self.ref_key(ref)
        changed = set(changed)
        self.check_quota(entries, base=expected_head, changed=changed)
        base_tree = self.repo.commit_sync(expected_head).tree if expected_head else None
        tree_id, tree_data = self.repo.trees.prepare(
            entries, base=base_tree, changed=changed, deleted=deleted
        )
        commit = Commit(
            tree=tree_id,
            parents=(expected_head,) if expected_head else (),
            workspace=self.name,
            message=message,
            time=time.time(),
            run_id=run_id,
            step=step,
            identity=identity,
            extra=extra or {},
        )
        data = encode_commit(commit)
        commit_id = sha256(data)
        self.store.put_many(
            [(object_key("trees", tree_id), tree_data), (object_key("commits", commit_id), data)]
        )
        current = self.store.get_ref(key)
        if (current.value if current else None) != expected_head:
            raise WorkspaceConflictError(
                f"workspace {self.name} ref {ref} moved from {str(expected_head)[:12]} to "
                f"{current.value[:12] if current else 'nothing'} meanwhile; rebase the view and commit again"
            )
        self.store.set_ref(key, commit_id, expected=current)
        return commit_id

    def check_quota(
        self,
        entries: Mapping[str, Entry],
        *,
        base: str | None,
        changed: Iterable[str],
        note: Mapping[str, str] | None = None,
    ) -> None:
        """Refuse the state ``entries`` (reached from commit ``base`` by writing ``changed``) where it
        breaks the quota; ``note`` adds a remark to a path in the message."""
        if self.quota.unlimited:
            return
        written = [
            (p, e.size) for p in sorted(changed) if (e := entries.get(p)) is not None and e.kind == "file"
        ]
        new = Usage.of(entries)
        # The base is only read when the new state is over a total: a state already over a lowered limit
        # may still shrink.
        over = (self.quota.max_bytes is not None and new.bytes > self.quota.max_bytes) or (
            self.quota.max_files is not None and new.files > self.quota.max_files
        )
        old = Usage.of(self.repo.entries_sync(base)) if over and base is not None else None
        self.quota.check(self.name, new=new, old=old, written=written, note=note)

    # retention and pins ------------------------------------------------------------------------

    async def pin(self, rev: str, *, reason: str = "") -> str:
        """Keep ``rev`` through gc whatever the retention (a release or an evaluation refers to it)."""

        def run() -> str:
            commit_id = self.resolve_sync(rev)
            key = f"ws/{self.name}/pins/{commit_id}"
            self.store.set_ref(key, reason or "pinned", expected=self.store.get_ref(key))
            return commit_id

        return await asyncio.to_thread(run)

    async def unpin(self, rev: str) -> None:
        commit_id = await self.resolve(rev)
        await asyncio.to_thread(self.store.delete_ref, f"ws/{self.name}/pins/{commit_id}")

    async def pins(self) -> dict[str, str]:
        prefix = f"ws/{self.name}/pins/"
        refs = await asyncio.to_thread(self.store.list_refs, prefix)
        return {name[len(prefix) :]: reason for name, reason in refs.items()}

    def retention_sync(self) -> Retention:
        value = self.store.get_ref(f"ws/{self.name}/config")
        if value is None:
            return self.repo.default_retention
        body = json.loads(value.value)
        return Retention(keep_last=body.get("keep_last"), keep_days=body.get("keep_days"))

    async def retention(self) -> Retention:
        return await asyncio.to_thread(self.retention_sync)

    async def set_retention(self, retention: Retention) -> None:
        key = f"ws/{self.name}/config"
        data = json.dumps(retention.to_json())
        await asyncio.to_thread(lambda: self.store.set_ref(key, data, expected=self.store.get_ref(key)))

    # materialising -------------------------------------------------------------------------------

    async def materialize(self, rev: str, directory: Path | str, *, read_only: bool = False) -> Path:
        """Write the files of ``rev`` into ``directory``; see ``_materialize.py`` for the cost and safety."""
        from shopfloor.workspace._materialize import materialize_sync

        commit_id = await self.resolve(rev)
        return await asyncio.to_thread(
            materialize_sync, self, commit_id, Path(directory), read_only=read_only
        )

    async def release(self, directory: Path | str) -> bool:
        """Forget what was materialised in ``directory`` (after deleting it); gc also prunes these."""
        from shopfloor.workspace._materialize import release_sync

        return await asyncio.to_thread(release_sync, self, Path(directory))

    async def capture(
        self,
        directory: Path | str,
        *,
        ref: str = "main",
        base: str | None = None,
        message: str = "",
        run_id: str | None = None,
        step: int | None = None,
        identity: str | None = None,
    ) -> str:
        """Commit what changed in a materialised ``directory`` to ``ref``; returns the new commit id.

        Sizes are checked against the quota before any file is read; files are streamed."""
        from shopfloor.workspace._capture import capture_sync

        return await asyncio.to_thread(
            capture_sync,
            self,
            Path(directory),
            ref=ref,
            base=base,
            message=message,
            run_id=run_id,
            step=step,
            identity=identity,
        )

"""Workspace quotas: the limits and the one check every change of a workspace goes through.

A quota is part of a ``Workspace`` handle (``Workspaces.workspace(name, quota=...)``), so
every commit made through that handle is checked in ``Workspace.commit_entries_sync``,
whatever made the change: a file tool's write, a skill's captured output, a restore.
The writes of a view and a capture check the same limits earlier, from sizes alone,
so that an oversized file is refused before a byte of it is read or stored.

A state may stay over a limit that was lowered after it was committed: only a change
that makes the total larger is refused, so deleting files out of it always works.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shopfloor.errors import WorkspaceQuotaError
from shopfloor.workspace._objects import Entry

if TYPE_CHECKING:
    from shopfloor.spec import WorkspaceSpec

__all__ = ["Quota", "Usage"]


@dataclass(frozen=True, kw_only=True)
class Usage:
    """The bytes and files of one state of a workspace."""

    bytes: int
    files: int

    @classmethod
    def of(cls, entries: Mapping[str, Entry]) -> Usage:
        sizes = [e.size for e in entries.values() if e.kind == "file"]
        return cls(bytes=sum(sizes), files=len(sizes))


@dataclass(frozen=True, kw_only=True)
class Quota:
    """Limits on a workspace; None means unlimited."""

    max_bytes: int | None = None
    max_files: int | None = None
    max_file_bytes: int | None = None

    @classmethod
    def from_spec(cls, spec: WorkspaceSpec) -> Quota:
        """The limits an agent spec's ``workspace:`` section declares."""
        return cls(max_bytes=spec.max_bytes, max_files=spec.max_files, max_file_bytes=spec.max_file_bytes)

    @property
    def unlimited(self) -> bool:
        return self.max_bytes is None and self.max_files is None and self.max_file_bytes is None

    def check(
        self,
        workspace: str,
        *,
        new: Usage,
        old: Usage | None,
        written: Iterable[tuple[str, int]],
        note: Mapping[str, str] | None = None,
    ) -> None:
        """Refuse a change from ``old`` to ``new`` that breaks a limit; ``written`` are the files it
        writes, with their sizes (``note`` adds a remark to a file's name in the message)."""
        if self.unlimited:
            return
        sizes = list(written)
        extra = note or {}
        if self.max_file_bytes is not None:
            for path, size in sizes:
                if size > self.max_file_bytes:
                    raise WorkspaceQuotaError(
                        f"{path!r}{extra.get(path, '')} is {size} bytes, over the file size limit of "
                        f"{self.max_file_bytes} of workspace {workspace}; nothing was committed "
                        "(write smaller files or raise workspace.max_file_bytes)"
                    )
        largest = max(sizes, key=lambda item: item[1], default=None)
        because = (
            f" (largest file written: {largest[0]!r}{extra.get(largest[0], '')}, {largest[1]} bytes)"
            if largest is not None
            else ""
        )
        if (
            self.max_bytes is not None
            and new.bytes > self.max_bytes
            and (old is None or new.bytes > old.bytes)
        ):
            raise WorkspaceQuotaError(
                f"workspace {workspace} would hold {new.bytes} bytes, over its limit of {self.max_bytes}"
                f"{because}; nothing was committed (delete files or raise workspace.max_bytes)"
            )
        if (
            self.max_files is not None
            and new.files > self.max_files
            and (old is None or new.files > old.files)
        ):
            raise WorkspaceQuotaError(
                f"workspace {workspace} would hold {new.files} files, over its limit of {self.max_files}; "
                "nothing was committed (delete files or raise workspace.max_files)"
            )

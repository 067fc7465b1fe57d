"""Collections built from a workspace: the files of workspace ``WS`` at ``REF`` (a branch, tag or commit;
``main`` when not given), or only those under the given paths inside it, read from the workspace's object
store, never from the host. A file's document id is its path in the workspace, and its blob id is its
sha256, so an unchanged document is known without reading it. The ingest records the commit the ref
resolved to (``_ingests.py``): the index is versioned with the commit it was built from.

The workspace is lent by the caller (the command line, the runtime): the ``workspace`` layer sits beside
this one, and only its ``Workspace`` handle's blocking ``resolve_sync`` and ``repo.entries_sync`` /
``repo.blob_sync`` are used.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from shopfloor.connectors.docs._index import DocIndex, IngestReport, SourceFile
from shopfloor.connectors.docs._ingests import IngestRecord, IngestSource
from shopfloor.connectors.docs._sources import excluded
from shopfloor.errors import ConfigError, ConnectorError, WorkspaceError
from shopfloor.spec import WORKSPACE_REF

if TYPE_CHECKING:
    from shopfloor.workspace import Workspace

__all__ = ["WorkspaceSource", "ingest_workspace", "workspace_files", "workspace_path"]

_WORKSPACE_REF = re.compile(WORKSPACE_REF)


def workspace_path(path: str, workspace: str) -> str:
    """``path`` as a normalised path inside the workspace (``""``: all of it); one that is absolute,
    holds ``..`` or a NUL, or is over-long is refused, not repaired."""
    if "\x00" in path or len(path) > 4096:
        raise ConnectorError(f"path {path[:80]!r} in workspace {workspace}: a NUL or over 4096 characters")
    if path.startswith("/") or ".." in path.split("/"):
        raise ConnectorError(
            f"path {path[:200]!r} escapes workspace {workspace}: give a path relative to its root, "
            "without '..' (e.g. 'docs/guide')"
        )
    return "/".join(part for part in path.split("/") if part not in ("", "."))


@dataclass(frozen=True, kw_only=True)
class WorkspaceSource:
    """``workspace`` at ``ref``, only the files under ``paths`` (all of them when empty)."""

    workspace: str
    ref: str = "main"
    paths: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, paths: Sequence[str] = ()) -> WorkspaceSource:
        """From ``WS[@REF]`` and paths inside the workspace."""
        if not _WORKSPACE_REF.fullmatch(text):
            raise ConfigError(
                f"workspace {text[:80]!r}: write WORKSPACE or WORKSPACE@REF (a branch, tag or commit), "
                "letters, digits, '.', '_' and '-'"
            )
        name, _, ref = text.partition("@")
        return cls(workspace=name, ref=ref or "main", paths=tuple(workspace_path(p, name) for p in paths))

    def ingest_source(self, commit: str) -> IngestSource:
        return IngestSource(
            kind="workspace", paths=self.paths, workspace=self.workspace, ref=self.ref, commit=commit
        )


def workspace_files(
    workspace: Workspace, source: WorkspaceSource, *, exclude: Sequence[str] = ()
) -> tuple[str, list[SourceFile]]:
    """The commit ``source.ref`` resolves to, and the files of ``source`` there (blocking). A ref that
    does not resolve, or a path the commit has neither as file nor as directory, is an error before
    anything is read."""
    try:
        commit = workspace.resolve_sync(source.ref)
        entries = workspace.repo.entries_sync(commit)
    except WorkspaceError as exc:
        raise ConnectorError(f"workspace {source.workspace}@{source.ref}: {exc}") from None
    files = sorted((path, entry) for path, entry in entries.items() if entry.kind == "file")
    chosen: dict[str, SourceFile] = {}
    for wanted in source.paths or ("",):
        under = [
            (path, entry)
            for path, entry in files
            if not wanted or path == wanted or path.startswith(wanted + "/")
        ]
        if wanted and not under:
            raise ConnectorError(
                f"workspace {source.workspace}@{source.ref} (commit {commit[:12]}) has no file or "
                f"directory {wanted!r}"
            )
        for path, entry in under:
            relative = path[len(wanted) + 1 :] if wanted and path != wanted else PurePosixPath(path).name
            if exclude and excluded(relative if wanted else path, exclude):
                continue
            read: Callable[[], bytes] = functools.partial(workspace.repo.blob_sync, entry.blob)
            chosen[path] = SourceFile(
                source=path, name=PurePosixPath(path).name, size=entry.size, digest=entry.blob, read=read
            )
    return commit, list(chosen.values())


def ingest_workspace(
    index: DocIndex,
    workspace: Workspace,
    source: WorkspaceSource,
    *,
    exclude: Sequence[str] = (),
    progress: Callable[[IngestReport], None] | None = None,
) -> tuple[IngestReport, IngestRecord]:
    """Ingest ``source`` into ``index`` (blocking, incremental by digest), then remove the documents the
    selection no longer has (a file deleted at the new commit), then record the ingest with the commit.
    A file that fails (binary, too large, broken) is reported and skipped, and its earlier version kept."""
    commit, files = workspace_files(workspace, source, exclude=exclude)
    report = index.add_files(files, progress=progress)
    report.removed = index.remove_except(report.seen)
    return report, index.record(source.ingest_source(commit), [report])

"""Versioned, content-addressed workspaces: a file system per agent on local disk, SQLite or S3.

``open_store(url)`` opens a backend; ``Workspaces(store)`` holds every named workspace
in it; ``Workspace.open()`` gives a working view with the file operations and
``commit``; ``checkout``, ``log``, ``diff``, ``restore``, retention and ``gc`` manage
history; ``materialize``/``capture`` move a commit to and from a real directory.
"""

from shopfloor.workspace._gc import GcReport
from shopfloor.workspace._history import (
    Address,
    Change,
    FileInfo,
    GrepMatch,
    Retention,
    parse_address,
    text_diff,
)
from shopfloor.workspace._linear import LinearPattern, compile_linear
from shopfloor.workspace._mounts import LocalDirMount, MountSource, S3Mount, mount_sources, open_mount
from shopfloor.workspace._objects import Commit, Entry
from shopfloor.workspace._quota import Quota
from shopfloor.workspace._repo import Workspaces
from shopfloor.workspace._sql import SqlStore
from shopfloor.workspace._store import (
    ObjectStore,
    Readable,
    RefValue,
    StoredObject,
    open_store,
    store_backends,
    store_schemes,
)
from shopfloor.workspace._tools import WorkspaceTool, workspace_tools
from shopfloor.workspace._view import WorkspaceView
from shopfloor.workspace._workspace import Workspace

__all__ = [
    "Address",
    "Change",
    "Commit",
    "Entry",
    "FileInfo",
    "GcReport",
    "GrepMatch",
    "LinearPattern",
    "LocalDirMount",
    "MountSource",
    "ObjectStore",
    "Quota",
    "Readable",
    "RefValue",
    "Retention",
    "S3Mount",
    "SqlStore",
    "StoredObject",
    "Workspace",
    "WorkspaceTool",
    "WorkspaceView",
    "Workspaces",
    "compile_linear",
    "mount_sources",
    "open_mount",
    "open_store",
    "parse_address",
    "store_backends",
    "store_schemes",
    "text_diff",
    "workspace_tools",
]

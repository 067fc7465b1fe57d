"""Path safety: every path an agent or a caller gives is checked here, once.

Workspace paths are relative, ``/``-separated, normalised strings (``notes/a.txt``);
the root is the empty string. ``..``, absolute paths, NUL bytes and over-long names
are refused rather than repaired, so a caller never writes somewhere it did not mean.
"""

from __future__ import annotations

import re
from functools import lru_cache

from shopfloor.errors import WorkspacePathError
from shopfloor.workspace._linear import LinearPattern, compile_linear

__all__ = ["MAX_NAME_BYTES", "MAX_PATH_BYTES", "glob_regex", "is_under", "normalize", "parent_dirs"]

#: the limits of common Linux file systems, so that any workspace can be materialised
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def normalize(path: str, *, allow_root: bool = True) -> str:
    """Return the canonical form of ``path`` or raise WorkspacePathError saying why it is refused."""
    if not isinstance(path, str):
        raise WorkspacePathError(f"path must be a string, got {type(path).__name__}")
    if "\x00" in path:
        raise WorkspacePathError(f"path {path!r} contains a NUL byte")
    if path.startswith("/"):
        raise WorkspacePathError(
            f"path {path!r} is absolute; use a path relative to the workspace root, such as 'notes/a.txt'"
        )
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise WorkspacePathError(f"path of {len(path)} characters is longer than {MAX_PATH_BYTES} bytes")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise WorkspacePathError(f"path {path!r} contains '..'; paths may not leave the workspace")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise WorkspacePathError(
                f"name {part[:40]!r}... in {path[:80]!r} is longer than {MAX_NAME_BYTES} bytes"
            )
        parts.append(part)
    result = "/".join(parts)
    if not result and not allow_root:
        raise WorkspacePathError("a file path is required here, not the workspace root")
    return result


def is_under(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` itself or inside it (both normalised)."""
    return not directory or path == directory or path.startswith(directory + "/")


def parent_dirs(path: str) -> list[str]:
    """The directories that contain ``path``, outermost first, excluding the root."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> LinearPattern:
    """Compile a glob: ``*`` and ``?`` match within a name, ``**`` across directories, ``[...]`` a class.

    The translation is a regex without backreferences, matched by RE2 in linear time (``fullmatch``):
    ``*a*a*a*a*a*a*a*a*b`` over a long name would backtrack for minutes in ``re``.
    """
    pattern = normalize(pattern)
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(char))
                i += 1
                continue
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return compile_linear("".join(out), what="glob")

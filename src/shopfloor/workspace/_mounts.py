"""Read-only mounts of outside data (a host directory or an S3 prefix) into workspace views.

A mount appears at ``/workspace/<path>`` in every view it is given to; it is never
committed and never writable. Paths inside a host-directory mount are resolved and
must stay inside the directory, so a symlink in a data lake cannot expose the host.
"""

from __future__ import annotations

import os
import stat as stat_mod
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from shopfloor.errors import ConfigError, WorkspaceNotFoundError, WorkspacePathError
from shopfloor.workspace._history import FileInfo
from shopfloor.workspace._paths import normalize

if TYPE_CHECKING:
    from shopfloor.spec import Mount

__all__ = ["LocalDirMount", "MountSource", "S3Mount", "mount_sources", "open_mount"]


class MountSource(ABC):
    """Read-only outside data. ``rel`` paths are normalised and relative to the mount point."""

    source: str

    @abstractmethod
    def stat(self, rel: str) -> FileInfo | None: ...

    @abstractmethod
    def list_dir(self, rel: str) -> list[FileInfo]: ...

    @abstractmethod
    def read(self, rel: str) -> bytes: ...

    @abstractmethod
    def walk(self) -> Iterator[FileInfo]:
        """Every file, with paths relative to the mount point."""


class LocalDirMount(MountSource):
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.source = str(root)
        if not self.root.is_dir():
            raise ConfigError(f"mount source {root} is not a directory")

    def _resolve(self, rel: str) -> Path:
        real = os.path.realpath(self.root / rel)
        if real != str(self.root) and not real.startswith(str(self.root) + os.sep):
            raise WorkspacePathError(
                f"{rel!r} in mount {self.source} is a link that points outside the mount"
            )
        return Path(real)

    def _info(self, rel: str, st: os.stat_result) -> FileInfo:
        kind: Literal["file", "dir"] = "dir" if stat_mod.S_ISDIR(st.st_mode) else "file"
        return FileInfo(
            path=rel,
            kind=kind,
            size=0 if kind == "dir" else st.st_size,
            mount=self.source,
            executable=bool(st.st_mode & 0o100) and kind == "file",
        )

    def stat(self, rel: str) -> FileInfo | None:
        try:
            return self._info(rel, os.stat(self._resolve(rel)))
        except FileNotFoundError:
            return None

    def list_dir(self, rel: str) -> list[FileInfo]:
        path = self._resolve(rel)
        if not path.is_dir():
            raise WorkspaceNotFoundError(f"{rel or '.'} is not a directory in mount {self.source}")
        infos = []
        with os.scandir(path) as listing:
            items = list(listing)
        for item in items:
            child = f"{rel}/{item.name}" if rel else item.name
            try:
                infos.append(self._info(child, os.stat(self._resolve(child))))
            except (WorkspacePathError, FileNotFoundError):
                continue  # dangling or escaping links are not shown
        return infos

    def read(self, rel: str) -> bytes:
        path = self._resolve(rel)
        if not path.is_file():
            raise WorkspaceNotFoundError(f"{rel} is not a file in mount {self.source}")
        return path.read_bytes()

    def walk(self) -> Iterator[FileInfo]:
        for dirpath, dirs, files in os.walk(self.root):
            base = os.path.relpath(dirpath, self.root)
            dirs.sort()
            for name in sorted(files):
                rel = name if base == "." else f"{base}/{name}"
                info = self.stat(rel) if _inside(self, rel) else None
                if info is not None and info.kind == "file":
                    yield info


def _inside(mount: LocalDirMount, rel: str) -> bool:
    try:
        mount._resolve(rel)
    except WorkspacePathError:
        return False
    return True


class S3Mount(MountSource):
    """``s3://bucket/prefix?endpoint_url=...``: objects under the prefix, ``/`` as the separator."""

    def __init__(self, url: str) -> None:
        import boto3

        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        self.source = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        self.client: Any = boto3.client(
            "s3", endpoint_url=options.get("endpoint_url"), region_name=options.get("region")
        )

    def _pages(self, prefix: str, delimiter: str | None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        yield from self.client.get_paginator("list_objects_v2").paginate(**kwargs)

    def stat(self, rel: str) -> FileInfo | None:
        if not rel:
            return FileInfo(path="", kind="dir", mount=self.source)
        for page in self._pages(self.prefix + rel, "/"):
            for item in page.get("Contents", ()):
                if item["Key"] == self.prefix + rel:
                    return FileInfo(path=rel, kind="file", size=int(item["Size"]), mount=self.source)
            for common in page.get("CommonPrefixes", ()):
                if common["Prefix"] == self.prefix + rel + "/":
                    return FileInfo(path=rel, kind="dir", mount=self.source)
        return None

    def list_dir(self, rel: str) -> list[FileInfo]:
        start = self.prefix + (rel + "/" if rel else "")
        infos = []
        for page in self._pages(start, "/"):
            for item in page.get("Contents", ()):
                name = item["Key"][len(start) :]
                if name:
                    infos.append(
                        FileInfo(
                            path=_join(rel, name), kind="file", size=int(item["Size"]), mount=self.source
                        )
                    )
            for common in page.get("CommonPrefixes", ()):
                infos.append(
                    FileInfo(
                        path=_join(rel, common["Prefix"][len(start) :].rstrip("/")),
                        kind="dir",
                        mount=self.source,
                    )
                )
        return infos

    def read(self, rel: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.prefix + rel)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise WorkspaceNotFoundError(f"{rel} is not in mount {self.source}") from None
        return body

    def walk(self) -> Iterator[FileInfo]:
        for page in self._pages(self.prefix, None):
            for item in page.get("Contents", ()):
                rel = item["Key"][len(self.prefix) :]
                if rel and not rel.endswith("/"):
                    yield FileInfo(path=rel, kind="file", size=int(item["Size"]), mount=self.source)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def open_mount(source: str) -> MountSource:
    """A mount for ``source``: ``s3://bucket/prefix``, ``file:///dir`` or a directory path."""
    if source.startswith("s3://"):
        return S3Mount(source)
    if source.startswith("file://"):
        return LocalDirMount(Path(unquote(urlsplit(source).path)))
    if "://" in source:
        raise ConfigError(f"mount source {source!r}: use a directory, file:///dir or s3://bucket/prefix")
    return LocalDirMount(Path(source).expanduser())


def mount_sources(mounts: Iterable[Mount], *, base_dir: Path | None = None) -> dict[str, MountSource]:
    """Open the mounts an agent spec declares; relative directories are relative to ``base_dir``."""
    result: dict[str, MountSource] = {}
    for mount in mounts:
        point = normalize(mount.path, allow_root=False)
        source = mount.source
        if base_dir is not None and "://" not in source and not os.path.isabs(os.path.expanduser(source)):
            source = str(base_dir / source)
        result[point] = open_mount(source)
    return result

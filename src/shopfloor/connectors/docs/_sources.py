"""Which files a ``docs:`` connector ingests: its ``sources`` (or, when none of them exists, its
``fallback``), less what its ``exclude`` patterns name.

The fallback serves documentation a system package installs: the researcher reads Debian's
``python3.11-doc`` (``/usr/share/doc/python3.11/html``) where the set-up could install it, and a few
shipped pages of it where it could not. A source that is missing while others exist is not a reason to
fall back: it stays an error at ingest, naming the path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from shopfloor.spec import DocsConnectorSpec, seed_path

__all__ = ["ResolvedSources", "excluded", "resolve_sources"]


@dataclass(frozen=True, kw_only=True)
class ResolvedSources:
    paths: list[Path]
    #: the paths are the spec's ``fallback``: no entry of its ``sources`` exists here
    fallback: bool


def _exists(ref: str, base_dir: Path) -> Path | None:
    try:
        path = seed_path(ref, base_dir)
    except ValueError:  # pkg:PACKAGE/... of a package not installed
        return None
    return path if path.exists() else None


def resolve_sources(docs: DocsConnectorSpec, base_dir: Path) -> ResolvedSources:
    """The paths to ingest for ``docs`` (a spec in ``base_dir``)."""
    found = [_exists(ref, base_dir) for ref in docs.sources]
    if docs.fallback and not any(found):
        return ResolvedSources(paths=[seed_path(ref, base_dir) for ref in docs.fallback], fallback=True)
    return ResolvedSources(paths=[seed_path(ref, base_dir) for ref in docs.sources], fallback=False)


def excluded(relative: str, patterns: Sequence[str]) -> bool:
    """Whether a file at ``relative`` (a ``/`` path under its source directory) is left out: a pattern
    with a ``/`` matches the whole path (``*`` crosses ``/``: ``_static/*``), one without matches the
    file name too (``genindex*.html``)."""
    name = PurePosixPath(relative).name
    return any(
        fnmatchcase(relative, pattern) or ("/" not in pattern and fnmatchcase(name, pattern))
        for pattern in patterns
    )

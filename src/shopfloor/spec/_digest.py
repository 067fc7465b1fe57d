"""The digest of an agent: its spec in canonical form plus the digests of what it references.

The same agent has the same digest on any machine and in any directory (only
paths relative to the spec enter it); any change to the spec, to a tool file, to
a skill's files or to a seed gives a new one. Writing a default value explicitly
changes nothing, because the canonical form is the validated model with every
default filled in.

What a reference's digest is depends on its kind, and the skills layer knows
better than this one what a skill's digest is, so references are resolved by
functions keyed by kind (``RefResolvers``) that the caller passes in: this layer's
own (``spec_resolvers()``) with the skills layer's over them, as the composition root
(``shopfloor.runtime.compose``) puts them together. Nothing is registered globally,
so an agent's digest depends only on the resolvers handed to the loader.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shopfloor.spec._model import AgentSpec
from shopfloor.spec._yaml import DataPath

__all__ = [
    "RefResolver",
    "RefResolvers",
    "SpecReference",
    "canonical_json",
    "compute_digest",
    "digest_document",
    "file_digest",
    "resolve_reference",
    "spec_references",
    "spec_resolvers",
    "tree_digest",
]

DIGEST_FORMAT = "shopfloor.agent/v1"

#: resolves a reference as written in the spec, relative to the spec's directory,
#: to ``sha256:<hex>``; raises ValueError or OSError with a message for the user.
RefResolver = Callable[[str, Path], str]
#: the resolver of each kind of reference
RefResolvers = Mapping[str, RefResolver]

_REGISTRY_REF = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)@(?P<target>.+)\Z")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}\Z")
# Build by-products that appear when a skill or tool runs; they must not change the digest.
_IGNORED_NAMES = frozenset({"__pycache__", ".git", ".DS_Store", ".pytest_cache", ".mypy_cache"})


@dataclass(frozen=True, kw_only=True)
class SpecReference:
    """Something outside the spec that the spec depends on."""

    #: ``tool-file``, ``skill-path``, ``skill-digest``, ``skill-version`` or ``seed``
    kind: str
    #: as written in the spec
    ref: str
    #: where in the spec it is written, e.g. ``("tools", 0, "source")``
    where: DataPath


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def tree_digest(root: Path) -> str:
    """``sha256:<hex>`` over every file's relative path and bytes, in sorted order.

    Symbolic links count by their target text (never followed, so a link cannot
    pull outside files into the digest); caches such as ``__pycache__`` are skipped.
    """
    entries: list[tuple[str, str]] = []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [name for name in dirnames if name not in _IGNORED_NAMES]
        base = Path(directory)
        for name in [*filenames, *(d for d in dirnames if (base / d).is_symlink())]:
            path = base / name
            if name in _IGNORED_NAMES or name.endswith(".pyc"):
                continue
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries.append((rel, "link:" + os.readlink(path)))
            else:
                entries.append((rel, file_digest(path)))
    digest = hashlib.sha256()
    for rel, content in sorted(entries):
        digest.update(rel.encode() + b"\0" + content.encode() + b"\n")
    return f"sha256:{digest.hexdigest()}"


def _tool_file(ref: str, base_dir: Path) -> str:
    file = ref.rsplit(":", 1)[0]
    path = base_dir / file
    if not path.is_file():
        raise ValueError(f"tool file {file!r} not found (looked for {path})")
    return file_digest(path)


def _skill_path(ref: str, base_dir: Path) -> str:
    path = base_dir / ref
    if not path.is_dir():
        raise ValueError(
            f"skill {ref!r} is neither name@version, name@sha256:DIGEST nor a directory (looked for {path})"
        )
    if not (path / "SKILL.md").is_file():
        raise ValueError(f"skill directory {ref!r} has no SKILL.md")
    return tree_digest(path)


def _skill_digest(ref: str, base_dir: Path) -> str:
    target = ref.split("@", 1)[1].lower()
    if not _SHA256.match(target):
        raise ValueError(f"skill {ref!r}: expected name@sha256: followed by 64 hex digits")
    return target


def _skill_version(ref: str, base_dir: Path) -> str:
    # A version names a release in a registry, which pins its own digest; the
    # reference itself is what this spec commits to.
    return f"sha256:{_sha256_hex(ref.encode())}"


def seed_path(ref: str, base_dir: Path) -> Path:
    """Where a seed entry's content is: ``PATH`` relative to the spec's directory, or
    ``pkg:PACKAGE/PATH`` inside an installed package (data sets that ship in wheels)."""
    if not ref.startswith("pkg:"):
        return base_dir / ref
    package, _, inner = ref.removeprefix("pkg:").partition("/")
    # find_spec locates a top-level package without running its code.
    found = importlib.util.find_spec(package) if package.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise ValueError(f"seed {ref!r}: no installed package {package!r}")
    return Path(next(iter(found.submodule_search_locations))) / inner


def _seed(ref: str, base_dir: Path) -> str:
    path = seed_path(ref, base_dir)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        return tree_digest(path)
    raise ValueError(f"seed {ref!r} not found (looked for {path})")


def spec_resolvers() -> dict[str, RefResolver]:
    """This layer's resolvers, one per kind (a skill directory counts as a tree of files here;
    the skills layer has a better one, its manifest digest)."""
    return {
        "tool-file": _tool_file,
        "skill-path": _skill_path,
        "skill-digest": _skill_digest,
        "skill-version": _skill_version,
        "seed": _seed,
    }


def resolve_reference(reference: SpecReference, base_dir: Path, resolvers: RefResolvers) -> str:
    """The digest of one reference; ValueError or OSError says why it cannot be had."""
    resolver = resolvers.get(reference.kind)
    if resolver is None:
        raise ValueError(f"no resolver for references of kind {reference.kind!r}")
    return resolver(reference.ref, base_dir)


def spec_references(spec: AgentSpec) -> list[SpecReference]:
    """Every reference of the spec, in the order written."""
    refs: list[SpecReference] = []
    for index, tool in enumerate(spec.tools):
        file, sep, _ = tool.source.rpartition(":")
        if sep and file.endswith(".py") and not tool.source.startswith("builtin:"):
            refs.append(SpecReference(kind="tool-file", ref=tool.source, where=("tools", index, "source")))
    for index, skill in enumerate(spec.skills):
        match = _REGISTRY_REF.match(skill.ref)
        if match is None:
            kind = "skill-path"
        elif match["target"].lower().startswith("sha256:"):
            kind = "skill-digest"
        else:
            kind = "skill-version"
        refs.append(SpecReference(kind=kind, ref=skill.ref, where=("skills", index, "ref")))
    for index, seed in enumerate(spec.workspace.seed):
        refs.append(SpecReference(kind="seed", ref=seed, where=("workspace", "seed", index)))
    return refs


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8: one byte string per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


#: fields added after ``DIGEST_FORMAT`` was fixed, with their defaults: left out of the document while at
#: their default, so an agent that uses none of them keeps the digest it had before they existed (its runs
#: in flight resume across an upgrade instead of failing as "the spec changed")
_LATER_FIELDS: tuple[tuple[tuple[str, ...], object], ...] = (
    (("connectors",), []),
    (("guardrails",), []),
    (("permissions", "team"), None),
    (("permissions", "secrets"), []),
    (("limits", "max_parallel_children"), 8),
)


def digest_document(spec: AgentSpec, resolved: list[tuple[SpecReference, str]]) -> str:
    """The digest from the spec and its already-resolved references."""
    dumped = spec.model_dump(mode="json")
    for path, default in _LATER_FIELDS:
        *parents, name = path
        holder = dumped
        for parent in parents:
            holder = holder[parent]
        if holder[name] == default:
            del holder[name]
    document = {
        "format": DIGEST_FORMAT,
        "spec": dumped,
        "references": sorted(
            ({"kind": ref.kind, "ref": ref.ref, "digest": digest} for ref, digest in resolved),
            key=lambda item: (item["kind"], item["ref"]),
        ),
    }
    return f"sha256:{_sha256_hex(canonical_json(document))}"


def compute_digest(spec: AgentSpec, base_dir: Path, resolvers: RefResolvers) -> str:
    """Resolve every reference relative to ``base_dir`` and digest the whole."""
    resolved = [(ref, resolve_reference(ref, base_dir, resolvers)) for ref in spec_references(spec)]
    return digest_document(spec, resolved)

"""A release: the signed, immutable document of one agent version and the diff between two.

The document holds the canonical spec (every default filled in, ``version`` set to the release's), the
sha256 of every file it references (tool files, skill directories, seeds), the exact skills (registry
version and digest), the model pins (catalogue entry and sha256, or a route) and the evaluations that had
run against the agent's digest. Its *content* (spec, files, skills, models, seeds) decides whether two
releases of one version are the same; who made it, when and which evaluations came with it do not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shopfloor.spec import canonical_json

__all__ = ["RELEASE_FORMAT", "Release", "diff_releases", "split_ref"]

RELEASE_FORMAT = "shopfloor.release/v1"
#: what makes two releases of one version the same release
CONTENT_FIELDS = ("spec", "files", "skills", "models", "seeds")


def split_ref(ref: str) -> tuple[str, str | None]:
    """``NAME@VERSION`` -> (NAME, VERSION); ``NAME`` -> (NAME, None)."""
    name, sep, version = ref.partition("@")
    return name, (version or None) if sep else None


@dataclass(frozen=True, kw_only=True)
class Release:
    name: str
    version: str
    #: the digest a run of this release records (``shopfloor.spec`` digest of its materialised files)
    agent_digest: str
    #: the digest of the agent directory it was made from (what evaluations of it name)
    source_digest: str
    spec: dict[str, Any]
    #: path relative to the agent directory -> ``sha256:HEX``
    files: dict[str, str]
    #: each skill reference: ref, kind (path, registry, digest), digest; name and version for the registry
    skills: list[dict[str, Any]]
    #: each model reference: ref, kind (catalogue, route), and the catalogue entry and sha256
    models: list[dict[str, Any]]
    #: seeds inside installed packages (``pkg:``), with their digests (local seeds are in ``files``)
    seeds: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    created_by: str = ""
    created_at: float = 0.0
    #: ``ed25519:BASE64`` and the base64 signature over ``payload()``; empty while unsigned
    signer: str = ""
    signature: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def content(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CONTENT_FIELDS}

    @property
    def content_digest(self) -> str:
        return "sha256:" + hashlib.sha256(canonical_json(self.content())).hexdigest()

    def document(self) -> dict[str, Any]:
        """What is signed: everything but the signature."""
        return {
            "format": RELEASE_FORMAT,
            "name": self.name,
            "version": self.version,
            "agent_digest": self.agent_digest,
            "source_digest": self.source_digest,
            **self.content(),
            "evaluations": self.evaluations,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }

    def payload(self) -> bytes:
        return canonical_json(self.document())

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            **self.document(),
            "content_digest": self.content_digest,
            "signer": self.signer,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Release:
        names = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in names})


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            yield from _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _keyed(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {str(item[key]): item for item in items}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def diff_releases(a: Release, b: Release) -> list[str]:
    """What changed from ``a`` to ``b``, one line each: spec fields, files, skills, models, seeds."""
    lines: list[str] = []
    old, new = dict(_flatten(a.spec, "")), dict(_flatten(b.spec, ""))
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            lines.append(f"spec.{path}: removed (was {_short(old[path])})")
        elif path not in old:
            lines.append(f"spec.{path}: added {_short(new[path])}")
        elif old[path] != new[path]:
            lines.append(f"spec.{path}: {_short(old[path])} -> {_short(new[path])}")
    for path in sorted(a.files.keys() | b.files.keys()):
        if a.files.get(path) != b.files.get(path):
            what = "added" if path not in a.files else "removed" if path not in b.files else "changed"
            lines.append(f"file {path}: {what}")
    for label, key, olds, news in (
        ("skill", "ref", a.skills, b.skills),
        ("model", "ref", a.models, b.models),
        ("seed", "ref", a.seeds, b.seeds),
    ):
        before, after = _keyed(olds, key), _keyed(news, key)
        for ref in sorted(before.keys() | after.keys()):
            if ref not in after:
                lines.append(f"{label} {ref}: removed")
            elif ref not in before:
                lines.append(f"{label} {ref}: added ({after[ref].get('digest') or after[ref].get('kind')})")
            elif before[ref] != after[ref]:
                changed = sorted(
                    k
                    for k in before[ref].keys() | after[ref].keys()
                    if before[ref].get(k) != after[ref].get(k)
                )
                lines.append(
                    f"{label} {ref}: "
                    + ", ".join(f"{k} {before[ref].get(k)} -> {after[ref].get(k)}" for k in changed)
                )
    return lines

"""Make a release from an agent directory: what it references, pinned, and the files to store.

Files are named by their path relative to the agent directory, so the release materialises anywhere
with the same digest. A reference outside that directory (``../shared/tools.py``), a symbolic link or
a file that cannot be read is refused, naming it: a release must carry everything it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from shopfloor.errors import ReleaseError, ShopfloorError, UnknownModelError
from shopfloor.models import DEFAULT_CATALOGUE, Catalogue
from shopfloor.runtime import Services
from shopfloor.skills import SkillRegistry
from shopfloor.spec import AgentSpec, LoadedSpec, file_digest, resolve_reference, spec_references

__all__ = ["SPEC_FILE", "ReleaseParts", "collect_parts", "model_pins", "spec_text"]

#: the spec's file in a materialised release
SPEC_FILE = "agent.yaml"
# caches that appear when a tool or skill runs: never part of a release (the digest skips them too)
_SKIPPED = frozenset({"__pycache__", ".git", ".DS_Store", ".pytest_cache", ".mypy_cache"})


@dataclass(frozen=True, kw_only=True)
class ReleaseParts:
    loaded: LoadedSpec
    spec: dict[str, Any]
    #: relative path -> (``sha256:HEX``, the file on disk)
    files: dict[str, tuple[str, Path]]
    skills: list[dict[str, Any]]
    models: list[dict[str, Any]]
    seeds: list[dict[str, Any]]


def spec_text(spec: dict[str, Any]) -> str:
    """The spec file of a release (JSON is YAML): the canonical spec without the values that are at their
    default, one text per spec. The digest is of the validated spec, defaults filled in, so leaving them
    out changes nothing but the text every run start parses."""
    compact = AgentSpec.model_validate(spec).model_dump(mode="json", exclude_defaults=True)
    return json.dumps(compact, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _relative(base: Path, ref: str, what: str) -> str:
    rel = PurePosixPath(os.path.normpath(ref).replace(os.sep, "/"))
    if rel.is_absolute() or rel.parts[:1] == ("..",):
        raise ReleaseError(
            f"{what} {ref!r} lies outside the agent directory {base}: a release carries only what is "
            "inside it; move it there (or publish the skill and reference it as name@version)"
        )
    if str(rel) == SPEC_FILE:
        raise ReleaseError(f"{what} {ref!r}: a release keeps its spec as {SPEC_FILE}; rename the file")
    return str(rel)


def _add_file(files: dict[str, tuple[str, Path]], base: Path, rel: str) -> None:
    path = base / rel
    if path.is_symlink():
        raise ReleaseError(f"{path}: a symbolic link cannot go into a release; copy the file in its place")
    try:
        files[rel] = (file_digest(path), path)
    except OSError as exc:
        raise ReleaseError(f"{path}: cannot read it for the release: {exc}") from exc


def _add_tree(files: dict[str, tuple[str, Path]], base: Path, rel: str) -> None:
    root = base / rel
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(name for name in dirnames if name not in _SKIPPED)
        for name in sorted(filenames):
            if name in _SKIPPED or name.endswith(".pyc"):
                continue
            path = Path(directory) / name
            _add_file(files, base, path.relative_to(base).as_posix())
        for name in dirnames:
            if (Path(directory) / name).is_symlink():
                _add_file(files, base, (Path(directory) / name).relative_to(base).as_posix())


def model_pins(model: str, catalogue: Catalogue = DEFAULT_CATALOGUE) -> list[dict[str, Any]]:
    """The pin of the spec's model: an embedded model's catalogue entry and sha256, or a route (a
    provider reference the gateway or the provider resolves at run time)."""
    provider, _, name = model.partition(":")
    if provider == "local":
        try:
            entry = catalogue.get_entry(name)
        except UnknownModelError as exc:
            raise ReleaseError(f"model {model!r}: {exc}") from exc
        return [{"ref": model, "kind": "catalogue", "entry": entry.name, "sha256": entry.sha256}]
    return [{"ref": model, "kind": "route"}]


def collect_parts(services: Services, agent_dir: Path | str, *, version: str | None) -> ReleaseParts:
    """Load the agent and pin everything it references (blocking)."""
    loaded = services.load_spec(agent_dir)
    base = loaded.base_dir
    spec = loaded.spec.model_copy(update={"version": version}) if version else loaded.spec
    files: dict[str, tuple[str, Path]] = {}
    skills: list[dict[str, Any]] = []
    seeds: list[dict[str, Any]] = []
    registry: SkillRegistry | None = None
    try:
        for reference in spec_references(loaded.spec):
            if reference.kind == "tool-file":
                file = reference.ref.rsplit(":", 1)[0]
                _add_file(files, base, _relative(base, file, "tool file"))
            elif reference.kind == "skill-path":
                _add_tree(files, base, _relative(base, reference.ref, "skill"))
                digest = resolve_reference(reference, base, services.resolvers)
                skills.append({"ref": reference.ref, "kind": "path", "digest": digest})
            elif reference.kind == "skill-version":
                registry = registry or services.skill_registry()
                try:
                    published = registry.get(reference.ref)
                except ShopfloorError as exc:
                    raise ReleaseError(f"skill {reference.ref}: {exc}") from exc
                skills.append(
                    {
                        "ref": reference.ref,
                        "kind": "registry",
                        "name": published.name,
                        "version": published.version,
                        "digest": published.digest,
                    }
                )
            elif reference.kind == "skill-digest":
                digest = resolve_reference(reference, base, services.resolvers)
                skills.append({"ref": reference.ref, "kind": "digest", "digest": digest})
            elif reference.kind == "seed" and reference.ref.startswith("pkg:"):
                digest = resolve_reference(reference, base, services.resolvers)
                seeds.append({"ref": reference.ref, "digest": digest})
            elif reference.kind == "seed":
                rel = _relative(base, reference.ref, "seed")
                if (base / rel).is_dir():
                    _add_tree(files, base, rel)
                else:
                    _add_file(files, base, rel)
            else:
                raise ReleaseError(
                    f"{loaded.path}: a reference of kind {reference.kind!r} cannot be released"
                )
    finally:
        if registry is not None:
            registry.close()
    dumped = spec.model_dump(mode="json")
    return ReleaseParts(
        loaded=loaded,
        spec=dumped,
        files=files,
        skills=skills,
        models=model_pins(spec.model),
        seeds=seeds,
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

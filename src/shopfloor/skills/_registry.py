"""The local skill registry: published skill versions, their files stored content-addressed.

SQLAlchemy Core over ``settings.db_url`` (SQLite by default, PostgreSQL in a cluster). A skill is
addressed as ``name@version`` or ``name@sha256:DIGEST`` (or a bare name for its newest version);
the built-in skills resolve without being published. Calls are blocking: async callers wrap them
in ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from shopfloor.config import Settings
from shopfloor.errors import SkillRegistryError
from shopfloor.skills._blobs import blob_key, open_blob_store
from shopfloor.skills._builtin import builtin_skill_dir
from shopfloor.skills._frontmatter import unsafe_name
from shopfloor.skills._manifest import SIGNATURE_FILE, Manifest, build_manifest
from shopfloor.skills._signing import TrustPolicy, open_skill
from shopfloor.storage import Engines, create_tables, make_engine

__all__ = ["PublishedSkill", "SkillRegistry", "parse_ref"]

_meta = sa.MetaData()
_versions = sa.Table(
    "skill_versions",
    _meta,
    sa.Column("digest", sa.String(71), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, index=True),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("signer", sa.Text),
    sa.Column("signature_sha256", sa.String(64)),
    sa.Column("manifest", sa.Text, nullable=False),
    sa.Column("published_at", sa.Float, nullable=False),
    sa.UniqueConstraint("name", "version", name="uq_skill_versions_name_version"),
)


@dataclass(frozen=True, kw_only=True)
class PublishedSkill:
    name: str
    version: str
    digest: str
    description: str
    signer: str | None
    published_at: float
    files: tuple[str, ...]
    builtin: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": f"{self.name}@{self.version}",
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "description": self.description,
            "signer": self.signer,
            "published_at": self.published_at,
            "files": list(self.files),
            "builtin": self.builtin,
        }


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``name@version`` -> (name, version, None); ``name@sha256:HEX`` -> (name, None, digest); ``name``."""
    name, _, rest = ref.partition("@")
    if not name:
        raise SkillRegistryError(f"bad skill reference {ref!r}: expected name@version or name@sha256:DIGEST")
    if rest.startswith("sha256:"):
        if len(rest) != 71 or any(c not in "0123456789abcdef" for c in rest[7:]):
            raise SkillRegistryError(f"bad digest in {ref!r}: expected sha256: and 64 lowercase hex digits")
        return name, None, rest
    return name, rest or None, None


def _cache_path(cache_dir: Path, digest: str, name: str) -> Path:
    """``cache_dir/HEX/name``, once both parts are checked: each must stay one directory below the other."""
    unsafe = unsafe_name(name)
    if unsafe is not None:
        raise SkillRegistryError(f"skill {name[:80]!r}: {unsafe}; it is refused in every mode")
    hexdigest = digest.removeprefix("sha256:")
    if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
        raise SkillRegistryError(f"skill {name}: malformed digest {digest[:80]!r} in the registry")
    return cache_dir / hexdigest / name


def _member(rel: str) -> str:
    """A file path of a stored manifest, refused unless it is relative and stays inside the skill."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise SkillRegistryError(f"the registry holds a skill file path {rel[:80]!r} outside the skill")
    return rel


class SkillRegistry:
    def __init__(
        self, url: str, cache_dir: Path, policy: TrustPolicy, *, engine: sa.Engine | None = None
    ) -> None:
        """``engine``: the database's shared engine (``storage.Engines``), which ``close`` leaves open."""
        self._owns_engine = engine is None
        self._engine = engine if engine is not None else make_engine(url)
        create_tables(self._engine, _meta)
        self._blobs = open_blob_store(url, self._engine)
        self.cache_dir = cache_dir
        self.policy = policy

    @classmethod
    def from_settings(cls, settings: Settings, engines: Engines | None = None) -> SkillRegistry:
        """The registry in the settings' database, on its engine in ``engines`` where given."""
        settings.ensure_home()
        engine = engines.get(settings.db_url) if engines is not None else None
        return cls(
            settings.db_url, settings.home / "skills", TrustPolicy.from_settings(settings), engine=engine
        )

    def close(self) -> None:
        self._blobs.close()
        if self._owns_engine:
            self._engine.dispose()

    def publish(self, skill_dir: Path | str) -> PublishedSkill:
        """Store a verified skill; the same version with other content is refused."""
        skill = open_skill(skill_dir, self.policy)
        _cache_path(self.cache_dir, skill.digest, skill.name)  # refused before anything is stored
        if skill.version is None:
            raise SkillRegistryError(
                f"{skill.path / 'SKILL.md'}: a published skill needs a version: "
                'add `metadata:` with `  version: "1.0.0"` to the front matter'
            )
        sig = skill.path / SIGNATURE_FILE
        signer = json.loads(sig.read_text()).get("key") if sig.is_file() else None
        with self._engine.begin() as conn:
            row = conn.execute(
                sa.select(_versions.c.digest).where(
                    _versions.c.name == skill.name, _versions.c.version == skill.version
                )
            ).first()
            if row is not None:
                if row.digest != skill.digest:
                    raise SkillRegistryError(
                        f"{skill.name}@{skill.version} is already published with other content "
                        f"({row.digest}); "
                        "bump metadata.version to publish a change"
                    )
                return self.get(f"{skill.name}@sha256:{skill.digest.removeprefix('sha256:')}")
            paths = [f.path for f in skill.manifest.files] + ([SIGNATURE_FILE] if sig.is_file() else [])
            self._blobs.put_many(
                (blob_key(hashlib.sha256(data).hexdigest()), data)
                for data in ((skill.path / rel).read_bytes() for rel in paths)
            )
            conn.execute(
                _versions.insert().values(
                    digest=skill.digest,
                    name=skill.name,
                    version=skill.version,
                    description=skill.description,
                    signer=signer,
                    signature_sha256=hashlib.sha256(sig.read_bytes()).hexdigest() if sig.is_file() else None,
                    manifest=json.dumps(skill.manifest.to_json()),
                    published_at=time.time(),
                )
            )
        return self.get(f"{skill.name}@{skill.version}")

    def list(self, name: str | None = None) -> list[PublishedSkill]:
        query = sa.select(_versions).order_by(_versions.c.name, _versions.c.published_at)
        if name is not None:
            query = query.where(_versions.c.name == name)
        with self._engine.connect() as conn:
            return [self._row(row) for row in conn.execute(query)]

    def _row(self, row: Any) -> PublishedSkill:
        manifest = Manifest.from_json(json.loads(row.manifest))
        return PublishedSkill(
            name=row.name,
            version=row.version,
            digest=row.digest,
            description=row.description,
            signer=row.signer,
            published_at=row.published_at,
            files=tuple(f.path for f in manifest.files),
        )

    def _find(self, ref: str) -> Any:
        name, version, digest = parse_ref(ref)
        query = sa.select(_versions).where(_versions.c.name == name)
        if version is not None:
            query = query.where(_versions.c.version == version)
        if digest is not None:
            query = query.where(_versions.c.digest == digest)
        with self._engine.connect() as conn:
            return conn.execute(query.order_by(_versions.c.published_at.desc())).first()

    def get(self, ref: str) -> PublishedSkill:
        row = self._find(ref)
        if row is not None:
            return self._row(row)
        builtin = self._builtin(ref)
        if builtin is None:
            raise SkillRegistryError(f"no skill {ref!r} in the registry; see `shopfloor skill ls`")
        skill = open_skill(builtin, self.policy)
        return PublishedSkill(
            name=skill.name,
            version=skill.version or "0",
            digest=skill.digest,
            description=skill.description,
            signer=None,
            published_at=0.0,
            files=tuple(f.path for f in skill.manifest.files),
            builtin=True,
        )

    def _builtin(self, ref: str) -> Path | None:
        name, version, digest = parse_ref(ref)
        path = builtin_skill_dir(name)
        if path is None:
            return None
        if version is None and digest is None:
            return path
        skill = open_skill(path, self.policy)
        return path if version in (None, skill.version) and digest in (None, skill.digest) else None

    def resolve(self, ref: str) -> Path:
        """A directory holding exactly the referenced skill (materialised once per digest)."""
        row = self._find(ref)
        if row is None:
            builtin = self._builtin(ref)
            if builtin is None:
                raise SkillRegistryError(f"no skill {ref!r} in the registry; see `shopfloor skill ls`")
            return builtin
        target = _cache_path(self.cache_dir, str(row.digest), str(row.name))
        manifest = Manifest.from_json(json.loads(row.manifest))
        if target.is_dir() and build_manifest(target, manifest.front_matter).digest == row.digest:
            return target
        self._materialise(row, manifest, target)
        return target

    def _materialise(self, row: Any, manifest: Manifest, target: Path) -> None:
        wanted = {_member(f.path): f.sha256 for f in manifest.files}
        if row.signature_sha256:
            wanted[SIGNATURE_FILE] = row.signature_sha256
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.cache_dir))
        for rel, sha in wanted.items():
            dest = staging / row.name / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self._blobs.get(blob_key(sha)))
        if target.parent.exists():
            shutil.rmtree(target.parent)
        try:
            # rename is atomic: a concurrent reader sees no directory or a complete one.
            os.rename(staging, target.parent)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(staging)  # another process materialised the same digest first

"""The release registry: create (pin, sign, store), find, verify and materialise releases.

``Releases`` is blocking (async callers use ``asyncio.to_thread``) and takes everything from the process's
``Services``: the database's shared engine, the resolvers that digest an agent, the skill registry, the
settings (trusted keys, the workspace object store's URL). Every release created is audited with who made it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from shopfloor.errors import ReleaseError, ShopfloorError, SkillSignatureError
from shopfloor.models import DEFAULT_CATALOGUE
from shopfloor.ops.releases._build import SPEC_FILE, collect_parts, spec_text
from shopfloor.ops.releases._release import Release, diff_releases, split_ref
from shopfloor.ops.releases._store import ReleaseStore, object_key
from shopfloor.runtime import Services
from shopfloor.security import AuditLog, build_audit_log
from shopfloor.skills import TrustPolicy, sign_payload, verify_payload
from shopfloor.workspace import ObjectStore, open_store

__all__ = ["Releases", "check_version"]

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")


def check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise ReleaseError(
            f"release version {version[:80]!r}: use letters, digits and . _ + - (at most 64, e.g. 1.2.0)"
        )
    return version


class Releases:
    def __init__(
        self, services: Services, *, audit: AuditLog | None = None, objects: ObjectStore | None = None
    ) -> None:
        self.services = services
        self.settings = settings = services.settings
        settings.ensure_home()
        self.store = ReleaseStore(services.engines.get(settings.db_url))
        self._objects, self._owns_objects = objects, objects is None
        self._audit, self._owns_audit = audit, audit is None
        self.root = settings.home / "releases"
        #: (payload sha256, signer, signature) of the documents whose signature verified here
        self._verified: set[tuple[str, str, str]] = set()
        self._policy: tuple[tuple[tuple[str, int], ...], TrustPolicy] | None = None

    def close(self) -> None:
        if self._objects is not None and self._owns_objects:
            self._objects.close()
        if self._audit is not None and self._owns_audit:
            self._audit.close()

    def __enter__(self) -> Releases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def objects(self) -> ObjectStore:
        """The workspace object store of the settings (opened at first use)."""
        if self._objects is None:
            self._objects = open_store(self.settings.workspace_url)
        return self._objects

    @property
    def audit(self) -> AuditLog:
        if self._audit is None:
            self._audit = build_audit_log(self.settings)
        return self._audit

    # create ----------------------------------------------------------------------------------
    def create(
        self,
        agent_dir: Path | str,
        *,
        key: Path,
        actor: str,
        version: str | None = None,
        evaluations: Callable[[str], list[dict[str, Any]]] | None = None,
    ) -> tuple[Release, bool]:
        """The release of the agent at ``agent_dir``, signed with ``key``; (release, whether it is new).
        The same version with the same content is the same release; with other content it is refused.
        ``evaluations``: the finished evaluations of an agent digest, attached to the release (the eval
        harness sits beside this layer: the caller passes them, ``cli`` reads the eval store)."""
        parts = collect_parts(self.services, agent_dir, version=check_version(version) if version else None)
        name, release_version = str(parts.spec["name"]), check_version(str(parts.spec["version"]))
        files = {rel: digest for rel, (digest, _) in parts.files.items()}
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".staging-", dir=self.root) as staging:
            target = Path(staging) / name
            for rel, (_, path) in parts.files.items():
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target / rel)
            _write(target / SPEC_FILE, spec_text(parts.spec).encode())
            agent_digest = self.services.load_spec(target).digest
        release = Release(
            name=name,
            version=release_version,
            agent_digest=agent_digest,
            source_digest=parts.loaded.digest,
            spec=parts.spec,
            files=files,
            skills=parts.skills,
            models=parts.models,
            seeds=parts.seeds,
            evaluations=evaluations(parts.loaded.digest) if evaluations is not None else [],
            created_by=actor,
            created_at=time.time(),
        )
        existing = self.store.find(name, release_version)
        if existing is not None:
            return self._same(existing, release), False
        signer, signature = _sign(release, key)
        release = replace(release, signer=signer, signature=signature)
        # The files first (streamed: bounded memory), so a row never names bytes the store lacks.
        for digest, path in parts.files.values():
            if not self.objects.exists(object_key(digest)):
                with path.open("rb") as source:
                    self.objects.put_file(object_key(digest), source, path.stat().st_size)
        stored = self.store.insert(release)
        if stored.signature != release.signature:  # another process created this version first
            return self._same(stored, release), False
        self.audit.append(
            "release.created",
            actor=actor,
            resource=f"releases/{release.ref}",
            details={
                "content_digest": release.content_digest,
                "agent_digest": release.agent_digest,
                "signer": release.signer,
                "evaluations": [e.get("eval_id") for e in release.evaluations],
            },
        )
        return stored, True

    def _same(self, existing: Release, made: Release) -> Release:
        if existing.content_digest == made.content_digest:
            return existing
        changes = diff_releases(existing, made)
        raise ReleaseError(
            f"release {existing.ref} already exists with other content; a version is immutable: "
            + "; ".join(changes[:20])
            + (f"; and {len(changes) - 20} more" if len(changes) > 20 else "")
            + " (create it with another --version)"
        )

    # read ------------------------------------------------------------------------------------
    def get(self, ref: str) -> Release:
        """``NAME@VERSION`` (or ``NAME``: its newest release)."""
        name, version = split_ref(ref)
        release = self.store.find(name, version)
        if release is None:
            raise ReleaseError(f"no release {ref!r}; `shopfloor release ls` lists them")
        return release

    def list_releases(self, name: str | None = None) -> list[Release]:
        return self.store.list_releases(name)

    def diff(self, a: str, b: str) -> list[str]:
        return diff_releases(self.get(a), self.get(b))

    # verify ----------------------------------------------------------------------------------
    def _trust(self) -> TrustPolicy:
        """The trust policy, read again whenever a key under ``$SHOPFLOOR_HOME/keys`` was added, removed
        or changed (a key trusted or removed counts at the next check; config changes at the next start)."""
        keys = self.settings.home / "keys"
        stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in keys.glob("*.pub")))
        if self._policy is None or self._policy[0] != stamp:
            self._policy = (stamp, TrustPolicy.from_settings(self.settings))
        return self._policy[1]

    def check(self, release: Release) -> None:
        """The signature, the registry skills and the model pins still verify (cheap: no files read)."""
        what = f"release {release.ref}"
        if not release.signature:
            raise ReleaseError(f"{what} is not signed")
        payload = release.payload()
        policy = self._trust()
        token = (hashlib.sha256(payload).hexdigest(), release.signer, release.signature)
        # A document whose signature verified once needs only the trust check again (every run start).
        if token not in self._verified or release.signer not in policy.trusted_keys:
            try:
                verify_payload(
                    payload, key=release.signer, signature=release.signature, policy=policy, what=what
                )
            except SkillSignatureError as exc:
                raise ReleaseError(str(exc)) from exc
            self._verified.add(token)
        registry_skills = [s for s in release.skills if s.get("kind") == "registry"]
        if registry_skills:
            registry = self.services.skill_registry()
            try:
                for skill in registry_skills:
                    ref = f"{skill['name']}@{skill['version']}"
                    try:
                        digest = registry.get(ref).digest
                    except ShopfloorError as exc:
                        raise ReleaseError(f"{what}: skill {ref}: {exc}") from exc
                    if digest != skill["digest"]:
                        raise ReleaseError(
                            f"{what}: skill {ref} is {digest} in the registry, "
                            f"the release pinned {skill['digest']}"
                        )
            finally:
                registry.close()
        for model in release.models:
            if model.get("kind") == "catalogue":
                entry = DEFAULT_CATALOGUE.get(str(model["entry"]))
                if entry is None or entry.sha256 != model["sha256"]:
                    raise ReleaseError(
                        f"{what}: model {model['ref']} is pinned to sha256 {model['sha256']}, the catalogue "
                        f"has {entry.sha256 if entry else 'no such entry'}"
                    )

    def verify(self, ref: str) -> tuple[Release, Path]:
        """Everything: the signature, the pins, every stored file's bytes and the digest they make. A
        materialised copy that no longer matches (edited on disk) is replaced by the verified one."""
        release = self.get(ref)
        self.check(release)
        target = self.path_of(release)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = self._stage(release, target.parent)
        try:
            digest = self.services.load_spec(staging).digest
            if digest != release.agent_digest:
                raise ReleaseError(
                    f"release {release.ref}: its files digest to {digest}, "
                    f"the release says {release.agent_digest}"
                )
            if target.is_dir() and self.services.load_spec(target).digest == digest:
                return release, target
            if target.is_dir():
                # Moved aside first: each rename is atomic, a reader sees the old copy or the new one.
                stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=target.parent))
                os.rename(target, stale / "copy")
                shutil.rmtree(stale, ignore_errors=True)
            _install(staging, target)
            return release, target
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def path_of(self, release: Release) -> Path:
        return self.root / release.name / f"{release.version}-{release.content_digest[7:23]}"

    def materialise(self, release: Release) -> Path:
        """The release's agent directory under ``$SHOPFLOOR_HOME/releases``, written once from the object
        store (each file's bytes checked against its sha256). A run checks the digest of what it loads."""
        target = self.path_of(release)
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = self._stage(release, target.parent)
        try:
            _install(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _stage(self, release: Release, parent: Path) -> Path:
        """A fresh copy of the release's files in a staging directory under ``parent``."""
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
        try:
            for rel, digest in release.files.items():
                _member(release, rel)
                try:
                    data = self.objects.get(object_key(digest))
                except ShopfloorError as exc:
                    raise ReleaseError(
                        f"release {release.ref}: file {rel} is missing from the store: {exc}"
                    ) from exc
                if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                    raise ReleaseError(
                        f"release {release.ref}: the stored bytes of {rel} "
                        f"no longer match its sha256 {digest}"
                    )
                _write(staging / rel, data)
            _write(staging / SPEC_FILE, spec_text(release.spec).encode())
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging


def _install(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target`` (atomic); where another process installed it first, keep theirs."""
    try:
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():
            raise


def _sign(release: Release, key: Path) -> tuple[str, str]:
    try:
        return sign_payload(release.payload(), key)
    except SkillSignatureError as exc:
        raise ReleaseError(f"release {release.ref}: cannot sign it: {exc}") from exc


def _member(release: Release, rel: str) -> None:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise ReleaseError(f"release {release.ref} names a file {rel[:80]!r} outside its directory")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)

"""The GitOps controller: reconcile releases and deployments to what a git repository declares.

One sync: fetch the repository; pick the revision (its head, or a rollback's pin while the head has not
moved); check its signature when policy asks; read and validate the whole desired state (any error: the
sync fails with file:line and nothing changes); create the declared releases (immutable and signed: a
version whose content changed is refused, naming what differs); then change every deployment that differs
in ONE transaction together with the controller's own state and the history line, so a controller killed
mid-sync leaves the previous state or the new one, and the next sync carries on from whichever it finds.
Releases made before such a crash serve nothing until a deployment names them.

Drift: a live deployment that differs from what the applied revision declared, while git did not change
it (someone ran ``shopfloor deploy`` by hand), is reverted (``self_heal``) or reported OutOfSync. Prune: a
deployment this repository declared before and no longer does is removed only with ``prune``. A rollback
pins the previous revision until the repository's head moves on, so automatic sync does not undo it.
Every change is audited with the controller's identity, the commit and its author.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from shopfloor.config import GITOPS_POLICY, POLICY_SECTIONS, load_settings, read_policy
from shopfloor.errors import ConfigError, GitOpsError, ReleaseError, ShopfloorError, SkillError, SpecError
from shopfloor.ops.gitops._desired import DeploymentDecl, DesiredState, Placed, policy_key, read_desired
from shopfloor.ops.gitops._repo import Commit, GitSource
from shopfloor.ops.gitops._store import GitOpsState, GitOpsStore, SyncRecord
from shopfloor.ops.releases import Deployment, Releases
from shopfloor.skills import open_skill

__all__ = ["GitOpsController", "ObjectStatus", "SyncResult"]

SyncState = Literal["Synced", "OutOfSync"]
Health = Literal["Healthy", "Progressing", "Degraded", "Missing"]


@dataclass(frozen=True, kw_only=True)
class ObjectStatus:
    #: ``Release/NAME@VERSION`` or ``Deployment/NAME``
    key: str
    sync: SyncState
    health: Health
    #: what differs (live -> desired), one line each
    diff: list[str] = field(default_factory=list)
    #: what this sync did: created, deployed, healed, pruned ("" for nothing)
    action: str = ""
    where: str = ""

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class SyncResult:
    repo: str
    revision: str | None
    head: str | None
    #: synced (something changed) | unchanged | failed | planned (a dry run)
    status: str
    message: str
    objects: list[ObjectStatus] = field(default_factory=list)
    pinned: bool = False

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["objects"] = [o.to_json() for o in self.objects]
        return data


def _policy_objects(policy: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Each object of a policy file by its report key, with its section."""
    out: dict[str, tuple[str, Any]] = {}
    for section, _, by_name in POLICY_SECTIONS:
        value: Any = policy.get(section) or ({} if by_name else [])
        items: list[tuple[str | None, Any]] = list(value.items()) if by_name else [(None, v) for v in value]
        for name, item in items:
            out[policy_key(section, item, name)] = (section, item)
    return out


def _add(policy: dict[str, Any], section: str, key: str, value: Any) -> None:
    if section in ("bindings", "limits"):
        policy.setdefault(section, []).append(value)
    else:
        policy.setdefault(section, {})[key.split("/", 1)[1]] = value


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _declared(decl: DeploymentDecl) -> dict[str, Any]:
    canary = decl.canary
    return {
        "stable": decl.release,
        "candidate": canary.release if canary else None,
        "canary": canary.percent if canary else 0,
    }


def _live(deployment: Deployment | None) -> dict[str, Any] | None:
    if deployment is None:
        return None
    return {"stable": deployment.stable, "candidate": deployment.candidate, "canary": deployment.canary}


def _diff(live: dict[str, Any] | None, desired: dict[str, Any] | None) -> list[str]:
    if live == desired:
        return []
    if live is None:
        return ["not deployed -> deployed"]
    if desired is None:
        return ["deployed -> removed"]
    return [
        f"{k}: {live[k]!r} -> {desired[k]!r}"
        for k in ("stable", "candidate", "canary")
        if live[k] != desired[k]
    ]


class GitOpsController:
    """Blocking, like ``Releases``; one per repository, path and branch."""

    def __init__(
        self,
        releases: Releases,
        source: GitSource,
        *,
        actor: str,
        path: str = "",
        key: Callable[[], Path] | None = None,
        prune: bool = False,
        self_heal: bool = True,
        allowed_signers: Path | None = None,
    ) -> None:
        if path.startswith("/") or ".." in Path(path).parts:
            raise GitOpsError(f"--path {path!r}: a directory inside the repository")
        self.releases = releases
        self.source = source
        self.path = path.strip("/")
        self.actor = actor
        self.key = key
        self.prune = prune
        self.self_heal = self_heal
        self.allowed_signers = allowed_signers
        self.store = GitOpsStore(releases.store.engine)
        self.repo = source.key
        self.workdir = releases.settings.home / "gitops"

    # reading the repository ------------------------------------------------------------------
    def _target(self, state: GitOpsState, head: str) -> tuple[str, bool, str]:
        """The revision to apply, whether a pin holds it, and a note."""
        if state.pinned and state.pinned_head == head:
            return (
                state.pinned,
                True,
                f"pinned to {state.pinned[:12]} by a rollback until the repository moves on",
            )
        if state.pinned:
            return head, False, f"the repository moved on to {head[:12]}: the rollback pin is released"
        return head, False, ""

    def _read(self, revision: str, checkout: Path) -> DesiredState:
        if self.allowed_signers is not None:
            self.source.verify(revision, self.allowed_signers)
        root = self.source.checkout(revision, self.path, checkout)
        if not root.is_dir():
            raise GitOpsError(f"--path {self.path!r} is a file in commit {revision[:12]}, not a directory")
        return read_desired(checkout, root)

    # the sync --------------------------------------------------------------------------------
    def sync(self, *, dry_run: bool = False) -> SyncResult:
        """Reconcile to the repository (``dry_run``: only say what differs)."""
        head = self.source.fetch()
        state = self.store.state(self.repo, self.source.shown)
        revision, pinned, note = self._target(state, head)
        commit = self.source.commit(revision)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(prefix="checkout-", dir=self.workdir) as tmp:
                desired = self._read(revision, Path(tmp))
                policy, policy_status = self._policy(desired, state, dry_run=dry_run)
                release_status = self._skills(desired, Path(tmp), dry_run=dry_run)
                release_status += self._releases(desired, Path(tmp), commit, dry_run=dry_run)
        except (SpecError, ReleaseError, SkillError, ConfigError) as exc:
            return self._failed(state, commit, head, exc)
        result = self._deployments(state, desired, commit, head, pinned, note, release_status, dry_run)
        if result.status == "failed":
            return result
        if policy is not None and not dry_run:
            # After the deployments' transaction: a crash in between leaves the file one sync behind,
            # and the next sync (which compares the file, not the history) writes it.
            _write_atomically(self.policy_file, json.dumps(policy, indent=2, sort_keys=True) + "\n")
            changed = [o for o in policy_status if o.action]
            for obj in changed:
                self._audit(f"gitops.policy_{obj.action}", commit, object=obj.key, diff=obj.diff)
            if changed and result.status == "unchanged":
                result = replace(result, status="synced", message=f"{len(changed)} policy change(s)")
        return replace(result, objects=result.objects + policy_status)

    @property
    def policy_file(self) -> Path:
        return self.releases.settings.home / GITOPS_POLICY

    def _policy(
        self, desired: DesiredState, state: GitOpsState, *, dry_run: bool
    ) -> tuple[dict[str, Any] | None, list[ObjectStatus]]:
        """The policy file to write (None: as it is) and each policy object's status. Checked against
        config.toml and the settings' validation before anything changes."""
        current = read_policy(self.policy_file)
        wanted: dict[str, Any] = json.loads(json.dumps(desired.policy))
        live_objects = _policy_objects(current)
        wanted_objects = _policy_objects(wanted)
        out: list[ObjectStatus] = []
        for key in sorted(set(live_objects) | set(wanted_objects)):
            live, want = live_objects.get(key), wanted_objects.get(key)
            where = str(desired.policy_where.get(key, ""))
            if want is None:
                assert live is not None
                if not self.prune:  # kept until a sync with --prune
                    section, value = live
                    _add(wanted, section, key, value)
                out.append(
                    ObjectStatus(
                        key=key,
                        sync="Synced" if self.prune and not dry_run else "OutOfSync",
                        health="Missing" if self.prune and not dry_run else "Healthy",
                        diff=[
                            "deleted from git"
                            + ("" if self.prune else " (pruning is off: --prune removes it)")
                        ],
                        action="pruned" if self.prune and not dry_run else "",
                    )
                )
                continue
            diff = (
                [] if live == want else (["not applied -> applied"] if live is None else ["changed in git"])
            )
            out.append(
                ObjectStatus(
                    key=key,
                    sync="Synced" if not diff or not dry_run else "OutOfSync",
                    health="Healthy" if not diff or not dry_run else "Missing",
                    diff=diff,
                    action=("applied" if live is None else "changed") if diff and not dry_run else "",
                    where=where,
                )
            )
        if wanted == current:
            return None, out
        load_settings(policy=wanted)  # a route or role config.toml also defines, an unknown fallback ...
        return wanted, out

    def _failed(self, state: GitOpsState, commit: Commit, head: str, exc: ShopfloorError) -> SyncResult:
        message = f"commit {commit.revision[:12]} not applied, the previous state is kept: {exc}"
        self.store.record(
            SyncRecord(
                repo=self.repo,
                revision=commit.revision,
                head=head,
                status="failed",
                actor=self.actor,
                message=message[:4000],
                changes=[],
                at=time.time(),
            )
        )
        self._audit("gitops.sync_failed", commit, outcome="failed", message=message[:1000])
        return SyncResult(
            repo=self.source.shown, revision=commit.revision, head=head, status="failed", message=message
        )

    def _inside(self, placed: Placed, rel: str, checkout: Path, what: str) -> Path:
        path = (placed.base / rel).resolve()
        if not path.is_relative_to(checkout.resolve()) or not path.is_dir():
            raise GitOpsError(f"{placed.where}: {what} {rel!r} is not a directory of the repository")
        return path

    def _skills(self, desired: DesiredState, checkout: Path, *, dry_run: bool) -> list[ObjectStatus]:
        """Publish the declared skills (signed, verified by this machine's trust policy; a version whose
        content changed is refused)."""
        out: list[ObjectStatus] = []
        if not desired.skills:
            return out
        registry = self.releases.services.skill_registry()
        try:
            for decl, placed in desired.skills:
                skill = open_skill(self._inside(placed, decl.path, checkout, "skill"), registry.policy)
                ref = f"{skill.name}@{skill.version}"
                published = {(s.version, s.digest) for s in registry.list(skill.name)}
                exists = (skill.version, skill.digest) in published
                if not dry_run and not exists:
                    registry.publish(skill.path)
                out.append(
                    ObjectStatus(
                        key=f"Skill/{ref}",
                        sync="Synced" if exists or not dry_run else "OutOfSync",
                        health="Healthy" if exists or not dry_run else "Missing",
                        diff=[] if exists else ["not published -> published"],
                        action="published" if not exists and not dry_run else "",
                        where=str(placed.where),
                    )
                )
        except (SkillError, SpecError) as exc:
            raise GitOpsError(f"{placed.where}: skill {decl.path!r}: {exc}") from exc
        finally:
            registry.close()
        return out

    def _releases(
        self, desired: DesiredState, checkout: Path, commit: Commit, *, dry_run: bool
    ) -> list[ObjectStatus]:
        out: list[ObjectStatus] = []
        for decl, placed in desired.releases:
            agent_dir = (placed.base / decl.agent).resolve()
            if not agent_dir.is_relative_to(checkout.resolve()) or not agent_dir.exists():
                raise GitOpsError(
                    f"{placed.where}: agent {decl.agent!r} is not a directory of the repository"
                )
            spec = self.releases.services.load_spec(agent_dir).spec
            version = decl.version or spec.version
            ref = f"{spec.name}@{version}"
            exists = self.releases.store.find(spec.name, version) is not None
            if dry_run or (exists and self.key is None):
                sync: SyncState = "Synced" if exists else "OutOfSync"
                out.append(
                    ObjectStatus(
                        key=f"Release/{ref}",
                        sync=sync,
                        health="Healthy" if exists else "Missing",
                        diff=[] if exists else ["not released -> released"],
                        where=str(placed.where),
                    )
                )
                continue
            if self.key is None:
                raise GitOpsError(f"{placed.where}: releasing {ref} needs a signing key (--key)")
            _, new = self.releases.create(agent_dir, key=self.key(), actor=self.actor, version=version)
            out.append(
                ObjectStatus(
                    key=f"Release/{ref}",
                    sync="Synced",
                    health="Healthy",
                    action="created" if new else "",
                    where=str(placed.where),
                )
            )
        return out

    def _health(self, agent: str, desired: dict[str, Any] | None) -> Health:
        if desired is None:
            return "Missing"
        try:
            for version in filter(None, (desired["stable"], desired["candidate"])):
                self.releases.check(self.releases.get(f"{agent}@{version}"))
        except ReleaseError:
            return "Degraded"
        return "Progressing" if desired["candidate"] else "Healthy"

    def _deployments(
        self,
        state: GitOpsState,
        desired: DesiredState,
        commit: Commit,
        head: str,
        pinned: bool,
        note: str,
        objects: list[ObjectStatus],
        dry_run: bool,
    ) -> SyncResult:
        changes: list[tuple[Deployment | None, Deployment | None]] = []
        actions: list[dict[str, Any]] = []
        now = time.time()
        managed: dict[str, dict[str, Any]] = {}
        for agent, (decl, placed) in sorted(desired.deployments.items()):
            want = managed[agent] = _declared(decl)
            for version in filter(None, (want["stable"], want["candidate"])):
                if not dry_run and self.releases.store.find(agent, version) is None:
                    raise_at = (
                        f"{placed.where}: {agent}@{version} is not released; declare it under releases:"
                    )
                    return self._failed(state, commit, head, GitOpsError(raise_at))
            live_row = self.releases.store.deployment(agent)
            live = _live(live_row)
            diff = _diff(live, want)
            drift = bool(diff) and live is not None and state.managed.get(agent) == want
            action = ""
            if diff and (self.self_heal or not drift):
                action = "healed" if drift else "deployed"
                after = Deployment(
                    agent=agent,
                    stable=want["stable"],
                    candidate=want["candidate"],
                    canary=want["canary"],
                    candidate_since=(
                        live_row.candidate_since
                        if live_row is not None and live_row.candidate == want["candidate"]
                        else (now if want["candidate"] else None)
                    ),
                )
                changes.append((live_row, after))
                actions.append({"object": f"Deployment/{agent}", "action": action, "diff": diff})
            synced = not diff or (bool(action) and not dry_run)
            objects.append(
                ObjectStatus(
                    key=f"Deployment/{agent}",
                    sync="Synced" if synced else "OutOfSync",
                    health=self._health(agent, want if synced else live),
                    diff=diff + (["drift: changed outside git"] if drift else []),
                    action="" if dry_run else action,
                    where=str(placed.where),
                )
            )
        for agent in sorted(set(state.managed) - set(desired.deployments)):
            live_row = self.releases.store.deployment(agent)
            if live_row is None:
                continue
            if self.prune:
                changes.append((live_row, None))
                actions.append({"object": f"Deployment/{agent}", "action": "pruned", "diff": ["removed"]})
            else:
                managed[agent] = state.managed[agent]  # still ours: a later sync with --prune removes it
            objects.append(
                ObjectStatus(
                    key=f"Deployment/{agent}",
                    sync="Synced" if self.prune and not dry_run else "OutOfSync",
                    health="Missing" if self.prune and not dry_run else self._health(agent, _live(live_row)),
                    diff=[
                        "deleted from git" + ("" if self.prune else " (pruning is off: --prune removes it)")
                    ],
                    action="pruned" if self.prune and not dry_run else "",
                )
            )
        created = [o.key for o in objects if o.action in ("created", "published")]
        changed = bool(changes) or bool(created) or state.applied != commit.revision
        status = "planned" if dry_run else ("synced" if changed else "unchanged")
        message = note or (f"{len(actions)} deployment change(s), {len(created)} release(s) created")
        result = SyncResult(
            repo=self.source.shown,
            revision=commit.revision,
            head=head,
            status=status,
            message=message,
            objects=objects,
            pinned=pinned,
        )
        if dry_run:
            return result
        new_state = replace(
            state,
            applied=commit.revision,
            managed=managed,
            pinned=state.pinned if pinned else None,
            pinned_head=state.pinned_head if pinned else None,
        )
        record = SyncRecord(
            repo=self.repo,
            revision=commit.revision,
            head=head,
            status=status,
            actor=self.actor,
            message=message,
            changes=actions
            + [
                {"object": o.key, "action": o.action} for o in objects if o.action in ("created", "published")
            ],
            at=now,
        )

        def bookkeeping(conn: sa.Connection) -> None:
            self.store.write_state(conn, new_state)
            self.store.write_record(conn, record)

        reason = f"gitops {self.source.shown} at {commit.revision[:12]} ({commit.author}: {commit.subject})"
        self.releases.store.save_all(
            changes, action="gitops", reason=reason[:500], actor=self.actor, also=bookkeeping
        )
        for item in actions:
            kind = "gitops.drift_healed" if item["action"] == "healed" else f"gitops.{item['action']}"
            self._audit(kind, commit, object=item["object"], diff=item["diff"])
        if changed:
            self._audit("gitops.synced", commit, message=message, pinned=pinned)
        return result

    # rollback and history --------------------------------------------------------------------
    def rollback(self, to: str | None = None) -> SyncResult:
        """Apply an earlier revision (``to``, or the one applied before the current) and hold it until
        the repository's head moves on."""
        head = self.source.fetch()
        state = self.store.state(self.repo, self.source.shown)
        if to is not None:
            target = self.source.resolve(to)
        else:
            applied = [
                r.revision for r in self.store.history(self.repo) if r.status in ("synced", "unchanged")
            ]
            earlier = [r for r in applied if r and r != state.applied]
            if not earlier:
                raise GitOpsError(f"{self.source.shown} has no earlier applied revision; name one with --to")
            target = earlier[0]
        self.store.save_state(replace(state, pinned=target, pinned_head=head))
        self._audit("gitops.rollback", self.source.commit(target), head=head)
        return self.sync()

    def history(self, limit: int = 100) -> list[SyncRecord]:
        return self.store.history(self.repo, limit=limit)

    def _audit(
        self, kind: str, commit: Commit, *, outcome: Literal["ok", "failed"] = "ok", **details: Any
    ) -> None:
        self.releases.audit.append(
            kind,
            actor=self.actor,
            outcome=outcome,
            resource=f"gitops/{self.source.shown}",
            details={
                "revision": commit.revision,
                "author": commit.author,
                "subject": commit.subject,
                **details,
            },
        )

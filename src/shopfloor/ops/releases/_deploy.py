"""Deployments: which release serves new runs of an agent, canaries, promotion and rollback.

A deployment names a stable release and, during a canary, a candidate that takes ``canary`` percent of
callers. The split is sticky: a caller's bucket is a hash of the agent and the caller's id, so one caller
keeps landing on the same release while the canary lasts. A run records the release and track it started
on (and its spec path and digest), so a run in flight finishes on it whatever the deployment does next.

``evaluate`` compares the candidate's runs (completion, fault and timeout rates, p50 latency, feedback
and, where a judge is configured, the judged quality of sampled answers, ``_quality.py``) with the
stable release's since the canary started: it rolls the candidate back as soon as it has enough runs
and does worse beyond a threshold, promotes it once it has held for the configured window, and
otherwise waits. A candidate that fails the gates of an evaluation finished since the canary began
(``shopfloor eval run SUITE --agent NAME@VERSION``, looked up through ``Services.evaluations``) is
rolled back whatever its live metrics. Every change is written with its reason in the deployment's
history and the audit log.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import statistics
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shopfloor.config import ReleaseSettings
from shopfloor.errors import DeploymentError, ReleaseError
from shopfloor.ops.releases._quality import QualityJudge
from shopfloor.ops.releases._release import Release, split_ref
from shopfloor.ops.releases._releases import Releases
from shopfloor.ops.releases._store import Deployment, DeploymentEvent, Feedback
from shopfloor.runtime import RoutedRun, RunRecord, RunStore, Services, Track

__all__ = [
    "CANARY_EVALUATOR",
    "Decision",
    "DeploymentRouter",
    "Deployments",
    "ReleaseMetrics",
    "bucket",
    "failed_gates",
    "judge",
    "release_metrics",
]


logger = logging.getLogger("shopfloor.ops.releases")
#: who the audit log names for what a server's own canary evaluation decides
CANARY_EVALUATOR = "system:canary-evaluator"


def bucket(agent: str, caller: str) -> int:
    """The caller's canary bucket for ``agent``, 0..99 (the same on every machine and every run)."""
    return int(hashlib.sha256(f"{agent}\0{caller}".encode()).hexdigest()[:8], 16) % 100


@dataclass(frozen=True, kw_only=True)
class ReleaseMetrics:
    release: str
    #: the release's side of its deployment (None: it is neither stable nor the candidate now)
    track: Track | None
    runs: int
    completed: int
    faulted: int
    timed_out: int
    p50_latency: float | None
    feedback_count: int
    feedback_mean: float | None
    #: sampled answers a judge graded, and their mean score (0..1)
    judged_count: int = 0
    quality_mean: float | None = None

    @property
    def completion_rate(self) -> float:
        return self.completed / self.runs if self.runs else 0.0

    @property
    def fault_rate(self) -> float:
        return self.faulted / self.runs if self.runs else 0.0

    @property
    def timeout_rate(self) -> float:
        return self.timed_out / self.runs if self.runs else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            "completion_rate": round(self.completion_rate, 4),
            "fault_rate": round(self.fault_rate, 4),
            "timeout_rate": round(self.timeout_rate, 4),
        }


def _faulted(run: RunRecord) -> bool:
    return run.status == "failed" or any(f.get("error") for f in run.faults.values())


def _timed_out(run: RunRecord) -> bool:
    return run.stop_reason in ("step_timeout", "wall_time") or any(
        f.get("timeout") for f in run.faults.values()
    )


def release_metrics(
    release: str,
    runs: list[RunRecord],
    feedback: list[Feedback],
    *,
    track: Track | None = None,
    scores: list[float] | None = None,
) -> ReleaseMetrics:
    """The metrics of one release from its ended runs, their feedback and the judged ``scores``."""
    ended = [run for run in runs if run.done]
    latencies = [
        run.finished_at - (run.started_at or run.created_at) for run in ended if run.finished_at is not None
    ]
    ratings = [item.rating for item in feedback]
    scores = scores or []
    return ReleaseMetrics(
        release=release,
        track=track,
        runs=len(ended),
        completed=sum(run.status == "completed" for run in ended),
        faulted=sum(_faulted(run) for run in ended),
        timed_out=sum(_timed_out(run) for run in ended),
        p50_latency=statistics.median(latencies) if latencies else None,
        feedback_count=len(ratings),
        feedback_mean=statistics.fmean(ratings) if ratings else None,
        judged_count=len(scores),
        quality_mean=statistics.fmean(scores) if scores else None,
    )


@dataclass(frozen=True, kw_only=True)
class Decision:
    agent: str
    action: Literal["promote", "rollback", "wait", "none"]
    reason: str
    stable: ReleaseMetrics | None = None
    candidate: ReleaseMetrics | None = None
    deployment: Deployment | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "action": self.action,
            "reason": self.reason,
            "problems": self.problems,
            "stable": self.stable.to_json() if self.stable else None,
            "candidate": self.candidate.to_json() if self.candidate else None,
            "deployment": self.deployment.to_json() if self.deployment else None,
        }


def judge(stable: ReleaseMetrics, candidate: ReleaseMetrics, limits: ReleaseSettings) -> list[str]:
    """What the candidate does worse than stable beyond the limits (empty: it holds)."""
    problems = []
    if stable.completion_rate - candidate.completion_rate > limits.max_completion_drop:
        problems.append(
            f"completion rate {candidate.completion_rate:.1%} against stable's {stable.completion_rate:.1%}"
        )
    if candidate.fault_rate - stable.fault_rate > limits.max_fault_increase:
        problems.append(f"fault rate {candidate.fault_rate:.1%} against stable's {stable.fault_rate:.1%}")
    if candidate.timeout_rate - stable.timeout_rate > limits.max_timeout_increase:
        problems.append(
            f"timeout rate {candidate.timeout_rate:.1%} against stable's {stable.timeout_rate:.1%}"
        )
    if (
        stable.p50_latency
        and candidate.p50_latency is not None
        and candidate.p50_latency / stable.p50_latency > limits.max_latency_ratio
    ):
        problems.append(
            f"p50 latency {candidate.p50_latency:.2f}s against stable's {stable.p50_latency:.2f}s"
        )
    if (
        stable.feedback_mean is not None
        and candidate.feedback_mean is not None
        and stable.feedback_mean - candidate.feedback_mean > limits.max_feedback_drop
    ):
        problems.append(
            f"mean feedback {candidate.feedback_mean:+.2f} against stable's {stable.feedback_mean:+.2f}"
        )
    if (
        stable.quality_mean is not None
        and candidate.quality_mean is not None
        and min(stable.judged_count, candidate.judged_count) >= limits.min_judged
        and stable.quality_mean - candidate.quality_mean > limits.max_quality_drop
    ):
        problems.append(
            f"judged quality {candidate.quality_mean:.2f} against stable's {stable.quality_mean:.2f} "
            f"({candidate.judged_count} and {stable.judged_count} sampled answers)"
        )
    return problems


def failed_gates(evaluations: list[dict[str, Any]], *, since: float = 0.0) -> list[str]:
    """``SUITE (EVAL_ID)`` of each evaluation (finished since ``since``) whose gates failed."""
    return [
        f"{e.get('suite')} ({str(e.get('eval_id'))[:12]})"
        for e in evaluations
        if (e.get("summary") or {}).get("gates_passed") is False and (e.get("finished_at") or 0.0) >= since
    ]


class Deployments:
    """Blocking, like ``Releases`` (which it uses for the registry, the store and the audit log)."""

    def __init__(self, releases: Releases) -> None:
        self.releases = releases
        self.store = releases.store
        self.limits = releases.settings.releases
        self.quality = QualityJudge(releases.services, releases.store, self.limits)

    # reading ---------------------------------------------------------------------------------
    def get(self, agent: str) -> Deployment:
        deployment = self.store.deployment(agent)
        if deployment is None:
            raise DeploymentError(f"agent {agent!r} is not deployed; `shopfloor deploy {agent}@VERSION`")
        return deployment

    def list_deployments(self) -> list[Deployment]:
        return self.store.deployments()

    def history(self, agent: str) -> list[DeploymentEvent]:
        return self.store.history(agent)

    def pick(self, agent: str, caller: str) -> tuple[Release, Track] | None:
        """The release serving a new run of ``agent`` for ``caller``, checked, and its track."""
        deployment = self.store.deployment(agent)
        if deployment is None:
            return None
        track: Track = "stable"
        version = deployment.stable
        if deployment.candidate is not None and bucket(agent, caller) < deployment.canary:
            track, version = "candidate", deployment.candidate
        release = self.releases.get(f"{agent}@{version}")
        self.releases.check(release)
        return release, track

    # changing --------------------------------------------------------------------------------
    def _verified(self, ref: str) -> Release:
        release, _ = self.releases.verify(ref)
        return release

    def _audit(self, kind: str, deployment: Deployment, *, actor: str, reason: str, **details: Any) -> None:
        self.releases.audit.append(
            kind,
            actor=actor,
            resource=f"deployments/{deployment.agent}",
            details={
                "stable": deployment.stable,
                "candidate": deployment.candidate,
                "canary": deployment.canary,
                "reason": reason,
                **details,
            },
        )

    def deploy(
        self,
        ref: str,
        *,
        actor: str,
        canary: int | None = None,
        reason: str = "",
        ignore_gates: bool = False,
    ) -> Deployment:
        """Serve ``NAME@VERSION`` to every new run, or (``canary``) to that percentage of callers. A release
        whose attached evaluation failed a gate is refused unless ``ignore_gates`` (then audited)."""
        name, version = split_ref(ref)
        if version is None:
            raise DeploymentError(
                f"deploy {ref!r}: name the version, NAME@VERSION (see `shopfloor release ls {name}`)"
            )
        release = self._verified(ref)
        failed = failed_gates(release.evaluations)
        if failed and not ignore_gates:
            raise DeploymentError(
                f"{ref} failed the gates of its evaluation {', '.join(failed)}; fix the agent and release "
                "it again, or deploy with --ignore-gates (audited)"
            )
        before = self.store.deployment(name)
        if canary is not None and not 0 < canary < 100:
            raise DeploymentError(f"--canary {canary}: a percentage of callers between 1 and 99")
        if canary is None:
            after = Deployment(agent=name, stable=release.version, updated_by=actor)
            action = "deploy"
        elif before is None:
            raise DeploymentError(
                f"{name} has no stable release to canary against; deploy one first: `shopfloor deploy {ref}`"
            )
        elif before.stable == release.version:
            raise DeploymentError(f"{ref} is already the stable release of {name}")
        else:
            after = replace(
                before,
                candidate=release.version,
                canary=canary,
                candidate_since=time.time(),
                updated_by=actor,
            )
            action = "canary"
        reason = reason or f"{action} {ref}" + (f" to {canary}% of callers" if canary else "")
        saved = self.store.save(before, after, action=action, reason=reason)
        self._audit(f"release.{action}", saved, actor=actor, reason=reason, release=ref, failed_gates=failed)
        return saved

    def promote(self, agent: str, *, actor: str, reason: str) -> Deployment:
        before = self.get(agent)
        if before.candidate is None:
            raise DeploymentError(f"{agent} has no candidate to promote")
        after = replace(
            before, stable=before.candidate, candidate=None, canary=0, candidate_since=None, updated_by=actor
        )
        saved = self.store.save(before, after, action="promote", reason=reason)
        self._audit("release.promoted", saved, actor=actor, reason=reason, release=f"{agent}@{after.stable}")
        return saved

    def rollback(self, agent: str, *, actor: str, to: str | None = None, reason: str = "") -> Deployment:
        """End the canary (stable serves everyone); without one, go back to the previous stable release
        (or ``to``)."""
        before = self.get(agent)
        if before.candidate is not None and to is None:
            after = replace(before, candidate=None, canary=0, candidate_since=None, updated_by=actor)
            reason = reason or f"canary {agent}@{before.candidate} rolled back"
        else:
            target = to or self._previous_stable(agent, before.stable)
            self._verified(f"{agent}@{target}")
            after = Deployment(agent=agent, stable=target, updated_by=actor)
            reason = reason or f"rolled back from {agent}@{before.stable} to {agent}@{target}"
        saved = self.store.save(before, after, action="rollback", reason=reason)
        self._audit("release.rolled_back", saved, actor=actor, reason=reason, previous=before.to_json())
        return saved

    def _previous_stable(self, agent: str, current: str) -> str:
        for event in self.store.history(agent):
            if event.stable != current:
                return event.stable
        raise DeploymentError(
            f"{agent} has had no stable release before {agent}@{current}; name one with --to VERSION"
        )

    # judging ---------------------------------------------------------------------------------
    def metrics(self, agent: str, version: str, *, since: float, grade: bool = False) -> ReleaseMetrics:
        """The metrics of the runs started on ``agent@version`` since ``since``; with ``grade``, the
        sampled answers not judged yet are judged first (the judged scores are otherwise only read)."""
        release = self.releases.get(f"{agent}@{version}")
        runs = RunStore(self.store.engine, owns_engine=False).by_release(agent, release.ref, since=since)
        feedback = self.store.feedback(agent=agent, release=release.ref, since=since)
        deployment = self.store.deployment(agent)
        track: Track | None = None
        if deployment is not None and version == deployment.stable:
            track = "stable"
        elif deployment is not None and version == deployment.candidate:
            track = "candidate"
        scores = self.quality.scores(release.ref, runs, grade=grade)
        return release_metrics(release.ref, runs, feedback, track=track, scores=scores)

    def evaluate(self, agent: str, *, actor: str, now: float | None = None, apply: bool = True) -> Decision:
        """Compare the candidate with stable; promote or roll back (when ``apply``) with the reason."""
        deployment = self.get(agent)
        if deployment.candidate is None:
            return Decision(agent=agent, action="none", reason="no canary in progress", deployment=deployment)
        now = time.time() if now is None else now
        # Side by side: both releases' runs since the canary started.
        since = deployment.candidate_since or 0.0
        stable = self.metrics(agent, deployment.stable, since=since, grade=True)
        candidate = self.metrics(agent, deployment.candidate, since=since, grade=True)
        decide = functools.partial(Decision, agent=agent, stable=stable, candidate=candidate)
        gates = self._gates_failed_since(agent, deployment.candidate, since)
        if gates:
            problems = [f"its evaluation failed the gates: {', '.join(gates)}"]
            reason = f"candidate {agent}@{deployment.candidate} rolled back: {problems[0]}"
            if apply:
                deployment = self.rollback(agent, actor=actor, reason=reason)
            return decide(action="rollback", reason=reason, deployment=deployment, problems=problems)
        if candidate.runs < self.limits.min_runs:
            reason = f"{candidate.runs} of the {self.limits.min_runs} candidate runs needed so far"
            return decide(action="wait", reason=reason, deployment=deployment)
        problems = judge(stable, candidate, self.limits)
        if problems:
            reason = f"candidate {agent}@{deployment.candidate} rolled back: " + "; ".join(problems)
            if apply:
                deployment = self.rollback(agent, actor=actor, reason=reason)
            return decide(action="rollback", reason=reason, deployment=deployment, problems=problems)
        judged = min(stable.judged_count, candidate.judged_count)
        if self.quality.judge is not None and judged < self.limits.min_judged:
            reason = (
                f"the candidate holds; {judged} of the {self.limits.min_judged} judged answers of each "
                "release needed so far"
            )
            return decide(action="wait", reason=reason, deployment=deployment, problems=problems)
        age = now - (deployment.candidate_since or now)
        if age < self.limits.window:
            reason = f"the candidate holds; {self.limits.window - age:.0f}s of its window left"
            return decide(action="wait", reason=reason, deployment=deployment, problems=problems)
        reason = (
            f"candidate {agent}@{deployment.candidate} promoted: {candidate.runs} runs held against stable "
            f"for {self.limits.window:.0f}s"
        )
        if apply:
            deployment = self.promote(agent, actor=actor, reason=reason)
        return decide(action="promote", reason=reason, deployment=deployment, problems=problems)

    def _gates_failed_since(self, agent: str, version: str, since: float) -> list[str]:
        find = self.releases.services.evaluations
        if find is None:
            return []
        release = self.releases.get(f"{agent}@{version}")
        return failed_gates(find(self.releases.services, release.agent_digest), since=since)

    def evaluate_all(self, *, actor: str) -> list[Decision]:
        """``evaluate`` every deployment with a canary (what a server does every
        ``releases.evaluate_every`` seconds). A deployment another process changed meanwhile is
        left to the next round (the change is compare-and-set)."""
        decisions = []
        for deployment in self.store.deployments():
            if deployment.candidate is None:
                continue
            try:
                decisions.append(self.evaluate(deployment.agent, actor=actor))
            except DeploymentError as exc:
                logger.warning("canary of %s not evaluated: %s", deployment.agent, exc)
        return decisions

    # feedback --------------------------------------------------------------------------------
    def feedback(
        self, run: RunRecord, *, author: str, rating: int, comment: str = "", correction: str | None = None
    ) -> Feedback:
        """Record ``author``'s rating of a run (-1 or 1), with the release it ran; audited."""
        if rating not in (-1, 1):
            raise DeploymentError(f"rating {rating}: give -1 (bad) or 1 (good)")
        if len(comment) > 10_000 or (correction is not None and len(correction) > 100_000):
            raise DeploymentError("feedback: the comment may hold 10,000 characters, the correction 100,000")
        if run.release is not None:
            ref = run.release
        else:  # a run that names no release: the release with its files, where there is one
            release = self.store.by_agent_digest(run.release_digest)
            ref = release.ref if release is not None and release.name == run.agent else ""
        item = Feedback(
            run_id=run.run_id,
            author=author,
            agent=run.agent,
            release=ref,
            rating=rating,
            comment=comment,
            correction=correction,
            at=time.time(),
        )
        self.store.add_feedback(item)
        self.releases.audit.append(
            "run.feedback",
            actor=author,
            resource=f"runs/{run.run_id}",
            details={"rating": rating, "release": item.release, "corrected": correction is not None},
        )
        return item


class DeploymentRouter:
    """The ``RunRouter`` entry points hand to ``compose``: the release the deployment of ``agent`` picks
    for ``caller``, checked (signature, pins) and materialised; None where the agent is not deployed.

    It keeps one ``Deployments`` per ``Services`` it serves (their tables are made once, not at every
    run start); an instance belongs to the process that composed it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, tuple[weakref.ref[Services], Deployments]] = {}

    def _deployments(self, services: Services) -> Deployments:
        with self._lock:
            entry = self._open.get(id(services))
            if entry is None or entry[0]() is not services:
                entry = (weakref.ref(services), Deployments(Releases(services)))
                self._open[id(services)] = entry
            return entry[1]

    def __call__(self, services: Services, agent: str, caller: str) -> RoutedRun | None:
        deployments = self._deployments(services)
        picked = deployments.pick(agent, caller)
        if picked is None:
            return None
        release, track = picked
        try:
            path = deployments.releases.materialise(release)
        except ReleaseError as exc:
            raise ReleaseError(f"{exc} (refused: new runs of {agent} cannot start on it)") from exc
        return RoutedRun(spec_path=str(path), digest=release.agent_digest, release=release.ref, track=track)

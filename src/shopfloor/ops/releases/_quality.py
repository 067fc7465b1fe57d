"""Judged quality on sampled runs, a canary metric beside completion, faults, latency and feedback.

Each release's completed runs are ranked by a hash of their id and the first ``judge_sample`` share of
them (at least ``min_judged``) are graded by the services' ``RunJudge`` (the evaluation layer's judge,
handed to ``compose``). The ranking does not depend on when a run ended, so the sample is the same on
every machine and at every evaluation; a grade is kept (``shopfloor_run_judgements``) and never asked
for twice, and at most ``judge_max_per_round`` runs are graded per release and evaluation, so one
evaluation's model calls are bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Sequence

from shopfloor.config import ReleaseSettings
from shopfloor.ops.releases._store import ReleaseStore
from shopfloor.runtime import RunJudge, RunJudgement, RunRecord, Services

__all__ = ["QualityJudge", "judged_sample"]

logger = logging.getLogger("shopfloor.ops.releases")
#: judge calls in flight at once
_CONCURRENCY = 4


def _rank(run: RunRecord) -> str:
    return hashlib.sha256(run.run_id.encode()).hexdigest()


def judged_sample(runs: Sequence[RunRecord], *, share: float, least: int) -> list[RunRecord]:
    """The completed runs of ``runs`` whose answers are judged: ``share`` of them, at least ``least``."""
    completed = sorted((run for run in runs if run.status == "completed"), key=_rank)
    return completed[: min(len(completed), max(least, math.ceil(share * len(completed))))]


class QualityJudge:
    """The judged scores of one release's runs, grading the sampled runs not graded yet. Blocking (it
    runs the judge's calls on an event loop of its own), like ``Deployments``."""

    def __init__(self, services: Services, store: ReleaseStore, limits: ReleaseSettings) -> None:
        self.judge: RunJudge | None = services.run_judge if limits.judge_model else None
        self.services = services
        self.store = store
        self.limits = limits

    def scores(self, release: str, runs: Sequence[RunRecord], *, grade: bool) -> list[float]:
        """The scores of the judged runs among ``runs``; with ``grade``, sampled runs not judged yet are
        judged first (``judge_max_per_round`` at most)."""
        known = self.store.judgements(release)
        if grade and self.judge is not None:
            sample = judged_sample(runs, share=self.limits.judge_sample, least=self.limits.min_judged)
            todo = [run for run in sample if run.run_id not in known][: self.limits.judge_max_per_round]
            if todo:
                made = asyncio.run(self._grade(self.judge, todo))
                self.store.add_judgements(release, made)
                known.update({judgement.run_id: judgement.score for judgement in made})
        return [known[run.run_id] for run in runs if run.run_id in known]

    async def _grade(self, judge: RunJudge, runs: list[RunRecord]) -> list[RunJudgement]:
        slots = asyncio.Semaphore(_CONCURRENCY)

        async def one(run: RunRecord) -> RunJudgement | None:
            async with slots:
                try:
                    made = await judge.judge(self.services, run)
                except Exception as exc:  # any judge failure: this run is graded at a later evaluation
                    logger.warning("run %s not judged: %s: %s", run.run_id, type(exc).__name__, exc)
                    return None
            if not 0.0 <= made.score <= 1.0 or made.run_id != run.run_id:
                logger.warning("run %s not judged: the judge gave %r", run.run_id, made.score)
                return None
            return made

        return [made for made in await asyncio.gather(*(one(run) for run in runs)) if made is not None]

"""What the evaluation layer lends a canary (``ops.releases``, which does not import this layer; entry
points hand both to ``runtime.compose``): the judge of live runs, grading sampled answers of both
releases with the ``judged`` scorer, ``[releases] judge_model`` and ``judge_rubric``; and the finished
evaluations of an agent digest, whose gates a candidate must pass."""

from __future__ import annotations

from typing import Any

from shopfloor.errors import ConfigError
from shopfloor.evals._custom import JudgedOptions, JudgedScorer
from shopfloor.evals._dataset import Item
from shopfloor.evals._scorer import Case, ScorerEnv
from shopfloor.evals._store import EvalStore
from shopfloor.runtime import RunJudge, RunJudgement, RunRecord, Services

__all__ = ["RunQualityJudge", "finished_evaluations"]

#: the newest evaluations looked through for an agent digest
MAX_EVALUATIONS = 500


def finished_evaluations(services: Services, digest: str) -> list[dict[str, Any]]:
    """The finished evaluations of agent digest ``digest`` (what a release carries, and what a canary's
    candidate is checked on), newest first."""
    store = EvalStore(services.engines.get(services.settings.db_url))
    return [
        {
            "eval_id": e.eval_id,
            "suite": e.suite,
            "suite_digest": e.suite_digest,
            "dataset_digest": e.dataset_digest,
            "status": e.status,
            "summary": e.summary,
            "finished_at": e.finished_at,
        }
        for e in store.list_evals(limit=MAX_EVALUATIONS)
        if e.agent_digest == digest and e.finished_at is not None
    ]


#: what is kept of the judge's reply beside its score
MAX_REPLY_CHARS = 4_000


class RunQualityJudge(RunJudge):
    """A model grades a finished run's answer to its task, 1 to 5, with the configured rubric; the score
    is normalised to 0..1 (``judged``'s own scale)."""

    async def judge(self, services: Services, run: RunRecord) -> RunJudgement:
        limits = services.settings.releases
        if limits.judge_model is None:
            raise ConfigError("[releases] judge_model is not set: name the model that grades canary runs")
        options = JudgedOptions.model_validate({"model": limits.judge_model, "rubric": limits.judge_rubric})
        env = ScorerEnv(base_dir=services.settings.home, settings=services.settings, models=services.models)
        case = Case(
            item=Item(id=run.run_id, input=run.task),
            run_id=run.run_id,
            status=run.status,
            output=run.output,
            stop_reason=run.stop_reason,
            error=run.error,
            steps=run.steps,
        )
        [metric] = await JudgedScorer("judged", options, env).score(case)
        assert metric.value is not None  # (the judged scorer always gives one)
        return RunJudgement(
            run_id=run.run_id,
            score=metric.value,
            judge=limits.judge_model,
            reply=str(metric.detail.get("reply", ""))[:MAX_REPLY_CHARS],
        )

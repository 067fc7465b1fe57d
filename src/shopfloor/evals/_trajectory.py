"""Scorers of how a run went, from what it recorded: its tool calls, what it retrieved, its costs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shopfloor.evals._scorer import Case, Metric, ScoreOptions, Scorer

__all__ = ["OperationalScorer", "RetrievalScorer", "TrajectoryScorer"]


class ExpectedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: str
    #: these arguments (a subset of the call's; nested mappings compared the same way)
    args: dict[str, Any] = Field(default_factory=dict)


class TrajectoryOptions(ScoreOptions):
    #: tools that must be called: in this order (``sequence``, others may come between), or in any order
    tools: list[str] | None = None
    order: Literal["sequence", "set", "exact"] = "set"
    #: calls that must be made with at least these arguments
    calls: list[ExpectedCall] = Field(default_factory=list)
    max_steps: int | None = Field(None, ge=0)
    #: the run must have completed (default) or not
    completed: bool | None = True
    stop_reason: str | None = None
    #: tools that must never be called
    forbidden: list[str] = Field(default_factory=list)


def _subset(want: Any, got: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and _subset(v, got[k]) for k, v in want.items())
    return bool(want == got)


def _in_sequence(want: list[str], called: list[str]) -> bool:
    remaining = iter(called)
    return all(any(name == tool for tool in remaining) for name in want)


class TrajectoryScorer(Scorer):
    """The run's tool calls, steps and end against what the suite expects; 1 when every check holds."""

    Options = TrajectoryOptions

    async def score(self, case: Case) -> list[Metric]:
        opts = self.options
        assert isinstance(opts, TrajectoryOptions)
        called = [call.tool for call in case.calls]
        failed: list[str] = []
        if opts.tools is not None:
            ok = {
                "set": set(opts.tools) <= set(called),
                "sequence": _in_sequence(opts.tools, called),
                "exact": called == opts.tools,
            }[opts.order]
            if not ok:
                failed.append(f"tools ({opts.order}) {opts.tools}, called {called}")
        for want in opts.calls:
            if not any(c.tool == want.tool and _subset(want.args, c.arguments) for c in case.calls):
                failed.append(f"no call of {want.tool} with {want.args}")
        bad = sorted(set(opts.forbidden) & set(called))
        if bad:
            failed.append(f"forbidden tools called: {bad}")
        if opts.max_steps is not None and case.steps > opts.max_steps:
            failed.append(f"{case.steps} steps > {opts.max_steps}")
        if opts.completed is not None and case.completed != opts.completed:
            failed.append(f"status {case.status}")
        if opts.stop_reason is not None and case.stop_reason != opts.stop_reason:
            failed.append(f"stop reason {case.stop_reason}, expected {opts.stop_reason}")
        return [self.metric(0.0 if failed else 1.0, not failed, failed=failed, called=called)]


class RetrievalOptions(ScoreOptions):
    #: the tools whose outputs are the retrieved documents (default: every tool)
    tools: list[str] | None = None
    #: the key of a document's id in a tool's output
    id_key: str = "id"
    #: only the first K retrieved documents count
    k: int | None = Field(None, ge=1)


def _ids(value: Any, key: str) -> list[str]:
    """Document ids in a tool's output: ``{"ids": [...]}``, a list of ``{key: ...}``, or under
    ``documents``/``results``/``hits``."""
    if isinstance(value, dict):
        if isinstance(value.get("ids"), list):
            return [str(v) for v in value["ids"]]
        for name in ("documents", "results", "hits", "matches"):
            if isinstance(value.get(name), list):
                return _ids(value[name], key)
        return [str(value[key])] if key in value else []
    if isinstance(value, list):
        return [str(v[key]) for v in value if isinstance(v, dict) and key in v]
    return []


class RetrievalScorer(Scorer):
    """Precision, recall and MRR of the documents the agent retrieved against the item's gold ids
    (``reference``, or the ``expected`` field named by ``field``); an item with no gold ids has none."""

    Options = RetrievalOptions

    async def score(self, case: Case) -> list[Metric]:
        opts = self.options
        assert isinstance(opts, RetrievalOptions)
        gold_raw = (
            case.item.reference
            if opts.field is None and case.item.reference is not None
            else self.expected(case)
        )
        gold = {str(v) for v in (gold_raw if isinstance(gold_raw, list) else [gold_raw])}
        retrieved: list[str] = []
        for call in case.calls:
            if opts.tools is None or call.tool in opts.tools:
                # a document counts once, however many of its passages a call returned
                retrieved += [i for i in dict.fromkeys(_ids(call.output, opts.id_key)) if i not in retrieved]
        retrieved = retrieved[: opts.k] if opts.k else retrieved
        hits = [doc for doc in retrieved if doc in gold]
        if not gold:
            # nothing to find (a question answered without documents): not measured, left out of the means
            return [
                self.metric(None, None, sub, retrieved=retrieved) for sub in ("precision", "recall", "mrr")
            ]
        precision = len(hits) / len(retrieved) if retrieved else 0.0
        recall = len(hits) / len(gold)
        rank = next((n for n, doc in enumerate(retrieved, start=1) if doc in gold), None)
        mrr = 1.0 / rank if rank else 0.0
        return [
            self.metric(precision, None, "precision", retrieved=retrieved),
            self.metric(recall, recall == 1.0, "recall"),
            self.metric(mrr, rank == 1, "mrr"),
        ]


class OperationalOptions(ScoreOptions):
    #: an item passes a metric when it is at or below its limit here (latency, ttft, tokens, cost, faults)
    max: dict[Literal["latency", "ttft", "tokens", "cost", "faults"], float] = Field(default_factory=dict)


class OperationalScorer(Scorer):
    """Latency, time to first token, tokens, cost and faults of the item's run (its row and its spans)."""

    Options = OperationalOptions

    async def score(self, case: Case) -> list[Metric]:
        opts = self.options
        assert isinstance(opts, OperationalOptions)
        faults = sum(n for counts in case.faults.values() for n in counts.values())
        values: dict[str, float | None] = {
            "latency": case.latency,
            "ttft": case.ttft,
            "tokens": float(case.input_tokens + case.output_tokens),
            "cost": case.cost,
            "faults": float(faults),
        }
        metrics = []
        for sub, value in values.items():
            if value is None:  # not measured (no price for the model, no model call): no metric, not a miss
                continue
            limit = opts.max.get(sub)  # type: ignore[call-overload]
            passed = None if limit is None else value <= limit
            metrics.append(self.metric(value, passed, sub))
        return metrics

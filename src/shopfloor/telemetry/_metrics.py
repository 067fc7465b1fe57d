"""The agent metrics, computed from spans.

``span_facts`` reads what one span says (its component, whether it failed or
timed out, time to first token, tokens, sandbox and process usage); the live
OpenTelemetry metrics and ``compute_metrics`` (exact quantiles over stored spans,
for ``shopfloor metrics``) both aggregate these facts, so they agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from shopfloor.telemetry._conventions import (
    ERROR_TYPE,
    INPUT_TOKENS,
    OPERATION_NAME,
    OUTPUT_TOKENS,
    PROCESS_CPU,
    PROCESS_MEMORY,
    PROCESS_PID,
    PROVIDER_NAME,
    REQUEST_MODEL,
    RUN_STATUS,
    SANDBOX_CPU,
    SANDBOX_MEMORY,
    TIME_TO_FIRST_CHUNK,
    TOKENS_PER_SECOND,
)
from shopfloor.telemetry._records import SpanRecord

__all__ = [
    "ComponentStats",
    "Distribution",
    "MetricsReport",
    "Prices",
    "SpanFacts",
    "WorkerStats",
    "compute_metrics",
    "span_cost",
    "span_facts",
]

Outcome = Literal["ok", "fault", "timeout"]
#: model ref (``provider:name``) or model name -> USD per million input and output tokens
Prices = Mapping[str, tuple[float, float]]

_BY_OPERATION = {
    "invoke_agent": "run",
    "chat": "model",
    "text_completion": "model",
    "generate_content": "model",
    "embeddings": "model",
    "execute_tool": "tool",
    "retrieval": "retrieval",
}
_BY_PREFIX = (
    ("sandbox.", "sandbox"),
    ("workspace.", "workspace"),
    ("plan", "plan"),
    ("retrieval", "retrieval"),
    ("vector.", "vector"),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class SpanFacts:
    component: str | None
    outcome: Outcome
    duration: float
    model: str | None = None
    ttft: float | None = None
    tokens_per_second: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    run_status: str | None = None
    sandbox_cpu: float | None = None
    sandbox_memory: int | None = None
    pid: int | None = None
    process_cpu: float | None = None
    process_memory: int | None = None


def _component(span: SpanRecord) -> str | None:
    explicit = span.component
    if explicit is not None:
        return explicit
    attrs = span.attributes
    operation = attrs.get(OPERATION_NAME) or span.name.split(" ", 1)[0]
    if operation in _BY_OPERATION:
        return _BY_OPERATION[str(operation)]
    if "mcp.method.name" in attrs:
        return "mcp"
    if "db.system" in attrs or "db.system.name" in attrs:
        return "db"
    return next((component for prefix, component in _BY_PREFIX if span.name.startswith(prefix)), None)


def span_facts(span: SpanRecord) -> SpanFacts:
    attrs = span.attributes
    outcome: Outcome = "ok"
    if span.status == "error":
        outcome = "timeout" if attrs.get(ERROR_TYPE) == "timeout" else "fault"
    component = _component(span)
    is_model = component == "model"
    model = attrs.get(REQUEST_MODEL)
    return SpanFacts(
        component=component,
        outcome=outcome,
        duration=span.duration,
        model=f"{attrs.get(PROVIDER_NAME, '')}:{model}" if model is not None else None,
        ttft=attrs.get(TIME_TO_FIRST_CHUNK) if is_model else None,
        tokens_per_second=attrs.get(TOKENS_PER_SECOND) if is_model else None,
        input_tokens=int(attrs.get(INPUT_TOKENS, 0)) if is_model else 0,
        output_tokens=int(attrs.get(OUTPUT_TOKENS, 0)) if is_model else 0,
        run_status=attrs.get(RUN_STATUS) if component == "run" else None,
        sandbox_cpu=attrs.get(SANDBOX_CPU),
        sandbox_memory=attrs.get(SANDBOX_MEMORY),
        pid=attrs.get(PROCESS_PID),
        process_cpu=attrs.get(PROCESS_CPU),
        process_memory=attrs.get(PROCESS_MEMORY),
    )


def model_cost(model: str, input_tokens: int, output_tokens: int, prices: Prices) -> float | None:
    """USD that many tokens of ``model`` cost (its price by its full ref, or by the ref after its
    ``provider:`` prefix); None where it has no price."""
    price = prices.get(model) or prices.get(model.partition(":")[2])
    if price is None:
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6


def span_cost(span: SpanRecord, prices: Prices) -> float | None:
    """USD the model call cost, where its model has a price; None otherwise."""
    facts = span_facts(span)
    if facts.component != "model" or facts.model is None:
        return None
    return model_cost(facts.model, facts.input_tokens, facts.output_tokens, prices)


@dataclass(frozen=True, kw_only=True)
class Distribution:
    count: int
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        ordered = sorted(values)
        if not ordered:
            return cls(count=0)

        def rank(q: float) -> float:  # nearest rank: an observed value, exact on small samples
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        return cls(
            count=len(ordered),
            mean=sum(ordered) / len(ordered),
            p50=rank(0.5),
            p95=rank(0.95),
            max=ordered[-1],
        )


@dataclass(frozen=True, kw_only=True)
class ComponentStats:
    component: str
    calls: int
    faults: int
    timeouts: int
    latency: Distribution

    @property
    def fault_rate(self) -> float:
        """Failed calls (timeouts included) over calls."""
        return (self.faults + self.timeouts) / self.calls if self.calls else 0.0

    @property
    def timeout_rate(self) -> float:
        return self.timeouts / self.calls if self.calls else 0.0


@dataclass(frozen=True, kw_only=True)
class WorkerStats:
    pid: int
    runs: int
    cpu_seconds: float
    peak_memory_bytes: int


@dataclass(frozen=True, kw_only=True)
class MetricsReport:
    runs: int
    completed: int
    run_latency: Distribution
    ttft: Distribution
    tokens_per_second: Distribution
    input_tokens: int
    output_tokens: int
    cost_usd: float
    components: tuple[ComponentStats, ...]
    sandbox_cpu_seconds: Distribution
    sandbox_peak_memory_bytes: Distribution
    workers: tuple[WorkerStats, ...]

    @property
    def completion_rate(self) -> float:
        return self.completed / self.runs if self.runs else 0.0

    def component(self, name: str) -> ComponentStats | None:
        return next((c for c in self.components if c.component == name), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["completion_rate"] = self.completion_rate
        for stats, out in zip(self.components, data["components"], strict=True):
            out["fault_rate"] = stats.fault_rate
            out["timeout_rate"] = stats.timeout_rate
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricsReport:
        """The report ``to_dict`` gave (its derived rates dropped: they are recomputed)."""

        def dist(value: dict[str, Any]) -> Distribution:
            return Distribution(**value)

        return cls(
            runs=data["runs"],
            completed=data["completed"],
            run_latency=dist(data["run_latency"]),
            ttft=dist(data["ttft"]),
            tokens_per_second=dist(data["tokens_per_second"]),
            input_tokens=data["input_tokens"],
            output_tokens=data["output_tokens"],
            cost_usd=data["cost_usd"],
            components=tuple(
                ComponentStats(
                    component=c["component"],
                    calls=c["calls"],
                    faults=c["faults"],
                    timeouts=c["timeouts"],
                    latency=dist(c["latency"]),
                )
                for c in data["components"]
            ),
            sandbox_cpu_seconds=dist(data["sandbox_cpu_seconds"]),
            sandbox_peak_memory_bytes=dist(data["sandbox_peak_memory_bytes"]),
            workers=tuple(WorkerStats(**w) for w in data["workers"]),
        )


def compute_metrics(spans: Iterable[SpanRecord], *, prices: Prices | None = None) -> MetricsReport:
    prices = prices or {}
    latency: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}  # component -> [calls, faults, timeouts]
    runs: list[SpanFacts] = []
    ttft: list[float] = []
    tps: list[float] = []
    tokens = [0, 0]
    cost = 0.0
    sandbox_cpu: list[float] = []
    sandbox_memory: list[float] = []
    workers: dict[int, list[Any]] = {}  # pid -> [runs, cpu, memory]
    for span in spans:
        facts = span_facts(span)
        if facts.component is None:
            continue
        latency.setdefault(facts.component, []).append(facts.duration)
        count = counts.setdefault(facts.component, [0, 0, 0])
        count[0] += 1
        count[1] += facts.outcome == "fault"
        count[2] += facts.outcome == "timeout"
        if facts.component == "run":
            runs.append(facts)
            if facts.pid is not None:
                worker = workers.setdefault(facts.pid, [0, 0.0, 0])
                worker[0] += 1
                worker[1] = max(worker[1], facts.process_cpu or 0.0)
                worker[2] = max(worker[2], facts.process_memory or 0)
        if facts.ttft is not None:
            ttft.append(facts.ttft)
        if facts.tokens_per_second is not None:
            tps.append(facts.tokens_per_second)
        tokens[0] += facts.input_tokens
        tokens[1] += facts.output_tokens
        cost += span_cost(span, prices) or 0.0
        if facts.sandbox_cpu is not None:
            sandbox_cpu.append(facts.sandbox_cpu)
        if facts.sandbox_memory is not None:
            sandbox_memory.append(facts.sandbox_memory)
    return MetricsReport(
        runs=len(runs),
        completed=sum(1 for r in runs if r.run_status == "completed"),
        run_latency=Distribution.of(r.duration for r in runs),
        ttft=Distribution.of(ttft),
        tokens_per_second=Distribution.of(tps),
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_usd=cost,
        components=tuple(
            ComponentStats(
                component=name, calls=c[0], faults=c[1], timeouts=c[2], latency=Distribution.of(latency[name])
            )
            for name, c in sorted(counts.items())
        ),
        sandbox_cpu_seconds=Distribution.of(sandbox_cpu),
        sandbox_peak_memory_bytes=Distribution.of(sandbox_memory),
        workers=tuple(
            WorkerStats(pid=pid, runs=w[0], cpu_seconds=w[1], peak_memory_bytes=w[2])
            for pid, w in sorted(workers.items())
        ),
    )

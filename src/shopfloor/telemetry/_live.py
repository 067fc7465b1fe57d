"""Live OpenTelemetry metrics, recorded from finished spans, and the Prometheus text format.

Spans reach ``LiveMetrics.record`` in the trace store's export thread, so the
instruments cost a run nothing. ``prometheus_text`` renders the cumulative
values (what the gateway serves at ``/metrics``); OTLP metric exporters get the
same instruments when an OTLP endpoint is configured.
"""

from __future__ import annotations

import math
import os
import re
import resource
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from shopfloor.telemetry._metrics import span_facts
from shopfloor.telemetry._records import SpanRecord

__all__ = ["LiveMetrics", "process_usage", "render_prometheus"]

_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)
_RATES = (1, 5, 10, 20, 40, 80, 160, 320, 640)
_BYTES = tuple(float(2**n) for n in range(20, 36, 2))  # 1 MiB .. 32 GiB


def process_usage() -> tuple[float, int]:
    """This process's CPU seconds (user + system) and peak resident memory in bytes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024  # ru_maxrss is KiB on Linux


class LiveMetrics:
    """The agent metrics as OpenTelemetry instruments, fed with finished spans."""

    def __init__(self, *, resource: Resource | None = None, readers: Sequence[MetricReader] = ()) -> None:
        self.reader = InMemoryMetricReader()
        views = [
            View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(bounds))
            for name, bounds in (
                ("shopfloor.component.duration", _SECONDS),
                ("shopfloor.run.duration", _SECONDS),
                ("gen_ai.server.time_to_first_token", _SECONDS),
                ("gen_ai.client.token.usage", _TOKENS),
                ("shopfloor.model.tokens_per_second", _RATES),
                ("shopfloor.sandbox.cpu_time", _SECONDS),
                ("shopfloor.sandbox.peak_memory", _BYTES),
            )
        ]
        self.provider = MeterProvider(
            metric_readers=[self.reader, *readers], resource=resource or Resource.create({}), views=views
        )
        meter = self.provider.get_meter("shopfloor")
        self._duration = meter.create_histogram(
            "shopfloor.component.duration",
            unit="s",
            description="latency per component (plan, model, tool, sandbox...)",
        )
        self._calls = meter.create_counter(
            "shopfloor.component.calls", description="calls per component and outcome (ok, fault, timeout)"
        )
        self._runs = meter.create_counter("shopfloor.runs", description="finished runs by status")
        self._run_duration = meter.create_histogram(
            "shopfloor.run.duration", unit="s", description="end-to-end run latency"
        )
        self._ttft = meter.create_histogram(
            "gen_ai.server.time_to_first_token", unit="s", description="time to first token"
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="tokens per model call"
        )
        self._tps = meter.create_histogram(
            "shopfloor.model.tokens_per_second", unit="{token}/s", description="decode speed per model call"
        )
        self._sandbox_cpu = meter.create_histogram(
            "shopfloor.sandbox.cpu_time", unit="s", description="CPU time per sandbox exec"
        )
        self._sandbox_memory = meter.create_histogram(
            "shopfloor.sandbox.peak_memory", unit="By", description="peak memory per sandbox exec"
        )
        pid = {"process.pid": os.getpid()}
        meter.create_observable_counter(
            "process.cpu.time",
            [lambda _o: [Observation(process_usage()[0], pid)]],
            unit="s",
            description="CPU seconds of this worker process",
        )
        meter.create_observable_gauge(
            "process.memory.peak",
            [lambda _o: [Observation(process_usage()[1], pid)]],
            unit="By",
            description="peak resident memory of this worker process",
        )

    def record(self, spans: Iterable[SpanRecord]) -> None:
        for span in spans:
            facts = span_facts(span)
            if facts.component is None:
                continue
            labels = {"component": facts.component}
            self._duration.record(facts.duration, labels)
            self._calls.add(1, {**labels, "outcome": facts.outcome})
            if facts.component == "run":
                status = {"status": facts.run_status or "unknown"}
                self._runs.add(1, status)
                self._run_duration.record(facts.duration, status)
            if facts.component == "model":
                model = {"gen_ai.request.model": facts.model or ""}
                if facts.ttft is not None:
                    self._ttft.record(facts.ttft, model)
                if facts.tokens_per_second is not None:
                    self._tps.record(facts.tokens_per_second, model)
                self._tokens.record(facts.input_tokens, {**model, "gen_ai.token.type": "input"})
                self._tokens.record(facts.output_tokens, {**model, "gen_ai.token.type": "output"})
            if facts.sandbox_cpu is not None:
                self._sandbox_cpu.record(facts.sandbox_cpu)
            if facts.sandbox_memory is not None:
                self._sandbox_memory.record(facts.sandbox_memory)

    def prometheus_text(self) -> str:
        data = self.reader.get_metrics_data()
        return render_prometheus(data) if data is not None else ""

    def shutdown(self) -> None:
        self.provider.shutdown()


def _name(name: str, unit: str) -> str:
    base = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    suffix = {"s": "_seconds", "By": "_bytes"}.get(unit, "")
    return base if base.endswith(suffix) else base + suffix


def _labels(attributes: Any, extra: dict[str, str] | None = None) -> str:
    pairs = {re.sub(r"[^a-zA-Z0-9_]", "_", str(k)): str(v) for k, v in dict(attributes or {}).items()}
    pairs.update(extra or {})
    if not pairs:
        return ""
    escaped = (v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') for v in pairs.values())
    return "{" + ",".join(f'{k}="{v}"' for k, v in zip(pairs, escaped, strict=True)) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


def render_prometheus(data: MetricsData) -> str:
    """OpenTelemetry metrics as the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                name = _name(metric.name, metric.unit or "")
                points: Any = metric.data
                if isinstance(points, Sum):
                    kind = "counter" if points.is_monotonic else "gauge"
                    name = name + "_total" if kind == "counter" else name
                elif isinstance(points, Gauge):
                    kind = "gauge"
                elif isinstance(points, Histogram):
                    kind = "histogram"
                else:
                    continue
                lines.append(f"# HELP {name} {metric.description or metric.name}")
                lines.append(f"# TYPE {name} {kind}")
                for point in points.data_points:
                    if kind != "histogram":
                        lines.append(f"{name}{_labels(point.attributes)} {_number(point.value)}")
                        continue
                    cumulative = 0
                    bounds = [*point.explicit_bounds, math.inf]
                    for bound, count in zip(bounds, point.bucket_counts, strict=True):
                        cumulative += count
                        le = {"le": _number(bound) if math.isinf(bound) else repr(float(bound))}
                        lines.append(f"{name}_bucket{_labels(point.attributes, le)} {cumulative}")
                    lines.append(f"{name}_sum{_labels(point.attributes)} {_number(point.sum)}")
                    lines.append(f"{name}_count{_labels(point.attributes)} {point.count}")
    return "\n".join(lines) + "\n" if lines else ""

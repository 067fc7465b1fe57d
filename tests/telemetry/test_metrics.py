"""Metrics computed from spans: a scripted run with known timings and failures gives exact values."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tel_helpers import ADD, call, final

from shopfloor.agent import AgentLoop
from shopfloor.config import Settings
from shopfloor.errors import TelemetryError, ToolExecutionError
from shopfloor.models import FunctionModel, ModelRequest, ModelResponse, Usage
from shopfloor.spec import Limits
from shopfloor.telemetry import (
    Distribution,
    LiveMetrics,
    SpanRecord,
    Telemetry,
    compute_metrics,
    configure_telemetry,
    span_cost,
)
from shopfloor.tools import FunctionTool


def _response(reply: dict[str, Any], *, ttft: float, duration: float, out: int) -> ModelResponse:
    return ModelResponse(
        text=json.dumps(reply),
        model="m1",
        provider="function",
        usage=Usage(input_tokens=100, output_tokens=out, time_to_first_token=ttft, duration=duration),
    )


def _scripted_with_usage(*replies: tuple[dict[str, Any], float, float, int]) -> FunctionModel:
    remaining = list(replies)

    def reply(request: ModelRequest) -> ModelResponse:
        body, ttft, duration, out = remaining.pop(0)
        return _response(body, ttft=ttft, duration=duration, out=out)

    return FunctionModel(reply, name="m1")


async def test_scripted_run_gives_exact_ttft_tokens_and_rates(telemetry: Telemetry) -> None:
    calls = 0

    def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ToolExecutionError("first call fails")
        return x

    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        return x

    model = _scripted_with_usage(
        (call("flaky", x=1), 0.25, 1.25, 11),  # 10 tokens after the first in 1.0 s: 10 tok/s
        (call("flaky", x=2), 0.5, 2.5, 41),  # 40 in 2.0 s: 20 tok/s
        (call("slow", x=3), 0.75, 0.75, 1),  # one token: no decode rate
        (final("done"), 0.5, 1.5, 21),  # 20 in 1.0 s: 20 tok/s
    )
    loop = AgentLoop(
        model=model,
        tools=[FunctionTool(flaky), FunctionTool(slow)],
        limits=Limits(step_timeout=0.05),
        name="metered",
    )
    assert (await loop.run("t", run_id="m-1")).status == "completed"
    failing = AgentLoop(
        model=FunctionModel(lambda r: "not json", name="m1"), tools=[ADD], limits=Limits(max_retries=0)
    )
    assert (await failing.run("t", run_id="m-2")).status == "failed"
    telemetry.force_flush()

    report = compute_metrics(telemetry.store.spans(), prices={"function:m1": (1.0, 2.0)})
    assert report.runs == 2
    assert report.completed == 1
    assert report.completion_rate == 0.5
    assert report.ttft.count == 5  # four scripted replies and the failing run's one
    ttfts = [0.25, 0.5, 0.75, 0.5]
    scripted = compute_metrics(telemetry.store.run_spans("m-1"))
    assert scripted.ttft == Distribution(count=4, mean=sum(ttfts) / 4, p50=0.5, p95=0.75, max=0.75)
    assert scripted.tokens_per_second == Distribution(count=3, mean=50 / 3, p50=20.0, p95=20.0, max=20.0)
    assert (scripted.input_tokens, scripted.output_tokens) == (400, 74)
    assert scripted.cost_usd == 0.0  # no prices given
    priced = compute_metrics(telemetry.store.run_spans("m-1"), prices={"function:m1": (1.0, 2.0)})
    assert priced.cost_usd == (400 * 1.0 + 74 * 2.0) / 1e6

    tool = scripted.component("tool")
    assert tool is not None
    assert (tool.calls, tool.faults, tool.timeouts) == (3, 1, 1)
    assert tool.fault_rate == 2 / 3
    assert tool.timeout_rate == 1 / 3
    model_stats = scripted.component("model")
    assert model_stats is not None and (model_stats.calls, model_stats.faults) == (4, 0)
    plan = scripted.component("plan")
    assert plan is not None and plan.calls == 4

    failed_run = compute_metrics(telemetry.store.run_spans("m-2")).component("run")
    assert failed_run is not None and (failed_run.calls, failed_run.faults, failed_run.timeouts) == (1, 1, 0)
    assert [w.runs for w in report.workers] == [2]
    assert report.workers[0].cpu_seconds > 0 and report.workers[0].peak_memory_bytes > 0


def _span(name: str, start: float, end: float, **attrs: Any) -> SpanRecord:
    status = attrs.pop("status", "unset")
    return SpanRecord(
        trace_id="1" * 32,
        span_id=f"{abs(hash((name, start))) % 16**16:016x}",
        parent_span_id=None,
        name=name,
        start_ns=int(start * 1e9),
        end_ns=int(end * 1e9),
        status=status,
        attributes=attrs,
    )


def test_latencies_per_component_and_sandbox_usage_from_known_spans() -> None:
    spans = [
        _span(
            "sandbox.exec",
            0,
            0.1,
            **{"shopfloor.sandbox.cpu_seconds": 0.05, "shopfloor.sandbox.peak_memory_bytes": 1000},
        ),
        _span(
            "sandbox.exec",
            1,
            1.3,
            **{"shopfloor.sandbox.cpu_seconds": 0.25, "shopfloor.sandbox.peak_memory_bytes": 3000},
        ),
        _span("sandbox.exec", 2, 2.2, status="error", **{"error.type": "timeout"}),
        _span("retrieval docs", 0, 0.5, **{"gen_ai.operation.name": "retrieval"}),
        _span("SELECT runs", 0, 0.02, **{"db.system.name": "postgresql"}),
        _span("vector.query", 0, 0.04),
        _span("tools/call search", 0, 0.3, **{"mcp.method.name": "tools/call"}),
        _span("something else", 0, 1),
    ]
    report = compute_metrics(spans)
    sandbox = report.component("sandbox")
    assert sandbox is not None
    assert (sandbox.calls, sandbox.faults, sandbox.timeouts) == (3, 0, 1)
    assert sandbox.latency.p50 == 0.2 and sandbox.latency.max == 0.3
    assert report.sandbox_cpu_seconds == Distribution(count=2, mean=0.15, p50=0.05, p95=0.25, max=0.25)
    assert report.sandbox_peak_memory_bytes.max == 3000
    names = {c.component: c.latency.max for c in report.components}
    assert names == {"sandbox": 0.3, "retrieval": 0.5, "db": 0.02, "vector": 0.04, "mcp": 0.3}


def test_distribution_uses_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert Distribution.of(values) == Distribution(count=20, mean=10.5, p50=10.0, p95=19.0, max=20.0)
    assert Distribution.of([]) == Distribution(count=0)


def test_cost_uses_model_ref_or_name() -> None:
    chat = _span(
        "chat m",
        0,
        1,
        **{
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "m",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 500,
        },
    )
    assert span_cost(chat, {"openai:m": (2.0, 8.0)}) == (2000 + 4000) / 1e6
    assert span_cost(chat, {"m": (1.0, 1.0)}) == 1500 / 1e6
    assert span_cost(chat, {}) is None


async def test_live_metrics_render_prometheus_text(settings: Settings) -> None:
    with configure_telemetry(settings, live_metrics=True) as telemetry:
        loop = AgentLoop(model=_scripted_with_usage((final("x"), 0.5, 1.0, 6)), tools=[ADD])
        await loop.run("t", run_id="p")
        text = telemetry.prometheus_text()
    assert "# TYPE shopfloor_component_calls_total counter" in text
    assert 'shopfloor_component_calls_total{component="run",outcome="ok"} 1' in text
    assert "# TYPE gen_ai_server_time_to_first_token_seconds histogram" in text
    assert (
        'gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_request_model="function:m1",le="0.5"} 1'
        in text
    )
    assert 'gen_ai_server_time_to_first_token_seconds_sum{gen_ai_request_model="function:m1"} 0.5' in text
    assert 'shopfloor_runs_total{status="completed"} 1' in text
    assert "process_cpu_time_seconds_total{" in text


def test_live_metrics_agree_with_the_report() -> None:
    spans = [
        _span("sandbox.exec", i, i + 0.1 * (i + 1), status="error" if i == 2 else "unset") for i in range(4)
    ]
    live = LiveMetrics()
    live.record(spans)
    text = live.prometheus_text()
    live.shutdown()
    stats = compute_metrics(spans).component("sandbox")
    assert stats is not None and (stats.calls, stats.faults) == (4, 1)
    assert 'shopfloor_component_calls_total{component="sandbox",outcome="ok"} 3' in text
    assert 'shopfloor_component_calls_total{component="sandbox",outcome="fault"} 1' in text
    assert 'shopfloor_component_duration_seconds_count{component="sandbox"} 4' in text


async def test_prometheus_text_needs_live_metrics(telemetry: Telemetry) -> None:
    with pytest.raises(TelemetryError, match="live_metrics=True"):
        telemetry.prometheus_text()

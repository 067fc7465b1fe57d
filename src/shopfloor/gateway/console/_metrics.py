"""The console's metrics: the seed's metrics of the trace store (as ``shopfloor metrics`` computes
them) over a window, per agent or release, and each over time, the latency of each component too (the
window cut in buckets, each computed the same way): drawn in the browser by the charting library the
console serves (uPlot, vendored from npm), with the same values as a table beside each chart."""

# No `from __future__ import annotations`: FastAPI reads the pages' annotations (the local `Session`
# alias) when they are defined.

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response

from shopfloor.gateway.console._app import Console
from shopfloor.gateway.console._sessions import ConsoleSession
from shopfloor.telemetry import MetricsReport, SpanRecord, compute_metrics

__all__ = ["Series", "metric_series", "metrics_routes", "of_release"]

#: the attribute of a run's root span naming the digest of the agent files it ran
AGENT_DIGEST = "shopfloor.agent.digest"

BUCKETS = 12


@dataclass(frozen=True, kw_only=True)
class Series:
    """One metric over the window: a value per bucket (None: nothing measured), each bucket at the
    middle of its time span (seconds since the epoch)."""

    name: str
    unit: str
    times: tuple[float, ...]
    values: tuple[float | None, ...]
    latest: float | None

    def chart(self) -> dict[str, Any]:
        """What the page's script hands the charting library (``data-chart``, escaped as JSON)."""
        return {"name": self.name, "unit": self.unit, "x": list(self.times), "y": list(self.values)}


_METRICS: tuple[tuple[str, str, Callable[[MetricsReport], float | None]], ...] = (
    ("runs", "", lambda m: float(m.runs)),
    ("completion rate", "%", lambda m: m.completion_rate * 100 if m.runs else None),
    ("run latency p50", "s", lambda m: m.run_latency.p50 if m.run_latency.count else None),
    ("time to first token p50", "s", lambda m: m.ttft.p50 if m.ttft.count else None),
    ("tokens per second p50", "", lambda m: m.tokens_per_second.p50 if m.tokens_per_second.count else None),
    ("tokens", "", lambda m: float(m.input_tokens + m.output_tokens)),
    ("fault rate", "%", lambda m: _rate(m, timeouts=False)),
    ("timeout rate", "%", lambda m: _rate(m, timeouts=True)),
    ("sandbox CPU p50", "s", lambda m: m.sandbox_cpu_seconds.p50 if m.sandbox_cpu_seconds.count else None),
    (
        "sandbox memory p50",
        "MiB",
        lambda m: (
            None if m.sandbox_peak_memory_bytes.p50 is None else m.sandbox_peak_memory_bytes.p50 / 2**20
        ),
    ),
)


def _rate(report: MetricsReport, *, timeouts: bool) -> float | None:
    """Failed calls over calls, in percent: timeouts only, or every failure (timeouts included, as
    ``ComponentStats.fault_rate`` counts them and the page's table shows)."""
    calls = sum(c.calls for c in report.components)
    if not calls:
        return None
    bad = sum(c.timeouts if timeouts else c.faults + c.timeouts for c in report.components)
    return bad * 100 / calls


def _component_latency(component: str) -> Callable[[MetricsReport], float | None]:
    def read(report: MetricsReport) -> float | None:
        stats = report.component(component)
        return None if stats is None else stats.latency.p50

    return read


def metric_series(
    reports: Sequence[MetricsReport], times: Sequence[float], components: Sequence[str] = ()
) -> list[Series]:
    """Each metric of ``reports`` (one per bucket, oldest first, at ``times``) as a chartable series, then
    the latency of each of ``components`` (the run's own is the run latency above)."""
    found = []
    per_component = [(f"{c} latency p50", "s", _component_latency(c)) for c in components if c != "run"]
    for name, unit, read in (*_METRICS, *per_component):
        values = tuple(None if (v := read(r)) is None else round(v, 6) for r in reports)
        latest = next((v for v in reversed(values) if v is not None), None)
        found.append(Series(name=name, unit=unit, times=tuple(times), values=values, latest=latest))
    return found


def of_release(spans: Sequence[SpanRecord], agent_digest: str) -> list[SpanRecord]:
    """The spans of the runs that ran the agent files of ``agent_digest`` (a release's), as their root
    span records them."""
    runs = {s.run_id for s in spans if s.attributes.get(AGENT_DIGEST) == agent_digest}
    return [s for s in spans if s.run_id is not None and s.run_id in runs]


def _buckets(
    spans: list[SpanRecord], since_ns: int, until_ns: int
) -> tuple[list[list[SpanRecord]], list[float]]:
    """The spans cut in ``BUCKETS`` by start time, and each bucket's middle (seconds)."""
    width = max(1, (until_ns - since_ns) // BUCKETS)
    cut: list[list[SpanRecord]] = [[] for _ in range(BUCKETS)]
    for span in spans:
        cut[min(BUCKETS - 1, max(0, (span.start_ns - since_ns) // width))].append(span)
    return cut, [(since_ns + width * (i + 0.5)) / 1e9 for i in range(BUCKETS)]


def metrics_routes(app: FastAPI, console: Console) -> None:
    Session = Annotated[ConsoleSession, Depends(console.signed_in)]
    plane = console.plane
    prices = plane.services.settings.telemetry.prices

    @app.get("/console/metrics")
    async def metrics(
        request: Request,
        session: Session,
        hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24,
        agent: Annotated[str | None, Query(max_length=128)] = None,
        release: Annotated[str | None, Query(max_length=256)] = None,
    ) -> Response:
        until_ns = time.time_ns()
        since_ns = until_ns - int(hours * 3600 * 1e9)
        releases = console.deployments.releases

        def compute() -> tuple[MetricsReport, list[Series], list[str]]:
            refs = [r.ref for r in releases.list_releases(agent or None)]
            chosen = releases.get(release) if release else None
            spans = plane.traces.spans(since_ns=since_ns, agent=chosen.name if chosen else agent or None)
            if chosen is not None:
                spans = of_release(spans, chosen.agent_digest)
            whole = compute_metrics(spans, prices=prices)
            cut, times = _buckets(spans, since_ns, until_ns)
            components = [c.component for c in whole.components]
            buckets = [compute_metrics(b, prices=prices) for b in cut]
            return whole, metric_series(buckets, times, components), refs

        whole, series, refs = await asyncio.to_thread(compute)
        return console.render(
            request,
            "metrics.html",
            report=whole,
            series=series,
            hours=hours,
            agent=agent or "",
            release=release or "",
            releases=refs,
        )

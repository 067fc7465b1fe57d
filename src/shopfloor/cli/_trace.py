"""``shopfloor trace``, ``shopfloor metrics`` and ``shopfloor replay``: looking at runs after the fact."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from shopfloor.cli._app import app, console, err_console, get_settings, print_json
from shopfloor.config import Settings
from shopfloor.errors import ConfigError, RunNotFoundError
from shopfloor.telemetry import (
    LiveMetrics,
    MetricsReport,
    SpanRecord,
    TraceStore,
    compute_metrics,
    configure_telemetry,
    otlp_json,
    trace_store_url,
    tree_json,
    waterfall,
)

if TYPE_CHECKING:  # imported where used: `shopfloor --help` need not load DBOS and the agent
    from shopfloor.ops.replay import ReplayReport, RunInfo

__all__ = ["metrics_cmd", "replay_cmd", "trace_cmd"]

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _store(settings: Settings) -> TraceStore:
    return TraceStore(trace_store_url(settings))


async def _resolve(settings: Settings, run_id: str) -> str:
    """The full id of a run the runtime knows by a prefix; ``run_id`` itself otherwise."""
    from shopfloor.runtime import Runtime, compose

    services = compose(settings)
    try:
        async with Runtime(services) as runtime:
            return (await runtime.get_run(run_id)).run_id
    except RunNotFoundError:
        return run_id
    finally:
        services.close()


def _run_spans(settings: Settings, run_id: str) -> tuple[str, list[SpanRecord]]:
    if settings.client.url:  # SHOPFLOOR_URL: the server's trace store
        from shopfloor.cli._remote import remote_spans

        return remote_spans(settings.client, run_id)
    store = _store(settings)
    try:
        spans = store.run_spans(run_id)
        if not spans:
            full = asyncio.run(_resolve(settings, run_id))
            spans = store.run_spans(full) if full != run_id else []
            run_id = full
    finally:
        store.close()
    if not spans:
        raise RunNotFoundError(
            f"no spans for run {run_id!r} in the trace store ({trace_store_url(settings)}); "
            "runs are traced where the process called configure_telemetry (shopfloor run, worker)"
        )
    return run_id, spans


@app.command("trace")
def trace_cmd(
    target: Annotated[
        str, typer.Argument(help="RUN_ID, or 'export' followed by RUN_ID", metavar="[export] RUN_ID")
    ],
    run_id: Annotated[
        str | None, typer.Argument(help="the run id after 'export'", show_default=False, hidden=True)
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Show a run's spans as a waterfall tree; 'trace export RUN_ID' prints them as OTLP JSON."""
    settings = get_settings()
    if run_id is not None and target != "export":
        raise typer.BadParameter(
            f"expected 'trace RUN_ID' or 'trace export RUN_ID', got {target!r} {run_id!r}"
        )
    export = run_id is not None
    run_id, spans = _run_spans(settings, run_id if run_id is not None else target)
    prices = settings.telemetry.prices
    if export:
        print_json(otlp_json(spans))
    elif json_output:
        print_json(
            {
                "run_id": run_id,
                "trace_ids": sorted({s.trace_id for s in spans}),
                "spans": tree_json(spans, prices=prices),
            }
        )
    else:
        # The bar takes what the other columns leave of the terminal.
        bar = max(10, min(60, console.width - 90))
        console.print(waterfall(spans, prices=prices, title=f"run {run_id}", bar_width=bar))


def _since(value: str | None) -> int | None:
    """``30m``, ``2h``, ``7d`` ago, or an ISO date/time, as nanoseconds since the epoch."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", value.strip())
    if match:
        return int((time.time() - float(match[1]) * _UNITS[match[2]]) * 1e9)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"expected a duration such as 30m, 2h, 7d or an ISO date, got {value!r}"
        ) from None
    return min(int(when.timestamp() * 1e9), 2**63 - 1)  # the store keeps signed 64-bit nanoseconds


def _fmt(value: float | None, unit: str = "s") -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "B":
        return f"{value / 2**20:.1f} MiB"
    return f"{value:.1f}"


def _print_report(report: MetricsReport) -> None:
    summary = Table(show_header=False, show_edge=False, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("runs", f"{report.runs} ({report.completed} completed, {report.completion_rate:.0%})")
    lat = report.run_latency
    summary.add_row("end-to-end latency", f"p50 {_fmt(lat.p50)}  p95 {_fmt(lat.p95)}  max {_fmt(lat.max)}")
    summary.add_row("time to first token", f"p50 {_fmt(report.ttft.p50)}  p95 {_fmt(report.ttft.p95)}")
    tps = report.tokens_per_second
    summary.add_row("tokens per second", f"mean {_fmt(tps.mean, '')}  p50 {_fmt(tps.p50, '')}")
    summary.add_row("tokens", f"{report.input_tokens} in, {report.output_tokens} out, ${report.cost_usd:.4f}")
    cpu, mem = report.sandbox_cpu_seconds, report.sandbox_peak_memory_bytes
    summary.add_row(
        "sandbox exec", f"CPU p50 {_fmt(cpu.p50)} max {_fmt(cpu.max)}; peak memory max {_fmt(mem.max, 'B')}"
    )
    for worker in report.workers:
        summary.add_row(
            f"worker pid {worker.pid}",
            f"{worker.runs} runs, CPU {_fmt(worker.cpu_seconds)}, "
            f"peak memory {_fmt(worker.peak_memory_bytes, 'B')}",
        )
    console.print(summary)
    table = Table(title="per component")
    for name in ("component", "calls", "p50", "p95", "max", "fault rate", "timeout rate"):
        table.add_column(name, justify="left" if name == "component" else "right")
    for stats in report.components:
        table.add_row(
            stats.component,
            str(stats.calls),
            _fmt(stats.latency.p50),
            _fmt(stats.latency.p95),
            _fmt(stats.latency.max),
            f"[red]{stats.fault_rate:.1%}[/]" if stats.fault_rate else "0%",
            f"[red]{stats.timeout_rate:.1%}[/]" if stats.timeout_rate else "0%",
        )
    console.print(table)


@app.command("metrics")
def metrics_cmd(
    since: Annotated[str | None, typer.Option(help="only spans since: 30m, 2h, 7d or an ISO date")] = None,
    agent: Annotated[str | None, typer.Option(help="only runs of this agent")] = None,
    prometheus: Annotated[
        bool, typer.Option("--prometheus", help="print the Prometheus text format")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Agent metrics from the trace store: latencies, TTFT, tokens/s, completion, fault and timeout rates."""
    settings = get_settings()
    if settings.client.url:  # SHOPFLOOR_URL: the server's trace store
        if prometheus:
            raise ConfigError(
                "--prometheus reads this machine's trace store: run it on the server's machine, "
                "or use --json or the table through SHOPFLOOR_URL"
            )
        from shopfloor.cli._remote import remote_metrics

        report = remote_metrics(settings.client, since_ns=_since(since), agent=agent)
    else:
        store = _store(settings)
        try:
            spans = store.spans(since_ns=_since(since), agent=agent)
        finally:
            store.close()
        if prometheus:
            live = LiveMetrics()
            live.record(spans)
            console.out(live.prometheus_text(), end="")
            live.shutdown()
            return
        report = compute_metrics(spans, prices=settings.telemetry.prices)
    if json_output:
        print_json(report.to_dict())
    else:
        _print_report(report)


@app.command("replay")
def replay_cmd(
    run_id: Annotated[str, typer.Argument(help="the run to replay")],
    from_step: Annotated[
        str | None,
        typer.Option("--from", help="fork here (a step number or name such as model:3): run live from it"),
    ] = None,
    agent: Annotated[
        Path | None, typer.Option("--agent", help="another version of the agent (its spec)")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Re-run a recorded run on its recorded step outputs (nothing is called): does it come out the same?

    With --from, replay up to that step, then continue live (with --agent: as another agent version).
    Exits 1 where the replay diverged.
    """
    from shopfloor.ops.replay import replay_recorded
    from shopfloor.runtime import compose

    settings = get_settings()

    async def main() -> tuple[RunInfo, ReplayReport]:
        services = compose(settings)
        # A fork runs live: its spans go to this process's telemetry.
        traced = configure_telemetry(settings, destinations=services.exporters) if from_step else None
        try:
            replayed = await replay_recorded(services, run_id, at=from_step, agent=agent)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--from") from None
        finally:
            if traced is not None:
                traced.shutdown()
        if replayed.changed:
            info = replayed.info
            err_console.print(
                f"[yellow]warning:[/] {info.spec_path} changed since run {info.run_id} "
                f"({(info.digest or '')[:19]} -> {replayed.changed[:19]}): replaying the current version"
            )
        return replayed.info, replayed.report

    info, report = asyncio.run(main())
    if json_output:
        print_json(
            {**report.to_dict(), "original_run_id": info.run_id, "workspace_commit": info.workspace_commit}
        )
    else:
        _print_replay(report, info)
    if not report.same:
        raise typer.Exit(1)


def _print_replay(report: ReplayReport, info: RunInfo) -> None:
    table = Table(
        title=f"replay of {info.run_id}" + (f" forked at step {report.forked_at}" if report.forked_at else "")
    )
    for name in ("#", "recorded", "replayed", ""):
        table.add_column(name)
    for check in report.steps:
        mark = "[cyan]live[/]" if check.live else "[green]same[/]" if check.same else "[bold red]differs[/]"
        table.add_row(str(check.index), check.expected or "-", check.actual or "-", mark)
    console.print(table)
    if report.forked_at:
        console.print(f"fork [bold]{report.run_id}[/] {report.status}: {report.output!r}")
    if report.same:
        console.print(
            "[green]every step and the answer came out as recorded[/]"
            if not report.forked_at
            else "[green]the replayed steps came out as recorded[/]"
        )
    else:
        console.print(f"[bold red]{report.reason}[/]")

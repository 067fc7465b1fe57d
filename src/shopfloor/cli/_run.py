"""``shopfloor run``, ``shopfloor runs ...`` and ``shopfloor worker``: durable runs from the command line."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from shopfloor.cli._app import app, console, err_console, get_services, print_json

if TYPE_CHECKING:  # imported where used: `shopfloor --help` need not load DBOS and the agent
    from shopfloor.runtime import RunRecord, Runtime, StoredEvent

__all__ = ["runs_app"]

runs_app = typer.Typer(help="Durable runs: list, show, logs, cancel, approve, reject.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
RunId = Annotated[str, typer.Argument(help="the run id (a unique prefix is enough)")]
_STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "waiting_approval": "magenta",
    "running": "cyan",
    "queued": "blue",
}


def _runtime(body: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
    async def main() -> T:
        from shopfloor.runtime import Runtime

        async with Runtime(get_services()) as runtime:
            return await body(runtime)

    return asyncio.run(main())


def _short(value: Any, width: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def print_event(stored: StoredEvent, *, answer: bool = True) -> None:
    """One line per event, as ``shopfloor run`` follows a run (``answer``: print the final answer too)."""
    event, data = stored.event, stored.event.data
    kind = event.kind
    if kind == "run_started":
        console.print(
            f"[bold]▶ run started[/] model [cyan]{data.get('model')}[/]"
            f" tools {', '.join(data.get('tools', []))}"
        )
    elif kind == "model_reply":
        console.print(
            f"[dim]step {event.step}[/] model → [bold]{data.get('tool')}[/]"
            f" {_short(data.get('arguments'), 80)}"
            f" [dim]({data.get('usage')} tokens)[/]"
        )
    elif kind == "invalid_reply":
        console.print(
            f"[dim]step {event.step}[/] [yellow]invalid reply (try {data.get('attempt')}):[/] "
            f"{_short(data.get('error'))}"
        )
    elif kind == "tool_result":
        if data.get("error"):
            console.print(f"  [red]✗ {data.get('tool')}: {_short(data['error'])}[/]")
        else:
            console.print(
                f"  [green]←[/] {_short(data.get('output'))}"
                f" [dim]({1000 * float(data.get('duration') or 0):.1f} ms)[/]"
            )
    elif kind == "approval_requested":
        who = ", ".join(data.get("approvers") or []) or "an operator"
        console.print(
            f"[magenta]⏸ waiting for {who} to approve {data.get('tool')}"
            f" {_short(data.get('arguments'), 80)}[/]\n"
            f"  shopfloor runs approve {event.run_id}   |   shopfloor runs reject {event.run_id}"
        )
    elif kind == "approval_decided":
        verdict = "[green]approved[/]" if data.get("approved") else "[red]rejected[/]"
        console.print(
            f"  {verdict} by {data.get('by') or '?'}" + (f": {data['reason']}" if data.get("reason") else "")
        )
    elif kind == "context_trimmed":
        console.print(f"[dim]  context trimmed: {data.get('dropped_turns')} older turns summarised[/]")
    elif kind == "run_finished":
        style = _STATUS_STYLE.get(str(data.get("status")), "white")
        usage = data.get("usage") or {}
        console.print(
            f"[bold {style}]■ {data.get('status')}[/] ({data.get('stop_reason')})"
            + (f" · {usage.get('total_tokens')} tokens" if usage else "")
        )
        if data.get("error"):
            console.print(f"[red]{data['error']}[/]")
        if answer and data.get("output"):
            console.print(f"\n{data['output']}")


def _exit_code(record: RunRecord) -> int:
    return 0 if record.status == "completed" else 1


@app.command("run")
def run_cmd(
    agent: Annotated[str, typer.Argument(help="the agent: a directory with agent.yaml, or the file")],
    task: Annotated[str, typer.Argument(help="what the agent should do")],
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="enqueue for `shopfloor worker` and return")
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model reference overriding the spec's")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run an agent durably: prints the run id, then follows the run live (steps, tool calls, tokens)."""

    async def body(runtime: Runtime) -> RunRecord:
        run_id = await runtime.start_run(agent, task, model=model, detach=detach)
        if not json_out:
            console.print(f"run [bold]{run_id}[/]")
        if detach:
            return await runtime.get_run(run_id)
        try:
            if json_out:
                return await runtime.wait(run_id)
            async for stored in runtime.events(run_id):
                print_event(stored)
            return await runtime.wait(run_id)
        except asyncio.CancelledError:
            err_console.print(
                f"[yellow]stopped following; run {run_id} goes on when a `shopfloor worker` picks it up "
                f"(`shopfloor runs cancel {run_id}` stops it)[/]"
            )
            raise

    record = _runtime(body)
    if json_out:
        print_json(record.to_dict())
    if not detach:
        raise typer.Exit(_exit_code(record))


@runs_app.command("ls")
def ls_cmd(
    status: Annotated[str | None, typer.Option(help="only runs with this status")] = None,
    agent: Annotated[str | None, typer.Option(help="only runs of this agent")] = None,
    limit: Annotated[int, typer.Option(help="most recent N runs")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    records = _runtime(lambda rt: rt.list_runs(limit=limit, status=status, agent=agent))
    if json_out:
        print_json([record.to_dict() for record in records])
        return
    table = Table("run", "agent", "status", "stop reason", "tokens", "created", "task")
    for record in records:
        style = _STATUS_STYLE.get(record.status, "white")
        table.add_row(
            record.run_id[:12],
            record.agent,
            f"[{style}]{record.status}[/]",
            record.stop_reason or "",
            str(record.total_tokens),
            _when(record.created_at),
            _short(record.task, 40),
        )
    console.print(table)


@runs_app.command("show")
def show_cmd(run_id: RunId, json_out: JsonOpt = False) -> None:
    """Show one run: status, input, answer, stop reason, tokens, timings, pending approval."""
    record = _runtime(lambda rt: rt.get_run(run_id))
    if json_out:
        print_json(record.to_dict())
        return
    style = _STATUS_STYLE.get(record.status, "white")
    console.print(
        f"run [bold]{record.run_id}[/]  [{style}]{record.status}[/]"
        + (f" ({record.stop_reason})" if record.stop_reason else "")
    )
    for label, value in (
        ("agent", f"{record.agent}  {record.release_digest[:19]}"),
        ("caller", record.caller),
        ("task", record.task),
        ("model", record.model or "(the spec's)"),
        ("tokens", f"{record.input_tokens} in, {record.output_tokens} out, {record.model_calls} model calls"),
        ("steps", str(record.steps)),
        ("created", _when(record.created_at)),
        ("started", _when(record.started_at)),
        ("finished", _when(record.finished_at)),
        ("executor", record.executor_id or "-"),
        ("faults", _short(record.faults) if record.faults else "-"),
        ("workspace", record.workspace_commit or "-"),
    ):
        console.print(f"[dim]{label:>9}[/] {value}")
    if record.approval:
        approval = record.approval
        console.print(
            f"[magenta]waiting for {', '.join(approval.get('approvers') or []) or 'an operator'} to approve "
            f"{approval.get('tool')} {_short(approval.get('arguments'))}[/]"
        )
    if record.error:
        console.print(f"[red]{record.error}[/]")
    if record.output:
        console.print(f"\n{record.output}")


@runs_app.command("logs")
def logs_cmd(
    run_id: RunId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep following until the run ends")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON event per line")] = False,
) -> None:
    """Print the events of a run (steps, tool calls, approvals, the end)."""

    async def body(runtime: Runtime) -> None:
        record = await runtime.get_run(run_id)
        async for stored in runtime.events(record.run_id, follow=follow):
            if json_out:
                print(json.dumps(stored.to_dict(), default=str), flush=True)
            else:
                print_event(stored)

    _runtime(body)


def _decision(
    verb: str, run_id: str, json_out: bool, action: Callable[[Runtime], Coroutine[Any, Any, RunRecord]]
) -> None:
    record = _runtime(action)
    if json_out:
        print_json({"run_id": record.run_id, "action": verb, "status": record.status})
    else:
        console.print(f"{verb} run [bold]{record.run_id}[/]")


@runs_app.command("cancel")
def cancel_cmd(run_id: RunId, json_out: JsonOpt = False) -> None:
    """Cancel a run durably: the current step finishes, no further step starts."""
    record = _runtime(lambda rt: rt.cancel(run_id))
    if json_out:
        print_json({"run_id": record.run_id, "action": "cancel", "status": record.status})
    elif record.done:
        console.print(f"cancelled run [bold]{record.run_id}[/]")
    else:
        console.print(f"cancel requested for run [bold]{record.run_id}[/]: it stops after its current step")


ByOpt = Annotated[str | None, typer.Option("--by", help="who decides (default: the current user)")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="why, recorded with the decision")]


@runs_app.command("approve")
def approve_cmd(run_id: RunId, by: ByOpt = None, reason: ReasonOpt = "", json_out: JsonOpt = False) -> None:
    """Approve the tool call a run is waiting on."""
    _decision("approved", run_id, json_out, lambda rt: rt.approve(run_id, by=by, reason=reason))


@runs_app.command("reject")
def reject_cmd(run_id: RunId, by: ByOpt = None, reason: ReasonOpt = "", json_out: JsonOpt = False) -> None:
    """Reject the tool call a run is waiting on (the model is told, and goes on without it)."""
    _decision("rejected", run_id, json_out, lambda rt: rt.reject(run_id, by=by, reason=reason))


@runs_app.command("prune")
def prune_cmd(
    days: Annotated[float, typer.Option("--days", help="prune runs that ended more than this many days ago")],
    json_out: JsonOpt = False,
) -> None:
    """Retention: drop old runs' events and recorded steps (their summary rows stay)."""
    pruned = _runtime(lambda rt: rt.prune(older_than_days=days))
    if json_out:
        print_json({"pruned": pruned})
    else:
        console.print(f"pruned {pruned} runs")


@app.command("worker")
def worker_cmd(
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", help="runs executed at once")
    ] = None,
    executor_id: Annotated[
        str | None,
        typer.Option(
            "--executor-id", help="reuse a previous worker's id: its unfinished runs resume at once"
        ),
    ] = None,
) -> None:
    """Execute queued runs (and recover those of dead processes) until interrupted."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        from shopfloor.runtime import Runtime

        await Runtime(get_services()).serve(
            concurrency=concurrency,
            executor_id=executor_id,
            stop=stop,
            on_ready=lambda executor: err_console.print(
                f"worker [bold]{executor}[/] ready (Ctrl-C stops; unfinished runs resume elsewhere)"
            ),
        )

    asyncio.run(main())

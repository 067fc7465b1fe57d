"""``shopfloor run``, ``shopfloor runs ...`` and ``shopfloor worker``: durable runs from the command line."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer
from rich.table import Table
from rich.text import Text

from shopfloor.cli._app import app, console, err_console, get_services, get_settings, print_json
from shopfloor.cli._untrusted import pretty_json, untrusted
from shopfloor.errors import EvalError

if TYPE_CHECKING:  # imported where used: `shopfloor --help` need not load DBOS and the agent
    from shopfloor.runtime import RunRecord, Runtime, StoredEvent

__all__ = ["runs_app"]

runs_app = typer.Typer(
    help="Durable runs: list, show, logs, cancel, approve, reject, fork.", no_args_is_help=True
)
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
    """Run ``body`` with this machine's runtime, or with a server's Runs API where ``SHOPFLOOR_URL``
    is set (same commands, same output)."""
    settings = get_settings()

    async def main() -> T:
        if settings.client.url:
            from shopfloor.cli._remote import RemoteRuntime

            async with RemoteRuntime(settings.client) as remote:
                # RemoteRuntime answers every Runtime method these commands call, with the same types.
                return await body(cast("Runtime", remote))
        services = get_services()
        try:
            async with services.runtime() as runtime:
                return await body(runtime)
        finally:
            await asyncio.to_thread(services.close)

    return asyncio.run(main())


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _pending_call(run_id: str, tool: Any, arguments: Any, approvers: Any) -> Text:
    """The whole call waiting for approval: every argument, as indented JSON, never markup."""
    who = ", ".join(str(name) for name in approvers or []) or "an administrator"
    return Text.assemble(
        ("⏸ waiting for ", "magenta"),
        untrusted(who, style="magenta"),
        (" to approve a call of ", "magenta"),
        untrusted(tool, style="bold magenta"),
        (" with the arguments:\n", "magenta"),
        pretty_json(arguments),
        f"\n  shopfloor runs approve {run_id}   |   shopfloor runs reject {run_id}"
        f"   |   shopfloor runs show {run_id}",
    )


def print_event(stored: StoredEvent, *, answer: bool = True) -> None:
    """One line per event, as ``shopfloor run`` follows a run (``answer``: print the final answer too).

    Everything a model, a tool or the task wrote is printed as plain text (``untrusted``).
    """
    event, data = stored.event, stored.event.data
    kind = event.kind
    line: Text | None = None
    if kind == "run_started":
        line = Text.assemble(
            ("▶ run started", "bold"),
            " model ",
            untrusted(data.get("model"), style="cyan"),
            " tools ",
            untrusted(", ".join(map(str, data.get("tools", [])))),
        )
    elif kind == "model_reply":
        line = Text.assemble(
            (f"step {event.step}", "dim"),
            " model → ",
            untrusted(data.get("tool"), style="bold"),
            " ",
            untrusted(data.get("arguments"), width=80),
            (f" ({data.get('usage')} tokens)", "dim"),
        )
    elif kind == "invalid_reply":
        line = Text.assemble(
            (f"step {event.step}", "dim"),
            (f" invalid reply (try {data.get('attempt')}): ", "yellow"),
            untrusted(data.get("error"), width=100),
        )
    elif kind == "tool_result":
        if data.get("error"):
            line = Text.assemble(
                "  ",
                untrusted(f"✗ {data.get('tool')}: ", style="red"),
                untrusted(data["error"], style="red", width=100),
            )
        else:
            line = Text.assemble(
                ("  ←", "green"),
                " ",
                untrusted(data.get("output"), width=100),
                (f" ({1000 * float(data.get('duration') or 0):.1f} ms)", "dim"),
            )
    elif kind == "approval_requested":
        line = _pending_call(event.run_id, data.get("tool"), data.get("arguments"), data.get("approvers"))
    elif kind == "approval_decided":
        verdict = ("approved", "green") if data.get("approved") else ("rejected", "red")
        line = Text.assemble("  ", verdict, " by ", untrusted(data.get("by") or "?"))
        if data.get("reason"):
            line.append_text(Text.assemble(": ", untrusted(data["reason"])))
    elif kind == "context_trimmed":
        line = Text(f"  context trimmed: {data.get('dropped_turns')} older turns summarised", style="dim")
    elif kind == "run_finished":
        style = _STATUS_STYLE.get(str(data.get("status")), "white")
        usage = data.get("usage") or {}
        line = Text.assemble(
            untrusted(f"■ {data.get('status')}", style=f"bold {style}"),
            untrusted(f" ({data.get('stop_reason')})"),
            f" · {usage.get('total_tokens')} tokens" if usage else "",
        )
        if data.get("error"):
            line.append_text(Text.assemble("\n", untrusted(data["error"], style="red")))
        if answer and data.get("output"):
            line.append_text(Text.assemble("\n\n", untrusted(data["output"])))
    if line is not None:
        console.print(line)


def _exit_code(record: RunRecord) -> int:
    return 0 if record.status == "completed" else 1


@app.command("run")
def run_cmd(
    agent: Annotated[
        str,
        typer.Argument(help="the agent: a directory with agent.yaml, the file, or a deployed agent's name"),
    ],
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

    # A name that is no path is a deployed agent: its deployment picks the release.
    by_name = not Path(agent).exists() and "/" not in agent

    async def body(runtime: Runtime) -> RunRecord:
        run_id = await runtime.start_run(
            None if by_name else agent, task, model=model, detach=detach, agent=agent if by_name else None
        )
        return await _follow(runtime, run_id, detach=detach, json_out=json_out)

    _report(_runtime(body), detach=detach, json_out=json_out)


async def _follow(runtime: Runtime, run_id: str, *, detach: bool, json_out: bool) -> RunRecord:
    """Print the new run's id, then (unless detached) follow it live to its end."""
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


def _report(record: RunRecord, *, detach: bool, json_out: bool) -> None:
    if json_out:
        print_json(record.to_dict())
    if not detach:
        raise typer.Exit(_exit_code(record))


@runs_app.command("fork")
def fork_cmd(
    run_id: RunId,
    step: Annotated[
        int,
        typer.Option(
            "--step",
            min=1,
            help="the step to run live from: 1-based in the run's record (its model calls, tool calls and "
            "approvals in order, as the console's Fork lists them)",
        ),
    ],
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="enqueue for `shopfloor worker` and return")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Fork an ended run at a step: a new durable run whose steps before STEP are the run's recorded
    outputs (nothing called again) and which runs live from STEP; prints its id, then follows it."""

    async def body(runtime: Runtime) -> RunRecord:
        fork_id = await runtime.fork_run(run_id, step, detach=detach)
        return await _follow(runtime, fork_id, detach=detach, json_out=json_out)

    _report(_runtime(body), detach=detach, json_out=json_out)


@runs_app.command("ls")
def ls_cmd(
    status: Annotated[str | None, typer.Option(help="only runs with this status")] = None,
    agent: Annotated[str | None, typer.Option(help="only runs of this agent")] = None,
    limit: Annotated[int, typer.Option(help="most recent N runs")] = 50,
    eval_id: Annotated[
        str | None, typer.Option("--eval", help="only the runs of this evaluation's items (id or prefix)")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List runs, newest first (with --eval: an evaluation's item runs, in its items' order)."""
    items = _eval_runs(eval_id) if eval_id is not None else {}
    if eval_id is not None:

        async def each(rt: Runtime) -> list[RunRecord]:
            found = await rt.get_runs(list(items))  # an item not yet started has no run
            return [found[run_id] for run_id in items if run_id in found]

        records = [
            r
            for r in _runtime(each)
            if (status is None or r.status == status) and (agent is None or r.agent == agent)
        ][:limit]
    else:
        records = _runtime(lambda rt: rt.list_runs(limit=limit, status=status, agent=agent))
    if json_out:
        print_json(
            [record.to_dict() | ({"eval_item": items[record.run_id]} if items else {}) for record in records]
        )
        return
    table = Table(
        *(["item"] if items else []), "run", "agent", "status", "stop reason", "tokens", "created", "task"
    )
    for record, depth in _under_parents(records):
        style = _STATUS_STYLE.get(record.status, "white")
        table.add_row(
            *([untrusted(items.get(record.run_id, ""))] if items else []),
            ("  └ " * depth) + record.run_id[:12],
            untrusted(record.agent),
            Text(record.status, style=style),
            record.stop_reason or "",
            str(record.total_tokens),
            _when(record.created_at),
            untrusted(record.task, width=40),
        )
    console.print(table)


def _under_parents(records: list[RunRecord]) -> list[tuple[RunRecord, int]]:
    """The runs in their order, each child run moved under its parent (oldest child first) and
    indented one level; a child whose parent is not among them stays where it is, unindented."""
    listed = {record.run_id for record in records}
    children: dict[str, list[RunRecord]] = {}
    for record in records:
        if record.child_params is not None and record.parent_run_id in listed:
            children.setdefault(record.parent_run_id, []).append(record)
    ordered: list[tuple[RunRecord, int]] = []

    def place(record: RunRecord, depth: int) -> None:
        ordered.append((record, depth))
        for child in sorted(children.get(record.run_id, []), key=lambda r: (r.created_at, r.run_id)):
            place(child, depth + 1)

    for record in records:
        if not (record.child_params is not None and record.parent_run_id in listed):
            place(record, 0)
    return ordered


def _eval_runs(eval_id: str) -> dict[str, str]:
    """The run ids of an evaluation's items, each with ``ITEM`` (``ITEM#REPEAT`` past the first repeat):
    the run its row names, else the one its run has or will have (``item_run_id``), so an item
    running now is listed before its result is written."""
    settings = get_settings()
    if settings.client.url:
        raise EvalError("--eval reads this machine's evaluation store: unset SHOPFLOOR_URL")
    from shopfloor.evals import EvalStore, item_run_id

    store = EvalStore.open(settings.db_url)
    try:
        record = store.find(eval_id)
        return {
            row.run_id or item_run_id(row.eval_id, row.item_id, row.repeat): row.item_id
            + (f"#{row.repeat}" if row.repeat else "")
            for row in store.items(record.eval_id)
        }
    finally:
        store.close()


@runs_app.command("show")
def show_cmd(run_id: RunId, json_out: JsonOpt = False) -> None:
    """Show one run: status, input, answer, stop reason, tokens, timings, pending approval, children."""

    async def body(rt: Runtime) -> tuple[RunRecord, list[RunRecord]]:
        record = await rt.get_run(run_id)
        return record, await rt.children(record.run_id)

    record, children = _runtime(body)
    if json_out:
        print_json(record.to_dict() | {"children": [child.to_dict() for child in children]})
        return
    style = _STATUS_STYLE.get(record.status, "white")
    console.print(
        Text.assemble(
            "run ",
            (record.run_id, "bold"),
            "  ",
            (record.status, style),
            f" ({record.stop_reason})" if record.stop_reason else "",
        )
    )
    for label, value in (
        ("agent", f"{record.agent}  {record.release_digest[:19]}"),
        ("release", f"{record.release} ({record.track} track)" if record.release else "-"),
        ("caller", record.caller),
        ("task", record.task),
        ("model", record.model or "(the spec's)"),
        ("parent", _parent_line(record)),
        ("tokens", f"{record.input_tokens} in, {record.output_tokens} out, {record.model_calls} model calls"),
        ("steps", str(record.steps)),
        ("created", _when(record.created_at)),
        ("started", _when(record.started_at)),
        ("finished", _when(record.finished_at)),
        ("executor", record.executor_id or "-"),
        ("faults", record.faults or "-"),
        ("workspace", record.workspace_commit or "-"),
    ):
        console.print(Text.assemble((f"{label:>9}", "dim"), " ", untrusted(value)))
    if record.approval:
        approval = record.approval
        console.print(
            _pending_call(
                record.run_id, approval.get("tool"), approval.get("arguments"), approval.get("approvers")
            )
        )
    if children:
        console.print(Text(f"children ({len(children)})", style="dim"))
        for child in children:
            console.print(
                Text.assemble(
                    "  └ ",
                    (child.run_id[:12], "bold"),
                    "  ",
                    (child.status, _STATUS_STYLE.get(child.status, "white")),
                    "  ",
                    untrusted(child.task, width=80),
                )
            )
    if record.error:
        console.print(untrusted(record.error, style="red"))
    if record.output:
        console.print(Text.assemble("\n", untrusted(record.output)))


def _parent_line(record: RunRecord) -> str:
    if record.parent_run_id is None:
        return "-"
    if record.child_params is not None:
        tool = record.child_params.get("tool")
        return f"child of {record.parent_run_id} (step {record.child_params.get('step')}, {tool})"
    return f"fork of {record.parent_run_id} at step {record.fork_step}"


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


ByOpt = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="one of the spec's approvers (default: the current user); where the spec lists none, "
        "only the local administrator decides and --by is refused",
    ),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="why, recorded with the decision")]


EditOpt = Annotated[
    bool,
    typer.Option(
        "--edit",
        help="edit what the call proposes (a research plan) in $VISUAL or $EDITOR first, as YAML: only the "
        "fields its tool lets change; the call runs with the proposal as edited",
    ),
]
ProposalOpt = Annotated[
    str | None,
    typer.Option(
        "--proposal",
        metavar="FILE|-",
        help="approve the proposal as written in FILE (YAML or JSON; - for standard input) instead",
    ),
]


@runs_app.command("approve")
def approve_cmd(
    run_id: RunId,
    by: ByOpt = None,
    reason: ReasonOpt = "",
    edit: EditOpt = False,
    proposal: ProposalOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Approve the tool call a run is waiting on; with --edit or --proposal, what it proposed as edited."""
    from shopfloor.cli._approve import edit_in_editor, read_proposal

    if edit and proposal is not None:
        raise typer.BadParameter("give --edit or --proposal, not both")
    edited: dict[str, Any] | None = None
    if edit or proposal is not None:
        waiting = _runtime(lambda rt: rt.get_run(run_id))
        approval = waiting.approval if waiting.status == "waiting_approval" else None
        if edit:
            edited = edit_in_editor(waiting.run_id, approval)
        else:
            assert proposal is not None
            edited = read_proposal(proposal, approval)
    _decision(
        "approved", run_id, json_out, lambda rt: rt.approve(run_id, by=by, reason=reason, proposal=edited)
    )


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
        services = get_services()
        try:
            await services.runtime().serve(
                concurrency=concurrency,
                executor_id=executor_id,
                stop=stop,
                on_ready=lambda executor: err_console.print(
                    f"worker [bold]{executor}[/] ready (Ctrl-C stops; unfinished runs resume elsewhere)"
                ),
            )
        finally:
            await asyncio.to_thread(services.close)

    asyncio.run(main())

"""``shopfloor demo [analyst|researcher]``: the main jobs. The analyst answers a question about real data,
durably and traced, then says where its report, chart and trace are and how to look further; the
researcher's demo is in ``_demo_researcher.py``. ``shopfloor demo [QUESTION]`` is the analyst's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.panel import Panel
from typer.core import TyperGroup

from shopfloor.cli._app import app, console, get_settings, print_json
from shopfloor.cli._run import _runtime, print_event
from shopfloor.cli._untrusted import untrusted
from shopfloor.errors import ConfigError

if TYPE_CHECKING:
    from shopfloor.runtime import RunRecord, Runtime

__all__ = ["demo_app", "find_example", "trace_lines"]

DEFAULT_QUESTION = "Which month of 2015 had the most rain in Seattle, and how much?"


class _AnalystByDefault(TyperGroup):
    """``shopfloor demo`` and ``shopfloor demo QUESTION`` stay the analyst's demo: arguments that do not
    start with a demo's name go to ``demo analyst``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own (vendored) click Context
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["analyst", *args]
        return super().parse_args(ctx, args)


demo_app = typer.Typer(
    cls=_AnalystByDefault,
    help="The main jobs on the embedded model: `demo analyst` (the default) and `demo researcher`.",
)
app.add_typer(demo_app, name="demo")


def find_example(name: str) -> Path:
    """An example agent: in the current directory's checkout, else beside the installed source."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = base / "examples" / name
        if (candidate / "agent.yaml").is_file():
            return candidate
    raise ConfigError(
        f"examples/{name} not found: run `shopfloor demo {name}` from the Shopfloor checkout or pass --agent"
    )


def trace_lines(run_id: str) -> list[str]:
    """A one-screen summary of the run's trace from the local store (empty where nothing was traced)."""
    from shopfloor.telemetry import TraceStore, compute_metrics, trace_store_url

    store = TraceStore(trace_store_url(get_settings()))
    try:
        spans = store.run_spans(run_id)
    finally:
        store.close()
    if not spans:
        return []
    report = compute_metrics(spans)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    counts: dict[str, int] = {}
    for span in spans:
        kind = span.name.split(" ", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    errors = sum(1 for s in spans if s.status == "error")
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    lines = [f"{len(spans)} spans over {(end - start) / 1e9:.1f} s: {kinds}; {errors} with errors"]
    ttft, tps = report.ttft.p50, report.tokens_per_second.p50
    if ttft is not None and tps is not None:
        lines.append(f"time to first token p50 {ttft * 1000:.0f} ms; {tps:.1f} tokens/s p50")
    lines.append(f"{report.input_tokens} input and {report.output_tokens} output tokens")
    return lines


@demo_app.command("analyst")
def analyst_cmd(
    question: Annotated[str, typer.Argument(help="a question about the data sets")] = DEFAULT_QUESTION,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model reference (default: the spec's)")
    ] = None,
    agent: Annotated[Path | None, typer.Option(help="the analyst's directory")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the run record as JSON")] = False,
) -> None:
    """The main job: the analyst answers a question about real public data (vega-datasets) with the
    data-analysis skill in the sandbox, durably and traced; prints the answer, the report and chart
    in its workspace, the trace summary, and the commands to look further."""
    spec = agent or find_example("analyst")

    async def body(runtime: Runtime) -> RunRecord:
        run_id = await runtime.start_run(str(spec), question, model=model)
        if not json_out:
            console.print(f"run [bold]{run_id}[/]  (analyst, {model or 'the spec model'})")
            async for stored in runtime.events(run_id):
                print_event(stored, answer=False)  # the answer gets its own panel
        return await runtime.wait(run_id)

    record = _runtime(body)
    if json_out:
        print_json(record.to_dict())
        raise typer.Exit(0 if record.status == "completed" else 1)
    run_id = record.run_id
    console.print()
    answer = untrusted(record.output or record.error or "(no answer)")  # the model's text: never markup
    console.print(Panel(answer, title=f"answer · {record.status}"))
    if record.workspace_commit:
        commit = record.workspace_commit[:12]
        console.print(f"workspace [bold]analyst[/] at commit {commit}:")
        console.print(f"  report  shopfloor ws cat ws://analyst@{commit}/report.md")
        console.print(f"  chart   shopfloor ws ls ws://analyst@{commit}/charts  (PNG files)")
    for line in trace_lines(run_id):
        console.print(f"trace   {line}")
    console.print("\nlook further:")
    for command, what in (
        (f"shopfloor trace {run_id}", "the waterfall of every step"),
        (f"shopfloor replay {run_id}", "re-run from the recorded outputs, no model or sandbox"),
        (f"shopfloor runs show {run_id}", "the run record"),
        ("shopfloor runs ls", "every run"),
        ("shopfloor ws log analyst", "the workspace's history"),
    ):
        console.print(f"  {command:<52} {what}")
    raise typer.Exit(0 if record.status == "completed" else 1)

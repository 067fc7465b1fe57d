"""``shopfloor demo researcher``: the research agent answers a question from the Python documentation
(Debian's python3.11-doc, or the seven tutorial pages the example ships where that is not installed) with
verified citations. Its corpus is ingested into its collection first (unchanged pages cost a hash), then
the question is a durable, traced run; the demo prints the cited answer, the route the router took and
why, the run id, and where the report and the trace are."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.panel import Panel
from rich.text import Text

from shopfloor.cli._app import console, get_settings, print_json
from shopfloor.cli._demo import demo_app, find_example, trace_lines
from shopfloor.cli._run import _runtime, print_event
from shopfloor.cli._untrusted import untrusted

if TYPE_CHECKING:
    from shopfloor.connectors.docs import IngestReport
    from shopfloor.runtime import RunRecord, Runtime
    from shopfloor.spec import LoadedSpec

__all__ = ["DEFAULT_RESEARCH_QUESTION", "research_output"]

DEFAULT_RESEARCH_QUESTION = "What does the else clause of a try statement do?"


def _ingest(loaded: LoadedSpec, *, quiet: bool) -> list[dict[str, Any]]:
    """Ingest every ``docs:`` connector's sources into its collection (incremental by digest), saying
    what changed; the run ingests again as it starts, which then costs a hash per page."""
    from shopfloor.connectors import ingest_sources
    from shopfloor.connectors.docs import DocCollections, resolve_sources

    done = []
    for connector in loaded.spec.connectors:
        docs = connector.docs
        if docs is None or not docs.sources or docs.workspace is not None:  # a workspace's: the run's start
            continue
        resolved = resolve_sources(docs, loaded.base_dir)
        paths = resolved.paths
        if not quiet:
            if resolved.fallback:
                console.print(
                    Text.assemble(
                        "none of ",
                        untrusted(", ".join(docs.sources)),
                        " is here (scripts/bootstrap.sh installs it): the shipped pages instead",
                    )
                )
            where = ", ".join(str(p) for p in paths)
            console.print(
                Text.assemble("ingesting ", untrusted(where), " into collection ", (docs.collection, "bold"))
                + " ..."
            )
        reports = ingest_sources(
            DocCollections.from_settings(get_settings()), docs, paths, progress=None if quiet else _progress
        )
        for report in reports:
            if not quiet:
                console.print(
                    f"  {report.added} added, {report.replaced} replaced, {report.unchanged} unchanged, "
                    f"{report.chunks} chunks in {report.seconds:.1f} s"
                    + (f"; {len(report.removed)} no longer in the sources removed" if report.removed else "")
                )
                for path, error in report.failed:
                    console.print(
                        Text.assemble(
                            ("  skipped ", "yellow"), untrusted(path), ": ", untrusted(error, width=200)
                        )
                    )
            done.append({"collection": docs.collection, "fallback": resolved.fallback, **report.to_json()})
    return done


def _progress(report: IngestReport) -> None:
    """A line per embedding batch while a first ingest runs (the whole documentation: many minutes)."""
    console.print(
        f"  ... {report.added + report.replaced} pages, {report.chunks} chunks embedded "
        f"({report.unchanged} unchanged) in {report.seconds:.0f} s"
    )


def research_output(data: dict[str, Any]) -> dict[str, Any] | None:
    """The research tool's output in a ``tool_result`` event's data (None: another tool, or it failed)."""
    output = data.get("output")
    tool = str(data.get("tool") or "")
    if tool.endswith("__research") and isinstance(output, dict) and "route" in output:
        return output
    return None


@demo_app.command("researcher")
def researcher_cmd(
    question: Annotated[
        str, typer.Argument(help="a question about Python (its documentation)")
    ] = DEFAULT_RESEARCH_QUESTION,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model reference (default: the spec's)")
    ] = None,
    agent: Annotated[Path | None, typer.Option(help="the researcher's directory")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="print the run record and the research as JSON")
    ] = False,
) -> None:
    """The research agent: ingests its corpus (the Python documentation from python3.11-doc, or seven
    chapters of its tutorial where that is not installed; the first time takes minutes), then answers a
    question durably and traced, routed shallow or deep, every sentence citing a passage that was
    checked; prints the answer with its sources, the route taken, the run id and where to look further."""
    from shopfloor.spec import load_spec, spec_resolvers

    spec = agent or find_example("researcher")
    settings = get_settings()
    loaded = load_spec(spec, resolvers=spec_resolvers())
    collections = [c.docs.collection for c in loaded.spec.connectors if c.docs is not None]
    workspace = loaded.spec.workspace.name or loaded.spec.name
    ingested: list[dict[str, Any]] = []
    if not settings.client.url:  # a server's runs ingest on the server, as they start
        ingested = _ingest(loaded, quiet=json_out)
    research: dict[str, Any] = {}

    async def body(runtime: Runtime) -> RunRecord:
        run_id = await runtime.start_run(str(spec), question, model=model)
        if not json_out:
            console.print(f"run [bold]{run_id}[/]  (researcher, {model or 'the spec model'})")
        async for stored in runtime.events(run_id):
            if stored.event.kind == "tool_result":
                research.update(research_output(stored.event.data) or {})
            if not json_out:
                print_event(stored, answer=False)  # the answer gets its own panel
        return await runtime.wait(run_id)

    record = _runtime(body)
    code = 0 if record.status == "completed" else 1
    if json_out:
        print_json({"run": record.to_dict(), "ingested": ingested, "research": research or None})
        raise typer.Exit(code)
    run_id = record.run_id
    console.print()
    answer = untrusted(record.output or record.error or "(no answer)")  # the model's text: never markup
    console.print(Panel(answer, title=f"answer · {record.status}"))
    route = research.get("route")
    if isinstance(route, dict):
        console.print(
            Text.assemble(
                "route   ",
                untrusted(route.get("depth"), style="bold"),
                " by ",
                untrusted(route.get("by")),
                ": ",
                untrusted(route.get("reason")),
            )
        )
        if research.get("escalated"):
            console.print(
                Text.assemble("        researched deep after all: ", untrusted(research["escalated"]))
            )
        for n, sub in enumerate(research.get("plan") or [], 1):
            console.print(Text.assemble(f"  plan {n}. ", untrusted(sub)))
        kept, removed = len(research.get("claims") or []), len(research.get("removed") or [])
        sentences = "sentence" if kept == 1 else "sentences"
        console.print(f"verify  {kept} {sentences} kept, {removed} removed by the citation verifier")
    console.print(f"run     {run_id}")
    if record.workspace_commit and research.get("report"):
        commit = record.workspace_commit[:12]
        console.print(
            Text.assemble(
                "report  shopfloor ws cat ", untrusted(f"ws://{workspace}@{commit}/{research['report']}")
            )
        )
    for line in trace_lines(run_id):
        console.print(f"trace   {line}")
    console.print("\nlook further:")
    for command, what in (
        (f"shopfloor trace {run_id}", "the waterfall: routing, retrievals, the model's questions"),
        (f"shopfloor runs show {run_id}", "the run record"),
        *(
            (f"shopfloor docs search {name} {shlex.quote(question)}", "the passages it searched")
            for name in collections
        ),
        (f"shopfloor ws log {workspace}", "the workspace's history (one report per question)"),
    ):
        console.print(f"  {command:<52} {what}")
    raise typer.Exit(code)

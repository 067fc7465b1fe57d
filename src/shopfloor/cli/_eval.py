"""``shopfloor eval run|resume|ls|show|compare|report|rescore``: the evaluation harness, from a shell."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

from shopfloor.cli._app import app, console, err_console, get_services, get_settings, print_json
from shopfloor.cli._untrusted import untrusted

if TYPE_CHECKING:
    from shopfloor.evals import EvalRecord, Harness
    from shopfloor.runtime import Services

__all__ = ["eval_app"]

eval_app = typer.Typer(help="Evaluations: run a suite, compare, gate, report.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
EvalId = Annotated[str, typer.Argument(help="an evaluation id (a unique prefix is enough)")]
BaselineOpt = Annotated[
    str | None,
    typer.Option("--baseline", help="an earlier evaluation that max_regression gates compare with"),
]


def _harness(body: Callable[[Harness], Coroutine[Any, Any, T]]) -> T:
    async def main() -> T:
        from shopfloor.evals import build_harness

        harness = build_harness(get_services())
        try:
            return await body(harness)
        finally:
            harness.close()

    return asyncio.run(main())


def _execute(harness: Harness, eval_id: str, *, gate: bool, baseline: str | None, json_out: bool) -> None:
    """Execute with a progress bar (on stderr) that also counts broken items, then print the results."""
    record = _progress_run(harness, eval_id, quiet=json_out)
    _finish(harness, record, gate=gate, baseline=baseline, json_out=json_out)


def _progress_run(harness: Harness, eval_id: str, *, quiet: bool) -> EvalRecord:

    async def body(h: Harness) -> EvalRecord:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[broken]} broken"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err_console, disable=quiet) as bar:
            rows = await asyncio.to_thread(h.store.items, eval_id)
            done = sum(1 for r in rows if r.finished)
            broken = sum(1 for r in rows if r.status == "broken")
            task = bar.add_task("eval", total=len(rows), completed=done, broken=broken)

            def progress(row: Any, finished: int, total: int) -> None:
                nonlocal broken
                broken += row.status == "broken"
                bar.update(task, completed=finished, broken=broken)

            return await h.execute(eval_id, progress=progress)

    return asyncio.run(body(harness))


def _with_baseline(harness: Harness, record: EvalRecord, baseline: str | None) -> dict[str, Any]:
    from shopfloor.evals import summarise

    summary = dict(record.summary or {})
    if baseline is not None:
        base = harness.store.find(baseline)
        summary = summarise(
            harness.store.items(record.eval_id), record.config.get("gates") or [], base.summary
        )
    return summary


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_tags(summary: dict[str, Any]) -> None:
    """The mean of each pass/fail metric per tag (a benchmark's categories: BFCL's accuracy per category)."""
    tags: dict[str, dict[str, Any]] = summary.get("tags") or {}
    names = [n for n, stats in summary.get("metrics", {}).items() if stats.get("pass_rate") is not None]
    if not tags or not names:
        return
    table = Table("tag", "items", *(Column(header=untrusted(name)) for name in names))
    for tag, metrics in tags.items():
        items = max((stats.get("items") or 0 for stats in metrics.values()), default=0)
        table.add_row(untrusted(tag), str(items), *(_num((metrics.get(n) or {}).get("mean")) for n in names))
    console.print(table)


def _print_summary(record: EvalRecord, summary: dict[str, Any]) -> None:
    console.print(
        Text.assemble(
            "eval ",
            (record.eval_id, "bold"),
            "  ",
            untrusted(record.suite),
            "  agent ",
            untrusted(record.agent),
            f"  {record.agent_digest[:19]}",
        )
    )
    table = Table("metric", "mean", "95% CI", "pass rate", "pass@k", "pass^k", "missing")
    for name, stats in summary.get("metrics", {}).items():
        ci = stats.get("ci95")
        table.add_row(
            untrusted(name),
            _num(stats.get("mean")),
            "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}",
            _num(stats.get("pass_rate")),
            _num(stats.get("pass@k")),
            _num(stats.get("pass^k")),
            str(stats.get("missing")),
        )
    console.print(table)
    _print_tags(summary)
    for judge, agreement in (summary.get("judge_agreement") or {}).items():
        console.print(
            Text.assemble(
                "judge ",
                untrusted(judge),
                " agrees with ",
                untrusted(agreement["with"]),
                f" on {agreement['agreement']:.3f} of {agreement['items']} items",
            )
        )
    for broken in summary.get("broken", []):
        console.print(
            Text.assemble(
                ("broken ", "red"),
                untrusted(broken["item"]),
                f" #{broken['repeat']} ",
                untrusted(broken["reason"] or "", width=120),
            )
        )
    for gate in summary.get("gates", []):
        mark = (
            ("pass", "green")
            if gate["passed"]
            else (("warn", "yellow") if gate["level"] == "warn" else ("FAIL", "bold red"))
        )
        what = f"{gate['metric']} {gate['stat']}" + (f" [{gate['tag']}]" if gate.get("tag") else "")
        console.print(
            Text.assemble(
                ("gate ", "dim"),
                mark,
                " ",
                untrusted(what),
                f" = {gate['value']}",
                " " + "; ".join(gate["problems"]),
            )
        )


def _finish(
    harness: Harness, record: EvalRecord, *, gate: bool, baseline: str | None, json_out: bool
) -> None:
    summary = _with_baseline(harness, record, baseline)
    if json_out:
        print_json({"evaluation": {**record.to_dict(), "summary": summary}})
    else:
        _print_summary(record, summary)
    if gate and not summary.get("gates_passed", False):
        raise typer.Exit(1)


def _agent_path(services: Services, agent: str | None) -> Path | None:
    """``--agent``: a directory, or a release ``NAME@VERSION`` (verified, then its materialised directory)."""
    if agent is None or Path(agent).exists() or "@" not in agent:
        return None if agent is None else Path(agent)
    from shopfloor.ops.releases import Releases

    with Releases(services) as releases:
        return releases.verify(agent)[1]


@eval_app.command("run")
def run_cmd(
    suite: Annotated[Path, typer.Argument(help="the suite's YAML file")],
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="the agent directory, or a release NAME@VERSION (default: the suite's)"),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model reference overriding the agent's")
    ] = None,
    repeat: Annotated[int | None, typer.Option("--repeat", min=1, max=100, help="runs per item")] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, max=64, help="items at once")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="only items with this tag (repeatable)")
    ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.001, help="seconds per item")] = None,
    gate: Annotated[bool, typer.Option("--gate", help="exit 1 when a gate fails (for CI)")] = False,
    baseline: BaselineOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a suite: every item (and repeat) a durable run of the agent in a fresh workspace."""
    from shopfloor.evals import EvalOptions, build_harness, load_suite

    services = get_services()
    harness: Harness = build_harness(services)
    try:
        loaded, _ = load_suite(suite, harness.env(suite.resolve().parent))
        options = EvalOptions(
            agent=_agent_path(services, agent),
            model=model,
            repeat=repeat,
            concurrency=concurrency,
            tags=tuple(tag or ()),
            timeout=timeout,
        )
        record = asyncio.run(harness.create(loaded, options))
        err_console.print(
            f"eval [bold]{record.eval_id}[/] ({record.suite}; "
            f"if interrupted: shopfloor eval resume {record.eval_id[:12]})"
        )
        _execute(harness, record.eval_id, gate=gate, baseline=baseline, json_out=json_out)
    finally:
        harness.close()


@eval_app.command("resume")
def resume_cmd(
    eval_id: EvalId,
    gate: Annotated[bool, typer.Option("--gate", help="exit 1 when a gate fails")] = False,
    baseline: BaselineOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Resume an interrupted evaluation: its unfinished runs recover; finished items are not run again."""
    from shopfloor.evals import build_harness

    harness = build_harness(get_services())
    try:
        _execute(
            harness, harness.store.find(eval_id).eval_id, gate=gate, baseline=baseline, json_out=json_out
        )
    finally:
        harness.close()


@eval_app.command("ls")
def ls_cmd(
    suite: Annotated[str | None, typer.Option(help="only this suite")] = None,
    limit: int = 20,
    json_out: JsonOpt = False,
) -> None:
    """List evaluations, newest first."""

    async def body(h: Harness) -> list[EvalRecord]:
        return await asyncio.to_thread(h.store.list_evals, limit=limit, suite=suite)

    records = _harness(body)
    if json_out:
        print_json([r.to_dict() for r in records])
        return
    table = Table("eval", "suite", "agent", "model", "status", "items", "gates")
    for r in records:
        summary = r.summary or {}
        gates = "-" if not summary.get("gates") else ("pass" if summary.get("gates_passed") else "FAIL")
        table.add_row(
            r.eval_id[:12],
            untrusted(r.suite),
            untrusted(r.agent),
            untrusted(r.model or "-"),
            r.status,
            str(summary.get("rows", "-")),
            gates,
        )
    console.print(table)


@eval_app.command("show")
def show_cmd(eval_id: EvalId, baseline: BaselineOpt = None, json_out: JsonOpt = False) -> None:
    """An evaluation's metrics, broken items and gates; its items' runs are in `shopfloor runs ls`."""

    async def body(h: Harness) -> None:
        record = await asyncio.to_thread(h.store.find, eval_id)
        _finish(h, record, gate=False, baseline=baseline, json_out=json_out)

    _harness(body)


@eval_app.command("compare")
def compare_cmd(
    eval_a: Annotated[str, typer.Argument(help="the baseline evaluation")],
    eval_b: Annotated[str, typer.Argument(help="the candidate")],
    json_out: JsonOpt = False,
) -> None:
    """Compare two evaluations item by item: paired differences, sign test, flipped items, a verdict."""
    from shopfloor.evals import compare

    async def body(h: Harness) -> dict[str, Any]:
        a, b = h.store.find(eval_a), h.store.find(eval_b)
        result = compare(h.store.items(a.eval_id), h.store.items(b.eval_id))
        return {"a": a.eval_id, "b": b.eval_id, **result}

    result = _harness(body)
    if json_out:
        print_json(result)
        return
    table = Table("metric", "A", "B", "Δ mean", "95% CI", "sign p", "flipped", "verdict")
    for name, c in result["metrics"].items():
        ci = c["ci95"]
        table.add_row(
            untrusted(name),
            _num(c["mean_a"]),
            _num(c["mean_b"]),
            _num(c["mean_difference"]),
            "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}",
            f"{c['sign_test_p']:.3g}",
            str(len(c["flipped"])),
            c["verdict"],
        )
    console.print(table)
    console.print(f"verdict: [bold]{result['verdict']}[/]")


@eval_app.command("report")
def report_cmd(
    eval_id: EvalId,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="directory for report.html and report.json")
    ] = None,
    against: Annotated[
        str | None, typer.Option("--compare", help="an evaluation to compare with (as A)")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="a Shopfloor server's URL: link each item to its trace and workspace there"),
    ] = None,
) -> None:
    """Write a self-contained HTML report (inline SVG plots) and its JSON."""
    from shopfloor.evals import compare, report_html, report_json

    async def body(h: Harness) -> Path:
        record = h.store.find(eval_id)
        rows = h.store.items(record.eval_id)
        comparison = compare(h.store.items(h.store.find(against).eval_id), rows) if against else None
        folder = out or Path(f"eval-{record.eval_id[:12]}")
        folder.mkdir(parents=True, exist_ok=True)
        link = server or get_settings().client.url
        (folder / "report.html").write_text(report_html(record, rows, comparison, server=link))
        (folder / "report.json").write_text(
            json.dumps(report_json(record, rows, comparison), indent=2, default=str)
        )
        return folder

    folder = _harness(body)
    _print_benchmarks(json.loads((folder / "report.json").read_text())["benchmarks"])
    console.print(f"wrote {folder / 'report.html'} and {folder / 'report.json'}")


def _share(share: dict[str, Any]) -> str:
    missing = f" ({share['missing']} missing)" if share.get("missing") else ""
    return f"{_num(share.get('mean'))} of {share.get('items', 0)}{missing}"


def _print_benchmarks(tables: dict[str, Any]) -> None:
    """The public benchmarks' tables of the report: BFCL per category beside its published figures,
    AgentDojo per suite."""
    bfcl = tables.get("bfcl")
    if bfcl:
        categories = list(bfcl["categories"])
        table = Table("model", *categories, title="BFCL accuracy per category")
        table.add_row("[bold]this evaluation[/]", *(_share(bfcl["categories"][c]) for c in categories))
        for published in bfcl["published"]["models"]:
            table.add_row(published["model"], *(_num(published["accuracy"].get(c)) for c in categories))
        console.print(table)
        console.print(f"published figures: {bfcl['published']['source']['url']}", highlight=False)
    dojo = tables.get("agentdojo")
    if dojo:
        table = Table(
            "suite", "utility", "utility under attack", "attack success", title="AgentDojo per suite"
        )
        for suite, parts in dojo["suites"].items():
            table.add_row(
                suite, *(_share(parts[p]) for p in ("utility", "utility_under_attack", "attack_success"))
            )
        console.print(table)


@eval_app.command("rescore")
def rescore_cmd(
    eval_id: EvalId,
    suite: Annotated[
        Path | None, typer.Option("--suite", help="score with this suite's scorers instead")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Score an evaluation again from what its runs recorded: nothing is run, no model is called
    (a judge's recorded reply is reused)."""
    from shopfloor.evals import load_suite

    async def body(h: Harness) -> EvalRecord:
        configs = list(load_suite(suite, h.env(suite.resolve().parent))[0].scorer_configs) if suite else None
        return await h.rescore(eval_id, scorers=configs)

    record = _harness(body)
    if json_out:
        print_json(record.to_dict())
    else:
        _print_summary(record, record.summary or {})

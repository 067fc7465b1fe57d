"""``shopfloor runs feedback`` and ``shopfloor eval dataset from-feedback``: what users say about runs,
stored per run and release, and turned into dataset items of the evaluation harness."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from shopfloor.cli._app import console, err_console, get_settings, print_json
from shopfloor.cli._eval import eval_app
from shopfloor.cli._releases import _actor, _releases
from shopfloor.cli._run import runs_app

__all__ = ["dataset_app"]

dataset_app = typer.Typer(help="Datasets for the harness, made from what happened.", no_args_is_help=True)
eval_app.add_typer(dataset_app, name="dataset")


@runs_app.command("feedback")
def feedback_cmd(
    run_id: Annotated[str, typer.Argument(help="the run id (a unique prefix is enough)")],
    rating: Annotated[int, typer.Option("--rating", help="-1 (bad) or 1 (good)")],
    comment: Annotated[str, typer.Option("--comment", help="what was right or wrong")] = "",
    correction: Annotated[
        str | None, typer.Option("--correction", help="the answer it should have given")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Rate a run; stored with the release it ran, shown in `shopfloor deployments show` (against the
    server at SHOPFLOOR_URL where it is set)."""
    from shopfloor.ops.releases import Deployments
    from shopfloor.runtime import RunStore

    settings = get_settings()
    if settings.client.url:
        from shopfloor.cli._remote import RemoteRuntime

        async def remote() -> dict[str, Any]:
            async with RemoteRuntime(settings.client) as client:
                body = {"rating": rating, "comment": comment, "correction": correction}
                return await client.feedback(run_id, body)

        answer = asyncio.run(remote())
        if json_out:
            print_json(answer)
        else:
            console.print(f"feedback {rating:+d} on run {answer['run_id']}")
        return
    with _releases() as releases:
        run = RunStore(releases.store.engine, owns_engine=False).find(run_id)
        item = Deployments(releases).feedback(
            run, author=_actor(), rating=rating, comment=comment, correction=correction
        )
    if json_out:
        print_json(item.to_json())
        return
    console.print(
        f"feedback {rating:+d} on run {item.run_id}" + (f" ({item.release})" if item.release else "")
    )


@dataset_app.command("from-feedback")
def from_feedback_cmd(
    agent: Annotated[str, typer.Argument(help="the agent")],
    since: Annotated[str, typer.Option("--since", help="feedback of the last 30m, 12h, 7d, 2w")] = "7d",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="the JSONL file to write (default: stdout)")
    ] = None,
) -> None:
    """Write a JSONL dataset of the runs users corrected or rated -1: what they report becomes a test."""
    from shopfloor.errors import RunNotFoundError
    from shopfloor.ops.releases import feedback_items
    from shopfloor.runtime import RunRecord, RunStore
    from shopfloor.security import parse_duration

    cutoff = time.time() - parse_duration(since)
    with _releases() as releases:
        runs = RunStore(releases.store.engine, owns_engine=False)

        def run(run_id: str) -> RunRecord | None:
            try:
                return runs.get(run_id)
            except RunNotFoundError:
                return None

        items = feedback_items(releases.store.feedback(agent=agent, since=cutoff), run)
    text = "".join(json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n" for item in items)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
    err_console.print(f"{len(items)} item(s) from the feedback on {agent} since {since}")

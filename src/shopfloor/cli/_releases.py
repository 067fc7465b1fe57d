"""``shopfloor release create|ls|show|verify|diff``, ``shopfloor deploy``, ``shopfloor deployments
ls|show|evaluate``, ``shopfloor rollback``: signed releases and the deployments that serve them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from shopfloor.cli._app import app, console, get_services, print_json
from shopfloor.cli._untrusted import untrusted

if TYPE_CHECKING:
    from shopfloor.ops.releases import Deployment, Deployments, Release, Releases
    from shopfloor.runtime import Services

__all__ = ["deployments_app", "release_app"]

release_app = typer.Typer(help="Signed, immutable releases of agents.", no_args_is_help=True)
app.add_typer(release_app, name="release")
deployments_app = typer.Typer(
    help="Which release serves each agent: canaries, evaluation.", no_args_is_help=True
)
app.add_typer(deployments_app, name="deployments")

T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
RefArg = Annotated[str, typer.Argument(help="the release, NAME@VERSION")]


def _actor() -> str:
    from shopfloor.security import LOCAL_ADMIN

    return LOCAL_ADMIN.id


@contextmanager
def _releases() -> Iterator[Releases]:
    from shopfloor.ops.releases import Releases

    services = get_services()
    try:
        with Releases(services) as releases:
            yield releases
    finally:
        services.close()


def _with_deployments(body: Callable[[Deployments], T]) -> T:
    from shopfloor.ops.releases import Deployments

    with _releases() as releases:
        return body(Deployments(releases))


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def eval_finder(services: Services) -> Callable[[str], list[dict[str, Any]]]:
    """The finished evaluations of an agent digest, from the eval store (attached to a release)."""
    from shopfloor.evals import finished_evaluations

    return functools.partial(finished_evaluations, services)


def _release_key(key: str | None) -> Path:
    from shopfloor.cli._skill import _private_key

    return _private_key(key)


def _show_release(release: Release) -> None:
    console.print(
        Text.assemble(("release ", "bold"), untrusted(release.ref), f"  {release.content_digest[:23]}")
    )
    console.print(f"agent digest  {release.agent_digest}")
    console.print(f"made from     {release.source_digest}")
    console.print(
        Text.assemble("created       ", _when(release.created_at), " by ", untrusted(release.created_by))
    )
    console.print(f"signed by     {release.signer[:60]}")
    for rel, digest in sorted(release.files.items()):
        console.print(Text.assemble("file          ", untrusted(rel), f"  {digest[:23]}"))
    for skill in release.skills:
        console.print(Text.assemble("skill         ", untrusted(skill["ref"]), f"  {skill['digest'][:23]}"))
    for model in release.models:
        pin = f"  sha256:{model['sha256'][:16]}" if model.get("sha256") else "  (route)"
        console.print(Text.assemble("model         ", untrusted(model["ref"]), pin))
    for item in release.evaluations:
        console.print(Text.assemble("evaluation    ", untrusted(item["suite"]), f"  {item['eval_id'][:12]}"))


@release_app.command("create")
def create_cmd(
    agent_dir: Annotated[Path, typer.Argument(help="the agent: a directory with agent.yaml, or the file")],
    version: Annotated[
        str | None, typer.Option("--version", help="the release's version (default: the spec's)")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="signing key: a name under $SHOPFLOOR_HOME/keys or a file")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Make an immutable, signed release of an agent (same version, other content: refused)."""
    from shopfloor.ops.releases import Releases

    services = get_services()
    try:
        with Releases(services) as releases:
            release, new = releases.create(
                agent_dir,
                key=_release_key(key),
                actor=_actor(),
                version=version,
                evaluations=eval_finder(services),
            )
    finally:
        services.close()
    if json_out:
        print_json({**release.to_json(), "created": new})
        return
    console.print(f"{'created' if new else 'already released (same content)'}:")
    _show_release(release)


@release_app.command("ls")
def ls_cmd(
    name: Annotated[str | None, typer.Argument(help="only the releases of this agent")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List releases, oldest first."""
    with _releases() as releases:
        found = releases.list_releases(name)
    if json_out:
        print_json([release.to_json() for release in found])
        return
    table = Table("release", "content", "created", "by", "files", "skills", "evaluations")
    for release in found:
        table.add_row(
            untrusted(release.ref),
            release.content_digest[:23],
            _when(release.created_at),
            untrusted(release.created_by),
            str(len(release.files)),
            str(len(release.skills)),
            str(len(release.evaluations)),
        )
    console.print(table)


@release_app.command("show")
def show_cmd(ref: RefArg, json_out: JsonOpt = False) -> None:
    """One release: its pins, files, the evaluations it carries and those run on it since
    (`shopfloor eval run SUITE --agent NAME@VERSION`)."""
    from shopfloor.ops.releases import Releases

    services = get_services()
    try:
        with Releases(services) as releases:
            release = releases.get(ref)
        since = eval_finder(services)(release.agent_digest)
    finally:
        services.close()
    if json_out:
        print_json({**release.to_json(), "evaluated_since": since})
        return
    _show_release(release)
    for item in since:
        console.print(Text.assemble("evaluated on   ", untrusted(item["suite"]), f"  {item['eval_id'][:12]}"))


@release_app.command("verify")
def verify_cmd(ref: RefArg, json_out: JsonOpt = False) -> None:
    """Check the signature, the skill and model pins, and every stored file (exit 2 when one fails)."""
    with _releases() as releases:
        release, path = releases.verify(ref)
    if json_out:
        print_json({"ref": release.ref, "ok": True, "path": str(path), "agent_digest": release.agent_digest})
        return
    console.print(Text.assemble(("ok ", "green"), untrusted(release.ref), f"  {release.agent_digest}"))


@release_app.command("diff")
def diff_cmd(
    a: Annotated[str, typer.Argument(help="NAME@VERSION")],
    b: Annotated[str, typer.Argument(help="NAME@VERSION")],
    json_out: JsonOpt = False,
) -> None:
    """What changed between two releases: spec fields, files, skills, models."""
    with _releases() as releases:
        lines = releases.diff(a, b)
    if json_out:
        print_json({"from": a, "to": b, "changes": lines})
        return
    for line in lines or ["no differences"]:
        console.print(untrusted(line, width=200))


def _show_deployment(deployment: Deployment, json_out: bool, extra: dict[str, Any] | None = None) -> None:
    if json_out:
        print_json({**deployment.to_json(), **(extra or {})})
        return
    line = Text.assemble((deployment.agent, "bold"), "  stable ", untrusted(deployment.stable))
    if deployment.candidate:
        line.append_text(
            Text.assemble("  candidate ", untrusted(deployment.candidate), f" ({deployment.canary}%)")
        )
    console.print(line)


@app.command("deploy")
def deploy_cmd(
    ref: RefArg,
    canary: Annotated[
        int | None, typer.Option("--canary", min=1, max=99, help="send this percentage of callers to it")
    ] = None,
    ignore_gates: Annotated[
        bool, typer.Option("--ignore-gates", help="deploy although its evaluation failed a gate (audited)")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Serve a verified release to every new run of its agent, or to a canary of callers; a release whose
    attached evaluation failed a gate is refused."""
    deployment = _with_deployments(
        lambda d: d.deploy(ref, actor=_actor(), canary=canary, ignore_gates=ignore_gates)
    )
    _show_deployment(deployment, json_out)


@app.command("rollback")
def rollback_cmd(
    name: Annotated[str, typer.Argument(help="the agent")],
    to: Annotated[str | None, typer.Option("--to", help="the version to go back to")] = None,
    json_out: JsonOpt = False,
) -> None:
    """End a canary, or go back to the previous stable release (or --to VERSION)."""
    deployment = _with_deployments(lambda d: d.rollback(name, actor=_actor(), to=to))
    _show_deployment(deployment, json_out)


@deployments_app.command("ls")
def deployments_ls_cmd(json_out: JsonOpt = False) -> None:
    """Every deployment: stable release, candidate and canary."""
    found = _with_deployments(lambda d: d.list_deployments())
    if json_out:
        print_json([deployment.to_json() for deployment in found])
        return
    table = Table("agent", "stable", "candidate", "canary", "updated", "by")
    for deployment in found:
        table.add_row(
            untrusted(deployment.agent),
            untrusted(deployment.stable),
            untrusted(deployment.candidate or "-"),
            f"{deployment.canary}%" if deployment.candidate else "-",
            _when(deployment.updated_at),
            untrusted(deployment.updated_by),
        )
    console.print(table)


@deployments_app.command("show")
def deployments_show_cmd(
    name: Annotated[str, typer.Argument(help="the agent")], json_out: JsonOpt = False
) -> None:
    """One deployment, its history, and its releases' metrics (since the canary began, else the window)."""
    import time

    def body(d: Deployments) -> tuple[Deployment, list[Any], list[Any]]:
        deployment = d.get(name)
        since = deployment.candidate_since or time.time() - d.limits.window
        versions = [deployment.stable, *([deployment.candidate] if deployment.candidate else [])]
        metrics = [d.metrics(name, version, since=since) for version in versions]
        return deployment, d.history(name), metrics

    deployment, history, metrics = _with_deployments(body)
    if json_out:
        _show_deployment(
            deployment,
            True,
            {"history": [e.to_json() for e in history], "metrics": [m.to_json() for m in metrics]},
        )
        return
    _show_deployment(deployment, False)
    table = Table(
        "release", "track", "runs", "completed", "faults", "timeouts", "p50 s", "feedback", "judged"
    )
    for m in metrics:
        table.add_row(
            untrusted(m.release),
            m.track or "-",
            str(m.runs),
            f"{m.completion_rate:.0%}",
            f"{m.fault_rate:.0%}",
            f"{m.timeout_rate:.0%}",
            "-" if m.p50_latency is None else f"{m.p50_latency:.2f}",
            "-" if m.feedback_mean is None else f"{m.feedback_mean:+.2f} ({m.feedback_count})",
            "-" if m.quality_mean is None else f"{m.quality_mean:.2f} ({m.judged_count})",
        )
    console.print(table)
    for event in history:
        console.print(
            Text.assemble(
                _when(event.at),
                "  ",
                (event.action, "bold"),
                "  ",
                untrusted(event.actor),
                "  ",
                untrusted(event.reason, width=120),
            )
        )


@deployments_app.command("evaluate")
def deployments_evaluate_cmd(
    name: Annotated[str, typer.Argument(help="the agent")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="judge, change nothing")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Compare the candidate with stable over the window: promote it, roll it back, or wait."""
    decision = _with_deployments(lambda d: d.evaluate(name, actor=_actor(), apply=not dry_run))
    if json_out:
        print_json(decision.to_json())
        return
    console.print(Text.assemble((decision.action, "bold"), "  ", untrusted(decision.reason, width=200)))

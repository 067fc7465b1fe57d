"""``shopfloor sandbox``: run one command the way a skill would be run; show the isolation layers."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from shopfloor.cli._app import app, console, err_console, get_services, get_settings, print_json
from shopfloor.errors import SandboxError, SandboxPolicyError, SpecError
from shopfloor.sandbox import (
    Command,
    ExecRequest,
    ExecResult,
    SandboxPolicy,
    parse_size,
    probe_capabilities,
    select_backend,
)
from shopfloor.spec import SandboxPolicySpec, load_yaml_file

__all__ = ["sandbox_app"]

sandbox_app = typer.Typer(
    help="Sandboxes: run a command confined; list isolation layers.", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _policy(
    policy_file: Path | None,
    isolation: str | None,
    timeout: float | None,
    memory: str | None,
    cpus: float | None,
    pids: int | None,
    network: str | None,
    disk: str | None,
) -> SandboxPolicy:
    data: dict[str, object] = {}
    if policy_file is not None:
        try:
            doc = load_yaml_file(policy_file)
        except SpecError as exc:
            raise SandboxPolicyError(f"cannot read the policy: {exc}") from exc
        if doc.problems:
            raise SandboxPolicyError("\n".join(f"{where}: {message}" for where, message in doc.problems))
        loaded = doc.data
        if not isinstance(loaded, dict):
            raise SandboxPolicyError(
                f"{policy_file}: a policy is a mapping (isolation, network, memory, ...)"
            )
        data = dict(loaded.get("sandbox", loaded))
    try:
        spec = SandboxPolicySpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SandboxPolicyError(f"{policy_file}: invalid sandbox policy: {problems}") from exc
    base = SandboxPolicy.from_spec(spec)
    updates: dict[str, object] = {}
    if isolation is not None:
        updates["isolation"] = isolation
    if timeout is not None:
        updates["timeout"] = timeout
    if memory is not None:
        updates["memory"] = parse_size(memory)
    if cpus is not None:
        updates["cpus"] = cpus
    if pids is not None:
        updates["pids"] = pids
    if disk is not None:
        updates["disk"] = parse_size(disk)
    if network is not None:
        updates["network"] = SandboxPolicy.parse_network(network)
    fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
    return SandboxPolicy(**{**fields, **updates})


@sandbox_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_cmd(
    command: Annotated[list[str], typer.Argument(help="the command and its arguments, after --")],
    policy_file: Annotated[Path | None, typer.Option("--policy", help="YAML sandbox policy")] = None,
    isolation: Annotated[str | None, typer.Option(help="auto, bwrap, landlock, gvisor or none")] = None,
    timeout: Annotated[float | None, typer.Option(help="wall-clock seconds (default 30)")] = None,
    memory: Annotated[str | None, typer.Option(help="memory limit, e.g. 256M, 1G")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU quota in cores")] = None,
    pids: Annotated[int | None, typer.Option(help="max processes")] = None,
    disk: Annotated[str | None, typer.Option(help="bytes the sandbox may write in all, e.g. 1G")] = None,
    network: Annotated[
        str | None, typer.Option(help="none, or HOST:PORT,... reachable via the proxy")
    ] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="directory mounted at /workspace (default: a temp dir)")
    ] = None,
    tenant: Annotated[str, typer.Option(help="tenant name (picks the uid)")] = "cli",
    stdin: Annotated[bool, typer.Option("--stdin", help="pass this process's stdin to the command")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run CMD in a sandbox; exit with its status. Example: shopfloor sandbox exec --memory 256M -- ls"""
    services = get_services()
    policy = _policy(policy_file, isolation, timeout, memory, cpus, pids, network, disk)
    scratch = None
    if workspace is None:
        scratch = Path(tempfile.mkdtemp(prefix="shopfloor-ws-"))
    data = sys.stdin.buffer.read() if stdin else b""
    try:
        request = ExecRequest(
            policy=policy,
            command=Command(argv=tuple(command), stdin=data),
            workspace=(workspace or scratch or Path.cwd()).resolve(),
            tenant=tenant,
        )
        # The backend the policy picks among the process's (the cheapest one-shot path it has).
        result: ExecResult = asyncio.run(services.sandbox(policy).run(request))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if json_out:
        print_json(result.to_dict())
    else:
        sys.stdout.buffer.write(result.stdout)
        sys.stdout.buffer.flush()
        sys.stderr.buffer.write(result.stderr)
        sys.stderr.buffer.flush()
        for warning in result.warnings:
            err_console.print(f"[bold yellow]warning:[/] {warning}")
        if result.killed_by is not None:
            err_console.print(
                f"[bold red]sandbox:[/] killed ({result.killed_by}) after {result.wall_time:.2f} s"
            )
        if result.truncated:
            err_console.print(f"[yellow]sandbox:[/] output truncated at {policy.max_output} bytes")
    raise typer.Exit(result.exit_code)


@sandbox_app.command("layers")
def layers_cmd(json_out: JsonOpt = False) -> None:
    """Which isolation layers work on this host, and which backend ``auto`` picks."""
    settings = get_settings()
    caps = probe_capabilities()
    try:
        chosen: str | None = select_backend(SandboxPolicy(), settings, caps).name
        problem = None
    except SandboxError as exc:
        chosen, problem = None, str(exc)
    lines = caps.lines()
    if json_out:
        print_json(
            {
                "backend": chosen,
                "problem": problem,
                "layers": [{"layer": x.layer, "ok": x.ok, "detail": x.detail} for x in lines],
            }
        )
        return
    for line in lines:
        mark = "[green]ok[/]" if line.ok else "[yellow]--[/]"
        console.print(f"{mark}  {line.layer:24} {line.detail}")
    console.print(f"auto backend: [bold]{chosen}[/]" if chosen else f"[red]no backend:[/] {problem}")

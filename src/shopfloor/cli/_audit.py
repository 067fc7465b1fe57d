"""``shopfloor audit ls | tail | verify | export``: the tamper-evident audit log."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from shopfloor.cli._app import app, console, get_settings, print_json
from shopfloor.cli._untrusted import untrusted

if TYPE_CHECKING:
    from shopfloor.security import AuditEntry

__all__ = ["audit_app"]

audit_app = typer.Typer(help="The audit log: list, tail, verify, export to a SIEM.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _show(entries: list[AuditEntry], json_out: bool) -> None:
    if json_out:
        print_json([entry.to_dict() for entry in entries])
        return
    table = Table("#", "time", "actor", "event", "outcome", "resource", "details")
    for entry in entries:
        style = {"ok": "green", "denied": "red", "failed": "yellow"}.get(entry.outcome, "white")
        table.add_row(
            str(entry.seq),
            datetime.fromtimestamp(entry.at).strftime("%Y-%m-%d %H:%M:%S"),
            untrusted(entry.actor),
            entry.kind,
            Text(entry.outcome, style=style),
            untrusted(entry.resource),
            untrusted(", ".join(f"{k}={v}" for k, v in entry.details.items()), width=60),
        )
    console.print(table)


@audit_app.command("ls")
def ls_cmd(
    after: Annotated[int, typer.Option(help="entries after this number")] = 0,
    limit: Annotated[int, typer.Option(help="at most N entries")] = 100,
    kind: Annotated[str | None, typer.Option(help="only this kind of event (permission.denied ...)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List audit entries, oldest first."""
    from shopfloor.security import build_audit_log

    with build_audit_log(get_settings()) as log:
        _show(log.entries(after=after, limit=limit, kind=kind), json_out)


@audit_app.command("tail")
def tail_cmd(
    count: Annotated[int, typer.Option("-n", help="the last N entries")] = 20, json_out: JsonOpt = False
) -> None:
    """The last entries of the audit log."""
    from shopfloor.security import build_audit_log

    with build_audit_log(get_settings()) as log:
        _show(log.tail(count), json_out)


@audit_app.command("verify")
def verify_cmd(json_out: JsonOpt = False) -> None:
    """Check the hash chain and the signed checkpoints; exit 1 naming the first bad entry. The entries
    after the last checkpoint are chained but not signed: reported apart as the unverified tail."""
    from dataclasses import asdict

    from shopfloor.security import build_audit_log

    with build_audit_log(get_settings()) as log:
        result = log.verify()
    if json_out:
        print_json(asdict(result))
    elif result.ok:
        console.print(Text.assemble(("ok", "green"), ": ", result.summary))
    else:
        console.print(Text.assemble(("tampered", "bold red"), ": ", result.summary))
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def export_cmd(json_out: JsonOpt = False) -> None:
    """Send the entries each configured SIEM destination has not accepted yet (failed ones stay queued)."""
    from dataclasses import asdict

    from shopfloor.security import build_audit_exporters, build_audit_log, export_audit

    settings = get_settings()
    with build_audit_log(settings) as log:
        statuses = [export_audit(log, exporter) for exporter in build_audit_exporters(settings)]
    if json_out:
        print_json([asdict(status) for status in statuses])
    else:
        if not statuses:
            console.print(
                "no SIEM destination configured ([security.audit] jsonl_file, syslog_tcp, syslog_udp, "
                "otlp_logs)"
            )
        for status in statuses:
            console.print(
                f"{status.exporter}: sent {status.sent}, queued {status.queued}, failures {status.failures}"
                + (f" ({status.error})" if status.error else "")
            )
    if any(status.error for status in statuses):
        raise typer.Exit(1)

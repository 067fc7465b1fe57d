"""The command line against a server (``SHOPFLOOR_URL``, ``SHOPFLOOR_API_KEY``): same commands, output."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest
from click.testing import Result
from gateway_support import Keys, LiveServer
from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import load_settings
from shopfloor.errors import (
    AuthenticationError,
    ConfigError,
    KeyNotFoundError,
    PermissionDeniedError,
    RunStateError,
    WorkspaceNotFoundError,
)
from shopfloor.gateway import build_server
from shopfloor.workspace import Workspaces

EXAMPLE = Path(__file__).parents[2] / "examples" / "calculator"
cli = CliRunner()


@pytest.fixture
def remote(fast_runtime: None, keys: Keys, live: list[LiveServer], monkeypatch: pytest.MonkeyPatch) -> str:
    live.append(LiveServer(build_server(load_settings(), worker=True)))
    monkeypatch.setenv("SHOPFLOOR_URL", live[-1].url)
    monkeypatch.setenv("SHOPFLOOR_API_KEY", keys.admin)
    return live[-1].url


def test_run_and_runs_commands_go_through_the_server(remote: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli.invoke(app, ["run", str(EXAMPLE), "How many km is 26.2 miles?", "--model", "test"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and len(lines[0].split()[1]) == 32
    assert "model → calculator" in result.stdout and "completed (final_answer)" in result.stdout
    run_id = lines[0].split()[1]
    listed = json.loads(cli.invoke(app, ["runs", "ls", "--json"]).stdout)
    # The caller is the API key: the run was started by the server, not by this process.
    assert listed[0]["run_id"] == run_id and listed[0]["caller"].startswith("key:")
    shown = json.loads(cli.invoke(app, ["runs", "show", run_id, "--json"]).stdout)
    assert shown["status"] == "completed" and shown["total_tokens"] > 0
    logs = cli.invoke(app, ["runs", "logs", run_id, "--json"])
    kinds = [json.loads(line)["kind"] for line in logs.stdout.splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    # `trace --json` through the server prints what it prints locally. Spans reach the store in
    # batches: wait until two reads in a row agree and hold the root span (it ends last).
    deadline = time.monotonic() + 30
    previous = None
    while True:
        remote_trace = cli.invoke(app, ["trace", run_id, "--json"])
        if remote_trace.exit_code == 0 and remote_trace.stdout == previous and "invoke_agent" in previous:
            break
        previous = remote_trace.stdout if remote_trace.exit_code == 0 else None
        assert time.monotonic() < deadline, remote_trace.output
        time.sleep(0.3)
    assert json.loads(remote_trace.stdout)["run_id"] == run_id
    assert "invoke_agent" in cli.invoke(app, ["trace", run_id]).stdout
    with monkeypatch.context() as local:
        local.delenv("SHOPFLOOR_URL")
        assert cli.invoke(app, ["trace", run_id, "--json"]).stdout == remote_trace.stdout
    again = cli.invoke(app, ["runs", "cancel", run_id])
    assert isinstance(again.exception, RunStateError) and "already ended" in str(again.exception)
    monkeypatch.setenv("SHOPFLOOR_API_KEY", "sf_000000000000_" + "A" * 43)
    refused = cli.invoke(app, ["runs", "ls"])
    assert isinstance(refused.exception, AuthenticationError) and "401" in str(refused.exception)


def test_runs_fork_goes_through_the_server(remote: str) -> None:
    ran = cli.invoke(app, ["run", str(EXAMPLE), "How many km is 26.2 miles?", "--model", "test", "--json"])
    assert ran.exit_code == 0, ran.output
    run = json.loads(ran.stdout)
    # live from the record's second step (the calculator call): the first is the run's recorded reply
    forked = cli.invoke(app, ["runs", "fork", run["run_id"][:10], "--step", "2", "--json"])
    assert forked.exit_code == 0, forked.output
    fork = json.loads(forked.stdout)
    assert fork["run_id"] != run["run_id"] and fork["status"] == "completed"
    assert (fork["parent_run_id"], fork["fork_step"]) == (run["run_id"], 2)
    assert fork["output"] == run["output"] and fork["caller"].startswith("key:")
    followed = cli.invoke(app, ["runs", "fork", run["run_id"], "--step", "3"])
    assert followed.exit_code == 0 and "completed (final_answer)" in followed.stdout, followed.output
    outside = cli.invoke(app, ["runs", "fork", run["run_id"], "--step", "9"])
    assert outside.exit_code != 0 and "422" in str(outside.exception), outside.output
    assert "body.step" in str(outside.exception) and "from 1 to 6" in str(outside.exception)


def _local_and_remote(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Result, Result]:
    """``shopfloor ARGS`` through the server, then on this machine's stores."""
    remote = cli.invoke(app, args)
    with monkeypatch.context() as local:
        local.delenv("SHOPFLOOR_URL")
        return cli.invoke(app, args), remote


def test_ws_commands_print_the_same_through_the_server(remote: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def history() -> tuple[str, str]:
        repo = Workspaces.from_settings(load_settings())
        try:
            ws = repo.workspace("notes")
            view = await ws.open()
            await view.write("a.txt", "one\n")
            await view.write("bin/run.sh", "echo hi\n", executable=True)
            first = await view.commit("first")
            view = await ws.open()
            await view.write("a.txt", "two\n")
            return first, await view.commit("second")
        finally:
            repo.close()

    first, second = asyncio.run(history())
    for args in (
        ["ws", "ls"],
        ["ws", "ls", "--json"],
        ["ws", "ls", "notes"],
        ["ws", "ls", f"notes@{first}:bin", "--json"],
        ["ws", "cat", "notes:a.txt"],
        ["ws", "cat", f"ws://notes@{first}/a.txt", "--json"],
        ["ws", "log", "notes"],
        ["ws", "log", "notes", "-n", "1", "--json"],
        ["ws", "diff", "notes", first, second],
        ["ws", "diff", "notes", first, "--text"],
        ["ws", "diff", "notes", first, second, "--json"],
    ):
        local, through = _local_and_remote(args, monkeypatch)
        assert local.exit_code == through.exit_code == 0, (args, local.output, through.output)
        assert through.stdout == local.stdout, args
    assert "two" in cli.invoke(app, ["ws", "cat", "notes:a.txt"]).stdout
    assert json.loads(cli.invoke(app, ["ws", "log", "notes", "--json"]).stdout)[0]["id"] == second
    for args in (["ws", "log", "notes", "--ref", "nowhere"], ["ws", "cat", "notes:missing.txt"]):
        local, through = _local_and_remote(args, monkeypatch)
        assert isinstance(local.exception, WorkspaceNotFoundError), local.output
        assert isinstance(through.exception, WorkspaceNotFoundError), through.output
        assert str(local.exception) in str(through.exception)  # the server's message, as it was


def test_metrics_print_the_same_through_the_server(remote: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli.invoke(app, ["run", str(EXAMPLE), "How many km is 26.2 miles?", "--model", "test"])
    assert result.exit_code == 0, result.output
    # spans reach the trace store in batches: compare once two reads in a row agree
    deadline = time.monotonic() + 30
    previous = None
    while True:
        local, through = _local_and_remote(["metrics", "--json"], monkeypatch)
        assert local.exit_code == through.exit_code == 0, (local.output, through.output)
        if through.stdout == local.stdout == previous:
            break
        previous = local.stdout
        assert time.monotonic() < deadline, (local.stdout, through.stdout)
        time.sleep(0.3)
    report = json.loads(through.stdout)
    assert report["runs"] == 1 and report["completed"] == 1 and report["components"]
    for args in (["metrics"], ["metrics", "--agent", "calculator", "--since", "1h", "--json"]):
        local, through = _local_and_remote(args, monkeypatch)
        assert local.exit_code == through.exit_code == 0, (local.output, through.output)
        assert through.stdout == local.stdout, args
    assert "per component" in through.stdout or "runs" in through.stdout
    refused = cli.invoke(app, ["metrics", "--prometheus"])
    assert isinstance(refused.exception, ConfigError) and "server's machine" in str(refused.exception)


def test_approve_reject_and_cancel_print_the_same_through_the_server(
    remote: str, agent_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def waiting() -> str:
        """A run of the ticker waiting for alice's approval of a transfer."""
        started = cli.invoke(app, ["run", str(agent_dir), "ticks=1 tool=transfer", "--detach", "--json"])
        assert started.exit_code == 0, started.output
        run_id = str(json.loads(started.stdout)["run_id"])
        deadline = time.monotonic() + 30
        while json.loads(cli.invoke(app, ["runs", "show", run_id, "--json"]).stdout)["status"] != (
            "waiting_approval"
        ):
            assert time.monotonic() < deadline, "the run did not reach its approval"
            time.sleep(0.1)
        return run_id

    for verb, extra in (("approve", ["--reason", "ok"]), ("reject", ["--reason", "no"]), ("cancel", [])):
        there, here = waiting(), waiting()
        through = cli.invoke(app, ["runs", verb, there, *extra])
        with monkeypatch.context() as local_mode:
            local_mode.delenv("SHOPFLOOR_URL")
            by = ["--by", "alice"] if verb != "cancel" else []  # through the server: the key decides
            local = cli.invoke(app, ["runs", verb, here, *extra, *by])
        assert local.exit_code == through.exit_code == 0, (verb, local.output, through.output)
        assert through.stdout.replace(there, "RUN") == local.stdout.replace(here, "RUN"), verb
        assert there in through.stdout
        ended = [
            json.loads(cli.invoke(app, ["runs", "show", run_id, "--json"]).stdout) for run_id in (there, here)
        ]
        if verb == "cancel":
            assert [r["status"] for r in ended] == ["cancelled", "cancelled"]
    by = cli.invoke(app, ["runs", "approve", waiting(), "--by", "alice"])
    assert isinstance(by.exception, ConfigError) and "the API key's" in str(by.exception)


def test_keys_commands_print_the_same_through_the_server(
    remote: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def masked(result: Result) -> str:
        assert result.exit_code == 0, result.output
        text = re.sub(r"sf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", "KEY", result.stdout)
        return re.sub(r"\b[0-9a-f]{12}\b", "ID", text)

    create = ["keys", "create", "--name", "ci", "--role", "viewer", "--team", "ml", "--expires", "30d"]
    there, here = _local_and_remote(create, monkeypatch)[::-1]
    assert masked(there) == masked(here) and "not shown again" in there.output
    made = json.loads(cli.invoke(app, [*create, "--json"]).stdout)
    assert made["key"].startswith(f"sf_{made['key_id']}_") and made["created_by"].startswith("key:")
    for args in (
        ["keys", "ls"],
        ["keys", "ls", "--json"],
        ["keys", "show", made["key_id"]],
        ["keys", "show", made["key_id"], "--json"],
        ["keys", "show", made["key"]],  # the whole key: only its id is sent
    ):
        local, through = _local_and_remote(args, monkeypatch)
        assert local.exit_code == through.exit_code == 0, (args, local.output, through.output)
        assert through.stdout == local.stdout, args
        assert made["key"].split("_", 2)[2] not in through.stdout
    listed = json.loads(cli.invoke(app, ["keys", "ls", "--json"]).stdout)
    ids = [k["key_id"] for k in listed if k["name"] == "ci"]
    through = cli.invoke(app, ["keys", "revoke", ids[0]])
    with monkeypatch.context() as local_mode:
        local_mode.delenv("SHOPFLOOR_URL")
        local = cli.invoke(app, ["keys", "revoke", ids[1]])
    assert masked(through) == masked(local) and ids[0] in through.stdout
    shown = json.loads(cli.invoke(app, ["keys", "show", ids[0], "--json"]).stdout)
    assert shown["state"] == "revoked"
    for args, error in (
        (["keys", "revoke", "000000000000"], KeyNotFoundError),
        (["keys", "create", "--name", "x", "--role", "nobody"], ConfigError),
    ):
        local, through = _local_and_remote(args, monkeypatch)
        assert isinstance(local.exception, error), local.output
        assert isinstance(through.exception, error), through.output
        assert str(local.exception) in str(through.exception)  # the server's message, as it was
    # through the server, the caller's key decides: a developer holds no keys permission
    monkeypatch.setenv("SHOPFLOOR_API_KEY", keys.developer)
    for args in (["keys", "ls"], ["keys", "create", "--name", "mine", "--role", "viewer"]):
        refused = cli.invoke(app, args)
        assert isinstance(refused.exception, PermissionDeniedError), refused.output
        assert "keys:" in str(refused.exception)

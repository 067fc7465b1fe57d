"""``shopfloor ws ...`` against the default store under SHOPFLOOR_HOME."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from shopfloor.cli import app
from shopfloor.config import Settings
from shopfloor.workspace import Workspaces

runner = CliRunner()


def _seed(settings: Settings) -> list[str]:
    async def run() -> list[str]:
        repo = Workspaces.from_settings(settings)
        try:
            view = await repo.workspace("proj").open()
            await view.write("notes/a.md", "one\n")
            first = await view.commit("first", run_id="run-1", step=1)
            await view.write("notes/a.md", "two\n")
            await view.write("b.txt", "bee")
            second = await view.commit("second")
            return [first, second]
        finally:
            repo.close()

    return asyncio.run(run())


def _json(args: list[str]) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ws_commands(settings: Settings, tmp_path: Path) -> None:
    first, second = _seed(settings)
    assert _json(["ws", "ls"]) == [{"name": "proj", "refs": {"main": second}}]
    listing = _json(["ws", "ls", "proj"])
    assert isinstance(listing, dict)
    assert [f["path"] for f in listing["files"]] == ["b.txt", "notes"]
    result = runner.invoke(app, ["ws", "cat", f"ws://proj@{first[:12]}/notes/a.md"])
    assert result.exit_code == 0 and result.stdout == "one\n"
    assert runner.invoke(app, ["ws", "cat", "proj:notes/a.md"]).stdout == "two\n"
    cat = _json(["ws", "cat", "proj:b.txt"])
    assert isinstance(cat, dict) and cat["content"] == "bee" and cat["commit"] == second
    log = _json(["ws", "log", "proj"])
    assert isinstance(log, list) and [c["message"] for c in log] == ["second", "first"]
    assert log[1]["run_id"] == "run-1" and log[1]["step"] == 1
    diff = _json(["ws", "diff", "proj", first, second])
    assert isinstance(diff, dict)
    assert [(c["path"], c["status"]) for c in diff["changes"]] == [
        ("b.txt", "added"),
        ("notes/a.md", "changed"),
    ]
    assert "-one\n+two\n" in diff["text"]
    checkout = _json(["ws", "checkout", "proj", first, str(tmp_path / "out")])
    assert isinstance(checkout, dict) and checkout["commit"] == first
    assert (tmp_path / "out" / "notes" / "a.md").read_text() == "one\n"
    restored = _json(["ws", "restore", "proj", first])
    assert isinstance(restored, dict)
    assert runner.invoke(app, ["ws", "cat", "proj:notes/a.md"]).stdout == "one\n"
    gc = _json(["ws", "gc", "--grace", "0"])
    assert isinstance(gc, dict) and gc["kept_commits"] == 3 and gc["deleted_blobs"] == 0


def test_ws_errors_are_clear(settings: Settings) -> None:
    _seed(settings)
    from shopfloor.errors import ShopfloorError

    result = runner.invoke(app, ["ws", "cat", "proj:missing.txt"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ShopfloorError) and "missing.txt" in str(result.exception)
    result = runner.invoke(app, ["ws", "log", "proj", "--ref", "nosuch"])
    assert isinstance(result.exception, ShopfloorError) and "nosuch" in str(result.exception)

"""Skills run through the real sandbox: output checked, failures worded for the model, workspace committed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shopfloor.config import Settings
from shopfloor.errors import ToolArgumentsError, ToolExecutionError
from shopfloor.sandbox import SandboxPolicy
from shopfloor.skills import SkillTool, load_skill, new_skill
from shopfloor.tools import ToolContext, ToolServices
from shopfloor.workspace import Quota, Workspaces, WorkspaceView


@pytest.fixture
def skill_dir(settings: Settings) -> Path:
    return new_skill("hello", settings.home.parent / "skills")


def _ctx(workspace: WorkspaceView | None = None) -> ToolContext:
    services = ToolServices(workspace=workspace)
    return ToolContext(run_id="run-1", step=3, call_id="call-1", idempotency_key="run-1:3", services=services)


def _skill(settings: Settings, script: str, *, sidecar_extra: str = "", name: str = "probe") -> Path:
    skill_dir = new_skill(name, settings.home.parent / "skills")
    (skill_dir / "scripts" / "run.py").write_text(textwrap.dedent(script))
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(sidecar.read_text() + sidecar_extra)
    return skill_dir


def _tool(skill_dir: Path, settings: Settings, **kwargs: Any) -> SkillTool:
    return SkillTool(load_skill(skill_dir), settings=settings, **kwargs)


async def test_runs_in_the_sandbox_with_input_on_stdin(skill_dir: Path, settings: Settings) -> None:
    run = await _tool(skill_dir, settings).execute({"text": "abc"}, _ctx())
    assert run.output == {"result": "ABC"}
    assert run.exit_code == 0 and run.backend and run.error is None


async def test_sandbox_confines_the_entry_point(settings: Settings) -> None:
    script = """
    import json, os, socket, sys
    json.load(sys.stdin)
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2)
        net = "open"
    except OSError:
        net = "blocked"
    print(json.dumps({"result": f"{os.getcwd()} {net} {os.getuid()} {os.path.exists('/root')}"}))
    """
    out = await _tool(_skill(settings, script), settings).call({"text": "x"}, _ctx())
    cwd, net, uid, root_visible = out["result"].split()
    assert (cwd, net, root_visible) == ("/workspace", "blocked", "False")
    assert uid != "0"


async def test_invalid_input_is_an_arguments_error(skill_dir: Path, settings: Settings) -> None:
    with pytest.raises(ToolArgumentsError, match="text"):
        await _tool(skill_dir, settings).call({"txt": "abc"}, _ctx())


async def test_output_schema_violation(settings: Settings) -> None:
    script = "import json, sys\njson.load(sys.stdin)\nprint(json.dumps({'result': 42}))\n"
    with pytest.raises(
        ToolExecutionError, match=r"output does not match its output schema: result: 42 is not"
    ):
        await _tool(_skill(settings, script), settings).call({"text": "x"}, _ctx())


async def test_crash_reports_exit_status_and_stderr(settings: Settings) -> None:
    script = (
        "import json, sys\nargs = json.load(sys.stdin)\nraise KeyError('no column named ' + args['text'])\n"
    )
    tool = _tool(_skill(settings, script), settings)
    with pytest.raises(ToolExecutionError) as info:
        await tool.call({"text": "price"}, _ctx())
    assert "exited with status 1" in str(info.value)
    assert "KeyError: 'no column named price'" in str(info.value)
    run = await tool.execute({"text": "price"}, _ctx())
    assert run.exit_code == 1 and "KeyError" in run.stderr


async def test_output_that_is_not_json(settings: Settings) -> None:
    script = "print('here is your answer: 42')\n"
    with pytest.raises(ToolExecutionError, match="did not print JSON"):
        await _tool(_skill(settings, script), settings).call({"text": "x"}, _ctx())


async def test_timeout_is_reported(settings: Settings) -> None:
    skill_dir = _skill(settings, "import time\ntime.sleep(30)\n")
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(sidecar.read_text().replace("timeout: 30", "timeout: 1"))
    with pytest.raises(ToolExecutionError, match=r"timed out after 1 s"):
        await _tool(skill_dir, settings).call({"text": "x"}, _ctx())


async def test_the_agent_policy_caps_the_timeout(settings: Settings) -> None:
    tool = _tool(
        _skill(settings, "import time\ntime.sleep(30)\n"), settings, policy=SandboxPolicy(timeout=0.5)
    )
    with pytest.raises(ToolExecutionError, match=r"timed out after 0.5 s"):
        await tool.call({"text": "x"}, _ctx())


async def test_unmet_sandbox_needs_are_explained(settings: Settings) -> None:
    skill_dir = _skill(
        settings, "print('{}')\n", sidecar_extra="sandbox:\n  network: [api.example.com:443]\n"
    )
    with pytest.raises(ToolExecutionError, match=r"needs network access to api.example.com:443"):
        await _tool(skill_dir, settings).call({"text": "x"}, _ctx())


async def test_progressive_disclosure(skill_dir: Path, settings: Settings) -> None:
    (skill_dir / "references").mkdir()
    (skill_dir / "references" / "guide.md").write_text("# Guide\nuse uppercase\n")
    tool = _tool(skill_dir, settings)
    assert tool.description.startswith("Describe in one or two sentences")
    assert "Instructions" not in tool.describe()
    details = await tool.details()
    assert "# hello" in details and "references/guide.md" in details
    assert "use uppercase" in await tool.read_reference("references/guide.md")


async def test_instructions_only_skill_returns_its_body(settings: Settings) -> None:
    skill_dir = settings.home.parent / "howto"
    skill_dir.mkdir()
    (skill_dir / "SKILL.md").write_text("---\nname: howto\ndescription: How to do it.\n---\nStep one.\n")
    out = await _tool(skill_dir, settings).call({}, _ctx())
    assert out == {"instructions": "Step one.", "references": []}


async def test_workspace_is_materialised_and_changes_are_committed(settings: Settings) -> None:
    script = """
    import json, pathlib, sys
    args = json.load(sys.stdin)
    data = pathlib.Path("data.csv").read_text()
    pathlib.Path("out").mkdir()
    pathlib.Path("out/summary.txt").write_text(f"{len(data.splitlines())} lines")
    pathlib.Path("old.txt").unlink()
    print(json.dumps({"result": args["text"]}))
    """
    repo = Workspaces.from_settings(settings)
    try:
        view = await repo.workspace("analyst").open()
        await view.write("data.csv", "a,b\n1,2\n3,4\n")
        await view.write("old.txt", "bye")
        tool = _tool(_skill(settings, script), settings)
        run = await tool.execute({"text": "ok"}, _ctx(workspace=view))
        assert run.output == {"result": "ok"}
        head = await view.workspace.head()
        assert run.commit == head == view.base
        assert await view.workspace.read(head, "out/summary.txt") == b"3 lines"
        assert set(await view.workspace.files(head)) >= {"data.csv", "out/summary.txt"}
        assert "old.txt" not in await view.workspace.files(head)
        commit = await view.workspace.commit_info(head)
        assert (commit.run_id, commit.step) == ("run-1", 3)
        # One commit for the step: the view's own writes went in with the skill's changes.
        assert commit.parents == () and not view.dirty
        assert [c.message for c in await view.workspace.log()] == ["skill probe"]
    finally:
        repo.close()


async def test_a_failed_run_commits_nothing(settings: Settings) -> None:
    script = "import pathlib\npathlib.Path('junk.txt').write_text('x')\nraise SystemExit(3)\n"
    repo = Workspaces.from_settings(settings)
    try:
        view = await repo.workspace("analyst").open()
        await view.write("data.csv", "a\n1\n")
        with pytest.raises(ToolExecutionError, match="status 3"):
            await _tool(_skill(settings, script), settings).call({"text": "x"}, _ctx(workspace=view))
        # Not even the view's own write: it stays uncommitted in the view, for the caller to commit.
        assert await view.workspace.head() is None
        assert view.dirty and await view.read("data.csv") == b"a\n1\n" and not await view.exists("junk.txt")
    finally:
        repo.close()


async def test_a_skills_output_is_held_to_the_workspace_quota(settings: Settings) -> None:
    """The file tools kept the quota but a skill's captured output was committed whole (issue 12, 4)."""
    script = """
    import json
    for index in range(3):
        with open(f"big-{index}.bin", "wb") as handle:
            handle.truncate(512 << 20)  # sparse: 1.5 GiB that take no disk
    print(json.dumps({"result": "done"}))
    """
    repo = Workspaces.from_settings(settings)
    try:
        view = await repo.workspace("analyst", quota=Quota(max_bytes=64 << 20)).open()
        await view.write("data.csv", "a\n1\n")
        with pytest.raises(
            ToolExecutionError, match=r"changes to the workspace were refused: .* limit of 67108864"
        ):
            await _tool(_skill(settings, script), settings).call({"text": "x"}, _ctx(workspace=view))
        # Nothing is committed, not even the view's own write: it stays in the view, uncommitted.
        assert await view.workspace.head() is None
        assert view.dirty and await view.read("data.csv") == b"a\n1\n"
    finally:
        repo.close()


@pytest.mark.slow  # installs packages with pip
async def test_python_dependencies_are_installed_once(settings: Settings) -> None:
    script = """
    import json, sys, six
    json.load(sys.stdin)
    print(json.dumps({"result": six.__file__}))
    """
    skill_dir = _skill(settings, script, sidecar_extra="dependencies:\n  python: requirements.txt\n")
    (skill_dir / "requirements.txt").write_text("six==1.16.0\n")
    tool = _tool(skill_dir, settings)
    first = await tool.call({"text": "x"}, _ctx())
    assert "skill-envs/python/" in first["result"]
    venvs = [p for p in (settings.home / "cache" / "skill-envs" / "python").iterdir() if p.is_dir()]
    stamp = [(p, p.stat().st_mtime_ns) for p in venvs]
    again = _tool(skill_dir, settings)  # a fresh tool, as in the next run
    assert await again.call({"text": "y"}, _ctx()) == first
    assert [(p, p.stat().st_mtime_ns) for p in venvs] == stamp


@pytest.mark.slow  # runs pip
async def test_a_dependency_that_cannot_be_installed(settings: Settings) -> None:
    from shopfloor.errors import SkillDependencyError

    skill_dir = _skill(settings, "print('{}')\n", sidecar_extra="dependencies:\n  python: requirements.txt\n")
    (skill_dir / "requirements.txt").write_text("shopfloor-no-such-package-xyz==0.0.1\n")
    with pytest.raises(SkillDependencyError, match="pip install"):
        await _tool(skill_dir, settings).call({"text": "x"}, _ctx())


@pytest.mark.slow
async def test_node_skill_with_npm_dependencies(settings: Settings) -> None:
    skill_dir = new_skill("node-probe", settings.home.parent / "skills")
    (skill_dir / "scripts" / "run.js").write_text(
        "const isNumber = require('is-number');\n"
        "let data = '';\n"
        "process.stdin.on('data', c => data += c).on('end', () => {\n"
        "  const args = JSON.parse(data);\n"
        "  console.log(JSON.stringify({result: String(isNumber(args.text))}));\n"
        "});\n"
    )
    (skill_dir / "package.json").write_text(
        json.dumps({"name": "node-probe", "dependencies": {"is-number": "7.0.0"}})
    )
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(
        sidecar.read_text().replace(
            "entry: scripts/run.py\nruntime: python", "entry: scripts/run.js\nruntime: node"
        )
        + "dependencies:\n  node: package.json\n"
    )
    tool = _tool(skill_dir, settings)
    assert await tool.call({"text": "12"}, _ctx()) == {"result": "true"}
    assert await tool.call({"text": "abc"}, _ctx()) == {"result": "false"}


async def test_shell_skill(settings: Settings) -> None:
    skill_dir = new_skill("shell-probe", settings.home.parent / "skills")
    (skill_dir / "scripts" / "run.sh").write_text(
        'read -r line\nprintf \'{"result": "%s"}\\n\' "$(ls /skill | tr "\\n" " ")"\n'
    )
    sidecar = skill_dir / "shopfloor.yaml"
    sidecar.write_text(
        sidecar.read_text().replace(
            "entry: scripts/run.py\nruntime: python", "entry: scripts/run.sh\nruntime: shell"
        )
    )
    out = await _tool(skill_dir, settings).call({"text": "x"}, _ctx())
    assert out["result"].split() == ["SKILL.md", "scripts", "shopfloor.yaml"]


async def test_a_sandbox_kill_is_reported_to_the_audit_hook(settings: Settings) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    services = ToolServices(security_event=lambda kind, details: events.append((kind, details)))
    ctx = ToolContext(run_id="run-9", step=1, call_id="c", idempotency_key="run-9:1", services=services)
    tool = _tool(
        _skill(settings, "import time\ntime.sleep(30)\n"), settings, policy=SandboxPolicy(timeout=0.5)
    )
    with pytest.raises(ToolExecutionError, match="timed out"):
        await tool.call({"text": "x"}, ctx)
    [(kind, details)] = events
    assert kind == "sandbox.killed"
    assert (details["skill"], details["killed_by"], details["run_id"]) == ("probe", "timeout", "run-9")

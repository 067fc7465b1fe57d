"""The agent spec's workspace quota reaches every path into a commit of the run's workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.config import Settings
from shopfloor.errors import WorkspaceQuotaError
from shopfloor.runtime import compose, open_environment


async def test_the_specs_quota_holds_for_writes_and_captured_output(
    tmp_path: Path, settings: Settings
) -> None:
    agent = tmp_path / "quota-agent"
    agent.mkdir()
    (agent / "agent.yaml").write_text(
        "name: quota-agent\n"
        "version: 0.1.0\n"
        "instructions: Write files.\n"
        "model: test\n"
        "tools: [{name: files, source: builtin:workspace}]\n"
        "workspace: {name: quota-agent, max_bytes: 100, max_file_bytes: 60}\n"
    )
    services = compose(settings)
    env = await open_environment(services.load_spec(agent), services, run_id="run-q", model="test")
    try:
        view = env.view
        assert view is not None and view.ref is not None
        await view.write("a.txt", "x" * 50)
        with pytest.raises(WorkspaceQuotaError, match="over the file size limit of 60"):
            await view.write("b.txt", "x" * 61)
        head = await view.commit("a")
        # A skill's output arrives by capture through the same workspace handle: held to the same quota.
        directory = await view.workspace.materialize(head, tmp_path / "sandbox")
        (directory / "b.txt").write_text("y" * 60)
        with pytest.raises(WorkspaceQuotaError, match="would hold 110 bytes, over its limit of 100"):
            await view.workspace.capture(directory, ref=view.ref, base=head)
        assert await view.workspace.head(view.ref) == head
    finally:
        await env.close()

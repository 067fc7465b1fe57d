"""Helpers of the runtime tests: the test agent, its call log, and worker subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from shopfloor.runtime import RunRecord

HERE = Path(__file__).parent

SPEC = """\
name: {name}
instructions: Tick as asked.
model: function:agent_tools:script
decision: one_shot
tools:
  - name: tick
    source: agent_tools.py:tick
  - name: sleepy
    source: agent_tools.py:sleepy
  - name: transfer
    source: agent_tools.py:transfer
    requires_approval: true
{approval_timeout}
  - name: fan_out
    source: agent_tools.py:fan_out
permissions:
  approvers: [alice]
limits:
{limits}
"""


class AgentDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def calls(self) -> Counter[str]:
        log = self.path / "calls.log"
        return Counter(log.read_text().split()) if log.exists() else Counter()

    def block(self, key: str) -> None:
        (self.path / f"block-{key}").touch()

    def unblock(self, key: str) -> None:
        (self.path / f"block-{key}").unlink(missing_ok=True)

    def wait_for_call(self, name: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.calls()[name] == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} was not called within {timeout} s; calls: {dict(self.calls())}")
            time.sleep(0.02)


def make_agent(
    root: Path,
    *,
    name: str = "ticker",
    limits: str = "",
    approval_timeout: float | None = None,
    extra: str = "",
) -> AgentDir:
    path = root / name
    path.mkdir(parents=True)
    shutil.copy(HERE / "agent_tools.py", path / "agent_tools.py")
    timeout = f"    approval_timeout: {approval_timeout}" if approval_timeout else ""
    limit_lines = limits or "  max_steps: 10"
    text = SPEC.format(name=name, approval_timeout=timeout, limits=limit_lines) + extra
    (path / "agent.yaml").write_text(text)
    return AgentDir(path)


class Workers:
    """``shopfloor worker`` subprocesses, each killed at the end of the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        path = self.tmp_path / f"worker-{len(self.procs)}.log"
        with open(path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from shopfloor.cli import main; main()", "worker", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while b"ready" not in path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{path.read_text()}")
            time.sleep(0.05)
        return proc

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def queued_run(run_id: str, *, task: str = "t") -> RunRecord:
    """A run store row of a run queued and never started (agent ``a``, caller ``me``)."""
    return RunRecord(
        run_id=run_id,
        agent="a",
        spec_path="/a",
        release_digest="d",
        caller="me",
        status="queued",
        task=task,
        created_at=1.0,
    )

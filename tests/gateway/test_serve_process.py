"""``shopfloor serve`` as the processes users run: kill -9 during a run, or during a fork, loses nothing;
two workers serve the same data with the same answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Keys, wait_status

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """``shopfloor serve`` subprocesses on one port, each killed at the end of the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        path = self.tmp_path / f"serve-{len(self.procs)}.log"
        with open(path, "wb") as log:  # the child has its own copy of the descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "shopfloor.cli", "serve", "--port", str(self.port), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
                start_new_session=True,
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start:\n{path.read_text()}")
            time.sleep(0.1)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def served(tmp_path: Path, fast_runtime: None) -> Iterator[Served]:
    found = Served(tmp_path)
    yield found
    found.stop_all()


def test_kill_9_of_the_server_during_a_run_loses_nothing(served: Served, keys: Keys, agent_dir: Path) -> None:
    first = served.start()
    client = httpx.Client(base_url=served.url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"})
    try:
        _kill_during_a_run(served, first, client, agent_dir)
    finally:
        client.close()


def _kill_during_a_run(
    served: Served, first: subprocess.Popen[bytes], client: httpx.Client, agent_dir: Path
) -> None:
    client.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
    (agent_dir / "block-tool-2").touch()  # the second tool call waits: the server dies in it
    run_id = client.post("/v1/runs", json={"agent": "ticker", "input": "ticks=3"}).json()["run_id"]
    log = agent_dir / "calls.log"
    deadline = time.monotonic() + 30
    while not log.exists() or log.read_text().count("tool:") < 2:
        assert time.monotonic() < deadline, "the run did not reach its second tool call"
        time.sleep(0.05)
    wait_status(client, run_id, "running")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    (agent_dir / "block-tool-2").unlink()
    served.start()
    run = wait_status(client, run_id, "completed")
    assert run["output"] == "done after 3 ticks"
    calls = (agent_dir / "calls.log").read_text().split()
    # Each tool step ran to completion once; the one interrupted may have started twice, never a third time.
    tool_calls = [c for c in calls if c.startswith("tool:")]
    assert len(set(tool_calls)) == 3 and len(tool_calls) <= 4


def test_kill_9_of_the_server_during_a_fork_recovers_the_fork(
    served: Served, keys: Keys, agent_dir: Path
) -> None:
    first = served.start()
    with httpx.Client(
        base_url=served.url, timeout=30, headers={"Authorization": f"Bearer {keys.admin}"}
    ) as client:
        client.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
        parent = client.post("/v1/runs", json={"agent": "ticker", "input": "ticks=3"}).json()["run_id"]
        wait_status(client, parent, "completed")
        (agent_dir / "block-tool-2").touch()  # the fork's second tick (its first live one) waits
        # live from the record's third step (model:2): model:1 and the first tick are the parent's
        fork = client.post(f"/v1/runs/{parent}/fork", json={"step": 3}).json()["run_id"]
        log = agent_dir / "calls.log"
        deadline = time.monotonic() + 30
        while f"tool:{fork}:2" not in log.read_text().split():
            assert time.monotonic() < deadline, "the fork did not reach its second tick"
            time.sleep(0.05)
        wait_status(client, fork, "running")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        (agent_dir / "block-tool-2").unlink()
        served.start()
        run = wait_status(client, fork, "completed")
    assert run["output"] == "done after 3 ticks" and (run["parent_run_id"], run["fork_step"]) == (parent, 3)
    calls = log.read_text().split()
    # The parent's tick was never called for the fork; the interrupted one ran at most twice, the last once.
    assert f"tool:{fork}:1" not in calls
    assert 1 <= calls.count(f"tool:{fork}:2") <= 2 and calls.count(f"tool:{fork}:3") == 1


def test_two_workers_serve_the_same_data(served: Served, keys: Keys, agent_dir: Path) -> None:
    parent = served.start("--workers", "2")
    headers = {"Authorization": f"Bearer {keys.admin}"}
    children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
    assert len(children) >= 2, children
    with httpx.Client(base_url=served.url, timeout=30, headers=headers) as client:
        client.post("/v1/agents", json={"path": str(agent_dir)}).raise_for_status()
        run_id = client.post("/v1/runs", json={"agent": "ticker", "input": "ticks=1"}).json()["run_id"]
        wait_status(client, run_id, "completed")
    answers = set()
    for _ in range(20):  # a fresh connection each time: either worker may take it
        with httpx.Client(base_url=served.url, timeout=30, headers=headers) as client:
            answers.add((client.get("/v1/agents").text, client.get(f"/v1/runs/{run_id}").text))
    assert len(answers) == 1

"""Helpers of the server tests: the server on a real loopback socket (uvicorn in a thread), keys."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from shopfloor.gateway import ShopfloorApp


class LiveServer:
    """``app`` served by uvicorn (uvloop, httptools) on 127.0.0.1 at a free port, lifespan included."""

    def __init__(self, app: ShopfloorApp) -> None:
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=0,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server did not stop"


@dataclass(frozen=True)
class Keys:
    admin: str
    viewer: str
    revoked: str
    #: ``ai-developer`` of the team ``research``
    developer: str


def wait_status(client: httpx.Client, run_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    """The run (as the API shows it) once it has ``status``; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] == status:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def wait_trace(client: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    """The run's trace (as ``GET /v1/runs/ID/trace`` answers) once it holds the root span.

    Spans reach the trace store in batches and the root (``invoke_agent ...``) ends last, so a trace that
    answers at all can still lack it; once the root is there, every span of the run is.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/v1/runs/{run_id}/trace")
        if answer.status_code == 200:
            trace: dict[str, Any] = answer.json()
            if any(span["name"].startswith("invoke_agent") for span in trace["spans"]):
                return trace
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)


def grant_research(agent_dir: Path) -> None:
    """Grant the runtime tests' agent its proposing ``research`` tool too (``agent_tools.py:research``)."""
    spec = agent_dir / "agent.yaml"
    entry = "  - name: research\n    source: agent_tools.py:research\n"
    spec.write_text(spec.read_text().replace("tools:\n", "tools:\n" + entry, 1))

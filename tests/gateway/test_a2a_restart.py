"""An A2A task is a durable run: it outlives the ``shopfloor serve`` process that took it (kill -9), and
the next process answers for it and finishes it, driven by the official ``a2a-sdk`` client."""

from __future__ import annotations

import asyncio
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
from a2a.client import ClientConfig, create_client
from a2a.types.a2a_pb2 import (
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskState,
)
from gateway_support import Keys

pytestmark = pytest.mark.slow


class Server:
    """``shopfloor serve`` on one port, started again after a kill."""

    def __init__(self, tmp_path: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log_path = self.tmp_path / f"serve-{time.monotonic_ns()}.log"
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shopfloor.cli", "serve", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path, fast_runtime: None, agent_dir: Path, keys: Keys) -> Iterator[Server]:
    found = Server(tmp_path)
    found.start()
    headers = {"Authorization": f"Bearer {keys.admin}"}
    registered = httpx.post(f"{found.url}/v1/agents", json={"path": str(agent_dir)}, headers=headers)
    assert registered.status_code == 201, registered.text
    yield found
    found.kill()


async def _state(url: str, key: str, task_id: str) -> int:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        client = await create_client(f"{url}/a2a/ticker", client_config=ClientConfig(httpx_client=http))
        try:
            return int((await client.get_task(GetTaskRequest(id=task_id))).status.state)
        finally:
            await client.close()


async def test_a_task_outlives_a_killed_server(server: Server, keys: Keys) -> None:
    message = Message(message_id="m-restart", role=Role.ROLE_USER, parts=[Part(text="ticks=1 tool=transfer")])
    request = SendMessageRequest(
        message=message, configuration=SendMessageConfiguration(return_immediately=True)
    )
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {keys.admin}"}, timeout=60) as http:
        client = await create_client(
            f"{server.url}/a2a/ticker", client_config=ClientConfig(httpx_client=http)
        )
        try:
            answers = [answer async for answer in client.send_message(request)]
            # (read now: the client clears its messages when it closes)
            task_id = str(answers[0].task.id or answers[0].status_update.task_id)
        finally:
            await client.close()
    assert task_id
    await _wait_for(server.url, keys.admin, task_id, TaskState.TASK_STATE_INPUT_REQUIRED)
    server.kill()
    server.start()
    # the next process answers for the task (its worker recovers the run, which stops at the approval again)
    await _wait_for(server.url, keys.admin, task_id, TaskState.TASK_STATE_INPUT_REQUIRED)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
        alice = {"Authorization": f"Bearer {keys.admin}"}
        for _ in range(600):  # bounded: the recovering worker may hold the run "running" for a moment
            decided = await api.post(f"/v1/runs/{task_id}/approve", json={"reason": "ok"}, headers=alice)
            if decided.status_code != 409:
                break
            await asyncio.sleep(0.05)
    assert decided.status_code < 300, decided.text
    await _wait_for(server.url, keys.admin, task_id, TaskState.TASK_STATE_COMPLETED)


async def _wait_for(url: str, key: str, task_id: str, state: int) -> None:
    seen = []
    for _ in range(1200):  # bounded: 60 s of 50 ms polls
        seen.append(await _state(url, key, task_id))
        if seen[-1] == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never reached state {state}; states seen: {sorted(set(seen))}")

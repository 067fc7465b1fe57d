"""A real OTLP receiver: Arize Phoenix gets a run's spans over OTLP HTTP and gRPC as AGENT, LLM and TOOL."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tel_helpers import ADD

from shopfloor.agent import AgentLoop
from shopfloor.config import load_settings
from shopfloor.models import TestModel
from shopfloor.telemetry import configure_telemetry

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    binary = Path(sys.executable).parent / "phoenix"
    if not binary.exists():
        found = shutil.which("phoenix")
        if found is None:
            pytest.fail("the 'phoenix' command is missing: pip install arize-phoenix (the dev extra)")
        binary = Path(found)
    port, grpc_port = _free_port(), _free_port()
    workdir = tmp_path_factory.mktemp("phoenix")
    env = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_WORKING_DIR": str(workdir),
    }
    log = (workdir / "phoenix.log").open("w")
    process = subprocess.Popen([str(binary), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                output = (workdir / "phoenix.log").read_text()[-2000:]
                pytest.fail(f"phoenix exited with {process.returncode}: {output}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("phoenix did not become healthy within 180 s")
            time.sleep(0.5)
        yield base, f"http://127.0.0.1:{grpc_port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _spans_of(base: str, run_id: str, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{base}/v1/projects/default/spans", params={"limit": 1000}, timeout=10)
        response.raise_for_status()
        spans = [s for s in response.json()["data"] if s["attributes"].get("shopfloor.run.id") == run_id]
        if len(spans) >= expected or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_run_spans_arrive_in_phoenix_as_agent_llm_and_tool(
    phoenix: tuple[str, str], protocol: str, tmp_path: Path
) -> None:
    http, grpc = phoenix
    endpoint = (
        {"SHOPFLOOR_TELEMETRY__OTLP_HTTP_ENDPOINT": http}
        if protocol == "http"
        else {"SHOPFLOOR_TELEMETRY__OTLP_GRPC_ENDPOINT": grpc}
    )
    settings = load_settings({"SHOPFLOOR_HOME": str(tmp_path), **endpoint})
    run_id = f"phoenix-{protocol}"
    with configure_telemetry(settings) as telemetry:
        result = asyncio.run(AgentLoop(model=TestModel(), tools=[ADD], name="phx").run("add", run_id=run_id))
        assert telemetry.force_flush()
        local = telemetry.store.run_spans(run_id)
    assert result.status == "completed"
    spans = _spans_of(http, run_id, len(local))
    assert len(spans) == len(local) == 6
    kinds = {s["name"]: s["span_kind"] for s in spans}
    assert kinds["invoke_agent phx"] == "AGENT"
    assert kinds["chat test"] == "LLM"
    assert kinds["execute_tool add"] == "TOOL"
    root = next(s for s in spans if s["name"] == "invoke_agent phx")
    assert root["parent_id"] is None
    assert {s["context"]["trace_id"] for s in spans} == {root["context"]["trace_id"]}
    for chat in (s for s in spans if s["span_kind"] == "LLM"):
        attrs = chat["attributes"]
        assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["llm.token_count.prompt"] == attrs["gen_ai.usage.input_tokens"]
        assert attrs["llm.token_count.completion"] == attrs["gen_ai.usage.output_tokens"]
    assert root["attributes"]["llm.token_count.total"] == result.usage.total
    # content (step outputs, the task) stays in the local store unless record_content is on
    assert not any("shopfloor.step.output" in s["attributes"] for s in spans)
    assert any("shopfloor.step.output" in s.attributes for s in local)

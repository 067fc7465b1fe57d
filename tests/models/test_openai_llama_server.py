"""The openai provider against a real OpenAI-compatible server: llama-cpp-python's, on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from shopfloor.errors import ModelUnavailableError
from shopfloor.models import Message, ModelRequest, ModelResponse, OpenAIModel, RetryPolicy, TextDelta

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_models")]

CHOICE = {
    "anyOf": [
        {
            "type": "object",
            "properties": {
                "tool": {"const": "weather"},
                "args": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
            "required": ["tool", "args"],
        },
        {
            "type": "object",
            "properties": {
                "tool": {"const": "final_answer"},
                "args": {
                    "type": "object",
                    "properties": {"answer": {"type": "string"}},
                    "required": ["answer"],
                },
            },
            "required": ["tool", "args"],
        },
    ]
}
ASK = (Message(role="user", content="What is the weather in Paris? Reply with JSON."),)


@pytest.fixture(scope="module")
def llama_server(
    embedded_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model("smollm2-135m"))]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"]
    # A log file, not a pipe: nobody reads a pipe while tests run, and a full one stalls the server.
    log = (tmp_path_factory.mktemp("llama-server") / "server.log").open("w+b")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server did not start: {log.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
async def model(llama_server: str) -> AsyncIterator[OpenAIModel]:
    m = OpenAIModel("smollm2", base_url=llama_server, structured_output="json_object", timeout=30)
    yield m
    await m.aclose()


async def test_streams_text_from_a_real_server(model: OpenAIModel) -> None:
    request = ModelRequest(messages=(Message(role="user", content="Say hello."),), max_tokens=24)
    events = [e async for e in model.stream(request)]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    final = events[-1]
    assert isinstance(final, ModelResponse) and len(deltas) > 1
    assert final.text == "".join(d.text for d in deltas) and final.text.strip()
    assert final.finish_reason in ("stop", "length")
    # This server sends no usage chunk: the counts are estimates, but never zero.
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert final.usage.time_to_first_token is not None


async def test_schema_constrained_json_from_a_real_server(model: OpenAIModel) -> None:
    response = await model.request(ModelRequest(messages=ASK, json_schema=CHOICE, max_tokens=64))
    jsonschema.validate(json.loads(response.text), CHOICE)


async def test_a_server_rejecting_the_request_format_is_reported_in_its_words(llama_server: str) -> None:
    # llama-cpp-python's server answers an unsupported response_format with HTTP 500, not 400.
    model = OpenAIModel("smollm2", base_url=llama_server, retry=RetryPolicy(max_retries=1, base_delay=0.01))
    with pytest.raises(
        ModelUnavailableError, match=r"(?s)HTTP 500: .*Input should be 'text' or 'json_object'"
    ):
        await model.request(ModelRequest(messages=ASK, json_schema=CHOICE, max_tokens=8))
    await model.aclose()

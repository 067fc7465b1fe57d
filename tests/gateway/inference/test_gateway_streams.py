"""Streams under hostile clients: one that leaves mid-stream, one that reads too slowly."""

from __future__ import annotations

import json
import socket
import time

import httpx
from inference_support import KEY, Behaviour, CountingAdmission

MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_client_leaving_mid_stream_cancels_the_upstream_request_at_once(upstreams, gateway) -> None:
    fake, url = upstreams("a")
    fake.default = Behaviour(chunks=10_000, chunk_delay=0.02)
    admission = CountingAdmission(limit=10)
    gw = gateway(routes={"gpt": {"upstreams": [{"url": url, "model": "m"}]}}, admission=admission)
    body = {"model": "gpt", "messages": MESSAGES, "stream": True}
    with httpx.stream(
        "POST", f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        lines = response.iter_lines()
        received = [line for line, _ in zip(lines, range(6), strict=False) if line.startswith("data:")]
        left = time.monotonic()
    assert json.loads(received[0].removeprefix("data: "))["choices"][0]["delta"]["content"] == "part0 "
    deadline = time.monotonic() + 3
    while not fake.disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.disconnects, "the upstream request went on after the client left"
    assert fake.disconnects[0] - left < 0.5
    assert fake.bytes_sent < 100_000  # of the ~2 MB it would have sent
    deadline = time.monotonic() + 3
    while (
        gw.metric(
            "shopfloor_gateway_requests_total", {"route": "gpt", "upstream": f"{url}#m", "status": "499"}
        )
        is None
    ):
        assert time.monotonic() < deadline, "the cut request was not counted"
        time.sleep(0.01)
    assert len(admission.settled) == 1  # a stream cut by its client settles its budget once, too


def test_a_slow_client_cannot_make_the_gateway_buffer_the_stream(upstreams, gateway) -> None:
    fake, url = upstreams("a")
    # ~400 MB if it were all read: the gateway may only pull what the client takes
    fake.default = Behaviour(chunks=100_000, chunk_size=4000)
    gw = gateway(routes={"gpt": {"upstreams": [{"url": url, "model": "m"}], "timeout": 30}})
    port = int(gw.url.rsplit(":", 1)[1])
    body = json.dumps({"model": "gpt", "messages": MESSAGES, "stream": True}).encode()
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    try:
        client.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        client.recv(1024)  # the stream started; then the client stops reading
        time.sleep(2.0)
        stalled_at = fake.bytes_sent
        time.sleep(1.0)
        assert fake.bytes_sent == stalled_at, "the upstream kept sending into the gateway's memory"
        assert stalled_at < 30_000_000
    finally:
        client.close()
    deadline = time.monotonic() + 5
    while not fake.disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.disconnects  # and closing the slow client ended the upstream request too

"""Metering off the request path (SQLite and PostgreSQL), Prometheus metrics, embedded models' queues."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import openai
import pytest
from inference_support import Behaviour
from prometheus_client import CollectorRegistry

from shopfloor.gateway.inference import GatewayMetrics, Meter, MeterRecord, MeterStore
from shopfloor.models import FunctionModel, ModelRequest

MESSAGES = [{"role": "user", "content": "hi"}]


def _read(url: str) -> list[MeterRecord]:
    store = MeterStore(url)
    try:
        return store.read()
    finally:
        store.close()


def _record(n: int) -> MeterRecord:
    return MeterRecord(
        at=datetime.now(UTC),
        principal="key:test",
        route="gpt",
        upstream=f"u{n}",
        endpoint="chat/completions",
        stream=False,
        status=200,
        tokens_in=n,
        tokens_out=2 * n,
        latency=0.01,
    )


async def test_records_are_batched_and_flushed_on_stop(sql_url: str) -> None:
    store = MeterStore(sql_url)
    meter = Meter(store, GatewayMetrics(CollectorRegistry()), interval=3600)  # no timed flush in this test
    await meter.start()
    for n in range(250):
        meter.record(_record(n))
    assert _read(sql_url) == []  # nothing written on the request path
    await meter.stop()
    rows = _read(sql_url)
    assert [r.tokens_in for r in rows] == list(range(250))
    assert rows[3].upstream == "u3" and rows[3].tokens_out == 6 and rows[3].at.tzinfo is not None


async def test_a_failed_write_keeps_the_batch_for_the_next_flush(tmp_path) -> None:
    path = tmp_path / "meter.db"
    store = MeterStore(f"sqlite:///{path}")
    registry = CollectorRegistry()
    meter = Meter(store, GatewayMetrics(registry), interval=3600)
    meter.record(_record(1))
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE gateway_requests RENAME TO moved")
    await meter.flush()
    assert registry.get_sample_value("shopfloor_gateway_meter_pending") == 1
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE moved RENAME TO gateway_requests")
    engine.dispose()
    meter.record(_record(2))
    await meter.stop()
    assert [r.tokens_in for r in _read(f"sqlite:///{path}")] == [1, 2]


def test_requests_through_the_gateway_are_metered_and_counted(upstreams, gateway, settings) -> None:
    fake, url = upstreams("a")
    fake.plan = [Behaviour(), Behaviour(chunks=4)]
    gw = gateway(routes={"gpt": {"upstreams": [{"url": url, "model": "m", "name": "replica-a"}]}})
    client = gw.client()
    client.chat.completions.create(model="gpt", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt", messages=MESSAGES, stream=True))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=MESSAGES)
    url = settings.db_url
    deadline = time.monotonic() + 5
    while len(rows := _read(url)) < 2:
        assert time.monotonic() < deadline, "the records were not flushed"
        time.sleep(0.05)
    whole, streamed = rows
    assert (whole.principal, whole.route, whole.upstream, whole.status) == (
        "key:test",
        "gpt",
        "replica-a",
        200,
    )
    assert (whole.tokens_in, whole.tokens_out, whole.stream) == (11, 5, False)
    assert (streamed.tokens_in, streamed.tokens_out, streamed.stream) == (7, 4, True)
    assert streamed.time_to_first_token is not None and streamed.time_to_first_token <= streamed.latency
    labels = {"route": "gpt", "upstream": "replica-a", "status": "200"}
    assert gw.metric("shopfloor_gateway_requests_total", labels) == 2
    assert gw.metric("shopfloor_gateway_tokens_total", {"route": "gpt", "direction": "out"}) == 9
    exposition = httpx.get(f"{gw.url}/metrics").text
    assert 'shopfloor_gateway_requests_total{route="gpt",status="200",upstream="replica-a"} 2.0' in exposition


def test_a_shopfloor_model_behind_the_gateway_queues_its_requests(gateway, request) -> None:
    running = 0
    most = 0

    async def answer(request: ModelRequest) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.1)
        running -= 1
        return f"echo {request.messages[-1].content}"

    gw = gateway(
        routes={"local:echo": {"upstreams": [{"kind": "model", "model": "function:echo"}]}},
        make_model=lambda ref: FunctionModel(answer, name=ref),
    )
    client = gw.client()
    request.addfinalizer(client.close)  # its pooled connections, from four threads
    reply = client.chat.completions.create(model="local:echo", messages=[{"role": "user", "content": "one"}])
    assert reply.choices[0].message.content == "echo one"
    chunks = list(
        client.chat.completions.create(
            model="local:echo",
            messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": "two"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo two"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        replies = list(
            pool.map(
                lambda n: client.chat.completions.create(
                    model="local:echo", messages=[{"role": "user", "content": str(n)}]
                ),
                range(4),
            )
        )
    assert sorted(r.choices[0].message.content for r in replies) == ["echo 0", "echo 1", "echo 2", "echo 3"]
    assert most == 1  # one generation at a time
    assert gw.metric("shopfloor_gateway_local_queue_wait_seconds_count", {"model": "function:echo"}) == 6
    assert gw.metric("shopfloor_gateway_local_queue_wait_seconds_sum", {"model": "function:echo"}) > 0.2
    assert gw.metric("shopfloor_gateway_local_queue_depth", {"model": "function:echo"}) == 0
    with pytest.raises(openai.BadRequestError, match="does not serve /v1/completions"):
        client.completions.create(model="local:echo", prompt="x")

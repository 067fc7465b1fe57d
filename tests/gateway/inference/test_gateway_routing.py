"""Retries, fallbacks, timeouts, circuit breakers and balancing, against loopback upstreams that
misbehave on purpose."""

from __future__ import annotations

import time

import openai
import pytest
from inference_support import Behaviour

MESSAGES = [{"role": "user", "content": "hi"}]


def _upstream(url: str, **extra: object) -> dict[str, object]:
    return {"url": url, "model": "m", **extra}


def test_retries_on_429_and_5xx_honour_retry_after(upstreams, gateway) -> None:
    fake, url = upstreams("a")
    fake.plan = [Behaviour(status=429, retry_after="0.6"), Behaviour(status=502)]
    gw = gateway(routes={"gpt": {"upstreams": [_upstream(url)], "retries": 2}})
    start = time.monotonic()
    reply = gw.client().chat.completions.create(model="gpt", messages=MESSAGES)
    assert reply.choices[0].message.content == "hello from a"
    assert len(fake.requests) == 3
    assert time.monotonic() - start >= 0.6  # the upstream asked for 0.6 s before the second try
    assert (
        gw.metric("shopfloor_gateway_upstream_failures_total", {"upstream": f"{url}#m", "reason": "error"})
        == 2
    )


def test_a_bad_request_is_not_retried_and_its_error_is_passed_on(upstreams, gateway) -> None:
    fake, url = upstreams("a")
    fake.default = Behaviour(status=400)
    gw = gateway(routes={"gpt": {"upstreams": [_upstream(url)], "retries": 3, "fallbacks": []}})
    with pytest.raises(openai.BadRequestError, match="a says 400"):
        gw.client().chat.completions.create(model="gpt", messages=MESSAGES)
    assert len(fake.requests) == 1


def test_fallback_to_another_route_when_retries_run_out(upstreams, gateway) -> None:
    bad, bad_url = upstreams("bad")
    bad.default = Behaviour(status=500)
    good, good_url = upstreams("good")
    gw = gateway(
        routes={
            "main": {"upstreams": [_upstream(bad_url)], "retries": 1, "fallbacks": ["spare"]},
            "spare": {"upstreams": [_upstream(good_url)]},
        }
    )
    reply = gw.client().chat.completions.create(model="main", messages=MESSAGES)
    assert reply.choices[0].message.content == "hello from good"
    assert len(bad.requests) == 2 and len(good.requests) == 1


def test_all_failing_is_a_502_naming_the_model(upstreams, gateway) -> None:
    bad, url = upstreams("bad")
    bad.default = Behaviour(status=503)
    gw = gateway(routes={"gpt": {"upstreams": [_upstream(url)], "retries": 1}})
    with pytest.raises(openai.InternalServerError) as caught:
        gw.client().chat.completions.create(model="gpt", messages=MESSAGES)
    assert caught.value.status_code == 502 and "'gpt'" in caught.value.message


def test_a_route_timeout_falls_back_and_is_a_504_without_fallback(upstreams, gateway) -> None:
    slow, slow_url = upstreams("slow")
    slow.default = Behaviour(delay=2.0)
    _, good_url = upstreams("good")
    gw = gateway(
        routes={
            "main": {
                "upstreams": [_upstream(slow_url)],
                "retries": 0,
                "timeout": 0.3,
                "fallbacks": ["spare"],
            },
            "alone": {"upstreams": [_upstream(slow_url)], "retries": 0, "timeout": 0.3},
            "spare": {"upstreams": [_upstream(good_url)]},
        }
    )
    start = time.monotonic()
    assert gw.client().chat.completions.create(model="main", messages=MESSAGES).choices[
        0
    ].message.content == ("hello from good")
    assert time.monotonic() - start < 1.5
    with pytest.raises(openai.APIStatusError) as caught:
        gw.client().chat.completions.create(model="alone", messages=MESSAGES)
    assert caught.value.status_code == 504


def test_a_stream_cut_before_its_first_chunk_falls_back(upstreams, gateway) -> None:
    bad, bad_url = upstreams("bad")
    bad.default = Behaviour(cut_after=0)
    _, good_url = upstreams("good")
    gw = gateway(
        routes={
            "main": {"upstreams": [_upstream(bad_url)], "retries": 0, "fallbacks": ["spare"]},
            "spare": {"upstreams": [_upstream(good_url)]},
        }
    )
    chunks = list(gw.client().chat.completions.create(model="main", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "part0 part1 part2 "


def test_a_stream_cut_midway_ends_with_an_error_event_not_a_short_answer(upstreams, gateway) -> None:
    bad, bad_url = upstreams("bad")
    bad.default = Behaviour(chunks=10, cut_after=4)
    good, good_url = upstreams("good")
    gw = gateway(
        routes={
            "main": {"upstreams": [_upstream(bad_url)], "retries": 2, "fallbacks": ["spare"]},
            "spare": {"upstreams": [_upstream(good_url)]},
        }
    )
    received = []
    with pytest.raises(openai.APIError, match="cut after 4 chunks"):
        for chunk in gw.client().chat.completions.create(model="main", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["part0 ", "part1 ", "part2 ", "part3 "]
    assert len(bad.requests) == 1 and good.requests == []  # what the client has would not match a retry


def test_a_stream_that_stalls_past_the_timeout_is_cut_cleanly(upstreams, gateway) -> None:
    slow, url = upstreams("slow")
    slow.default = Behaviour(chunks=5, chunk_delay=0.0)
    slow.plan = [Behaviour(chunks=3, chunk_delay=0.0), Behaviour(chunks=5, chunk_delay=1.0)]
    gw = gateway(routes={"gpt": {"upstreams": [_upstream(url)], "retries": 0, "timeout": 0.4}})
    assert len(list(gw.client().chat.completions.create(model="gpt", messages=MESSAGES, stream=True))) == 4
    with pytest.raises(openai.APIError, match="timed out"):
        list(gw.client().chat.completions.create(model="gpt", messages=MESSAGES, stream=True))


def test_the_circuit_breaker_opens_then_lets_a_trial_through(upstreams, gateway) -> None:
    bad, url = upstreams("bad")
    bad.default = Behaviour(status=500)
    gw = gateway(
        routes={"gpt": {"upstreams": [_upstream(url, name="bad")], "retries": 0}},
        breaker_failures=2,
        breaker_cooldown=0.5,
    )
    client = gw.client()
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert gw.metric("shopfloor_gateway_breaker_open", {"upstream": "bad"}) == 1
    with pytest.raises(openai.InternalServerError, match="circuit breaker is open"):
        client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert len(bad.requests) == 2  # the open breaker kept the third request off the upstream
    time.sleep(0.6)
    bad.default = Behaviour()
    assert client.chat.completions.create(model="gpt", messages=MESSAGES).choices[0].message.content
    assert gw.metric("shopfloor_gateway_breaker_open", {"upstream": "bad"}) == 0


def test_weighted_balancing_follows_the_weights(upstreams, gateway) -> None:
    heavy, heavy_url = upstreams("heavy")
    light, light_url = upstreams("light")
    gw = gateway(
        routes={"gpt": {"upstreams": [_upstream(heavy_url, weight=4), _upstream(light_url, weight=1)]}}
    )
    client = gw.client()
    for _ in range(100):
        client.chat.completions.create(model="gpt", messages=MESSAGES)
    assert len(heavy.requests) + len(light.requests) == 100
    assert 60 <= len(heavy.requests) <= 95  # 80 expected


def test_least_busy_balancing_avoids_a_replica_with_a_request_in_flight(upstreams, gateway) -> None:
    import threading

    a, a_url = upstreams("a")
    b, b_url = upstreams("b")
    a.plan = [Behaviour(delay=1.0)]
    b.plan = [Behaviour(delay=1.0)]
    gw = gateway(routes={"gpt": {"upstreams": [_upstream(a_url), _upstream(b_url)], "balance": "least-busy"}})
    client = gw.client()
    slow = threading.Thread(target=lambda: client.chat.completions.create(model="gpt", messages=MESSAGES))
    slow.start()
    deadline = time.monotonic() + 5
    while a.in_flight + b.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    busy, idle = (a, b) if a.in_flight else (b, a)
    idle.plan.clear()
    for _ in range(5):
        client.chat.completions.create(model="gpt", messages=MESSAGES)
    slow.join()
    assert len(busy.requests) == 1 and len(idle.requests) == 5


def test_a_kept_alive_connection_the_upstream_closed_is_replaced_without_a_retry(gateway) -> None:
    from inference_support import FakeUpstream, serve

    fake = FakeUpstream(name="brief")
    with serve(fake, timeout_keep_alive=0.2) as url:  # the upstream drops idle connections after 0.2 s
        gw = gateway(routes={"gpt": {"upstreams": [_upstream(f"{url}/v1")], "retries": 0}})
        client = gw.client()
        for _ in range(3):
            assert client.chat.completions.create(model="gpt", messages=MESSAGES).choices[0].message.content
            time.sleep(0.5)
        assert len(fake.requests) == 3

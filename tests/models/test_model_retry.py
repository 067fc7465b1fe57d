"""Backoff delays and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

from shopfloor.models import RetryPolicy
from shopfloor.models._retry import parse_retry_after


def test_backoff_doubles_with_jitter_and_caps() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    for retry, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)]:
        delays = {policy.delay(retry) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered, so clients turned away together do not return together


def test_server_asked_wait_wins_up_to_a_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_retry_after=60.0)
    assert policy.delay(0, retry_after=7.5) == 7.5
    assert policy.delay(0, retry_after=3600) == 60.0


def test_retryable_statuses() -> None:
    policy = RetryPolicy()
    assert [
        s for s in (400, 401, 404, 408, 409, 422, 429, 500, 502, 503) if policy.should_retry_status(s)
    ] == [
        408,
        409,
        429,
        500,
        502,
        503,
    ]


def test_parse_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Fri, 27 Nov 2026 08:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Fri, 27 Nov 2026 07:00:00 GMT", now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None

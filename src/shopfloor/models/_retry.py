"""When and how long to wait before retrying a failed model request.

Exponential backoff with jitter spreads out the clients that a busy server turned
away together; a server's ``Retry-After`` wins over our own guess, up to a cap, so
a rate limiter is obeyed without letting it park a run for an hour.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RETRYABLE_STATUS", "RetryPolicy", "parse_retry_after"]

#: Statuses worth another try: timeout, conflict, rate limit, server errors (as the openai SDK does).
RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_retries: int = 3  # tries after the first
    base_delay: float = 0.5  # seconds before the first retry, doubled each time
    max_delay: float = 20.0
    max_retry_after: float = 60.0  # longest server-asked wait we honour

    def should_retry_status(self, status: int) -> bool:
        return status in RETRYABLE_STATUS or status >= 500

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2.0**retry)
        # "Equal jitter": never less than half the step, so retries still back off.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

"""Budget counters in Redis (``redis://``, ``rediss://``): shared exactly by every process using the Redis;
a reservation, a slot acquisition, a renewal and a release are each one Lua script (Redis runs a script
alone). The semantics are those of ``CounterStore`` (``_counters.py``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from shopfloor.security._counters import REMEMBER, CounterStore, Reservation, Slot

__all__ = ["RedisCounters"]


# KEYS: the counters; ARGV: now, then (amount, maximum, expires_at) per key. Returns 0 when all were
# added, else the 1-based index of the first that would exceed its maximum. Redis runs a script alone.
_RESERVE = """
local n = #KEYS
for i = 1, n do
  local amount = tonumber(ARGV[3 * i - 1])
  local maximum = tonumber(ARGV[3 * i])
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if (amount == 0 and current >= maximum) or (amount > 0 and current + amount > maximum) then
    return i
  end
end
for i = 1, n do
  local amount = tonumber(ARGV[3 * i - 1])
  local expires_ms = math.floor(tonumber(ARGV[3 * i + 1]) * 1000)
  redis.call('INCRBYFLOAT', KEYS[i], amount)
  redis.call('PEXPIREAT', KEYS[i], expires_ms)
end
return 0
"""


# Makes KEY live at least until AT (epoch seconds; NOW: the caller's clock), never shortening it.
_EXTEND = """
local function extend(key, at, now)
  local left = redis.call('PTTL', key)
  local at_ms = math.floor(at * 1000)
  if left < 0 or math.floor(now * 1000) + left < at_ms then
    redis.call('PEXPIREAT', key, at_ms)
  end
end
"""

# KEYS: the slot sets (sorted sets, score = the holder's lease), then the holder's index (a set of its
# slot sets, kept ``REMEMBER`` seconds past its last lease); ARGV: now, holder, then (maximum,
# expires_at) per slot key. A lapsed member is dropped from its set (not counted) but stays in its
# holder's index, for ``renew``.
_ACQUIRE = (
    _EXTEND
    + f"local remember = {REMEMBER}\n"
    + """
local n = #KEYS - 1
local now = tonumber(ARGV[1])
local holder = ARGV[2]
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if not redis.call('ZSCORE', KEYS[i], holder) then
    if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 * i + 1]) then
      return i
    end
  end
end
for i = 1, n do
  local expires = tonumber(ARGV[2 * i + 2])
  redis.call('ZADD', KEYS[i], expires, holder)
  extend(KEYS[i], expires, now)
  redis.call('SADD', KEYS[n + 1], KEYS[i])
  extend(KEYS[n + 1], expires + remember, now)
end
return 0
"""
)

# KEYS: the holders' indexes; ARGV: now, expires_at, then the holders (in the order of KEYS). Returns
# the holders that have a slot.
_RENEW = (
    _EXTEND
    + f"local remember = {REMEMBER}\n"
    + """
local now = tonumber(ARGV[1])
local expires = tonumber(ARGV[2])
local found = {}
for i = 1, #KEYS do
  local keys = redis.call('SMEMBERS', KEYS[i])
  for _, key in ipairs(keys) do
    redis.call('ZADD', key, expires, ARGV[i + 2])
    extend(key, expires, now)
  end
  if #keys > 0 then
    extend(KEYS[i], expires + remember, now)
    table.insert(found, ARGV[i + 2])
  end
end
return found
"""
)

# KEYS: the holder's index; ARGV: the holder.
_RELEASE = """
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('ZREM', key, ARGV[1])
end
redis.call('DEL', KEYS[1])
return 0
"""


class RedisCounters(CounterStore):
    """Counters in Redis, shared by every process that uses it; a reservation is one Lua script."""

    def __init__(self, client: Any, *, prefix: str = "shopfloor:budget:") -> None:
        self.client = client
        self.prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    @classmethod
    def open(cls, url: str, *, prefix: str = "shopfloor:budget:") -> RedisCounters:
        import redis

        return cls(redis.Redis.from_url(url), prefix=prefix)

    def reserve(self, items: Sequence[Reservation]) -> int | None:
        args: list[float] = [time.time()]
        for item in items:
            args += [item.amount, item.maximum, item.expires_at]
        exceeded = int(self._reserve(keys=[self.prefix + item.key for item in items], args=args))
        return None if exceeded == 0 else exceeded - 1

    def adjust(self, items: Sequence[tuple[str, float, float]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for key, delta, expires in items:
            pipe.incrbyfloat(self.prefix + key, delta)
            pipe.pexpireat(self.prefix + key, int(expires * 1000))
        pipe.execute()

    def acquire(self, slots: Sequence[Slot], holder: str) -> int | None:
        args: list[float | str] = [time.time(), holder]
        for slot in slots:
            args += [slot.maximum, slot.expires_at]
        keys = [f"{self.prefix}slots:{slot.key}" for slot in slots] + [f"{self.prefix}holder:{holder}"]
        exceeded = int(self._acquire(keys=keys, args=args))
        return None if exceeded == 0 else exceeded - 1

    def renew(self, holders: Sequence[str], expires_at: float) -> set[str]:
        if not holders:
            return set()
        keys = [f"{self.prefix}holder:{holder}" for holder in holders]
        found = self._renew(keys=keys, args=[time.time(), expires_at, *holders])
        return {item.decode() if isinstance(item, bytes) else str(item) for item in found}

    def release(self, holder: str) -> None:
        self._release(keys=[f"{self.prefix}holder:{holder}"], args=[holder])

    def value(self, key: str) -> float:
        raw = self.client.get(self.prefix + key)
        return 0.0 if raw is None else float(raw)

    def close(self) -> None:
        self.client.close()

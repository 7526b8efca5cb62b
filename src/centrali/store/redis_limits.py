"""Token-endpoint buckets in Redis, so several instances enforce one limit.

Each bucket is a hash ``{level, updated}`` under ``centrali:rl:<key>`` with a TTL of two
windows; one Lua script per step keeps a check or a charge atomic across instances and
costs one round trip. When Redis cannot be reached the limiter lets requests through
(the limits are a defence in depth, not the authentication) and says so in the log, at
most once per ``_WARN_EVERY`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from centrali.oauth.limits import Bucket

log = logging.getLogger("centrali.limits")

_PREFIX = "centrali:rl:"
_WARN_EVERY = 30.0

# KEYS: bucket keys; ARGV: now, then one capacity per key.
# Take one token from every bucket, or none and return the wait in milliseconds.
_TAKE = """
local now = tonumber(ARGV[1])
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[i + 1])
  local held = redis.call('HMGET', key, 'level', 'updated')
  local level = cap
  if held[1] then
    level = math.min(cap, tonumber(held[1]) + math.max(0, now - tonumber(held[2])) * cap / 60)
  end
  levels[i] = level
  if level < 1 then
    wait = math.max(wait, (1 - level) * 60 / cap)
  end
end
if wait > 0 then
  return math.ceil(wait * 1000)
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'level', tostring(levels[i] - 1), 'updated', tostring(now))
  redis.call('EXPIRE', key, 120)
end
return 0
"""

_GIVE_BACK = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[i + 1])
  local held = redis.call('HMGET', key, 'level', 'updated')
  if held[1] then
    local level = tonumber(held[1]) + math.max(0, now - tonumber(held[2])) * cap / 60
    redis.call('HSET', key, 'level', tostring(math.min(cap, level + 1)), 'updated', tostring(now))
  end
end
return 0
"""


_WAIT = """
local now = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[i + 1])
  local held = redis.call('HMGET', key, 'level', 'updated')
  if held[1] then
    local level = math.min(cap, tonumber(held[1]) + math.max(0, now - tonumber(held[2])) * cap / 60)
    if level < 1 then
      wait = math.max(wait, (1 - level) * 60 / cap)
    end
  end
end
return math.ceil(wait * 1000)
"""


class RedisBucketStore:
    def __init__(self, url: str) -> None:
        self._redis: Any = aioredis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._take = self._redis.register_script(_TAKE)
        self._give_back = self._redis.register_script(_GIVE_BACK)
        self._wait = self._redis.register_script(_WAIT)
        self._warned_at = 0.0

    async def take(self, buckets: Sequence[Bucket], now: float) -> float:
        return await self._seconds(self._take, buckets, now)

    async def give_back(self, buckets: Sequence[Bucket], now: float) -> None:
        await self._seconds(self._give_back, buckets, now)

    async def wait_time(self, buckets: Sequence[Bucket], now: float) -> float:
        return await self._seconds(self._wait, buckets, now)

    async def _seconds(self, script: Any, buckets: Sequence[Bucket], now: float) -> float:
        """Run one script over ``buckets``: the wait it answers in seconds (0 when Redis
        does not answer: fail open, with a warning)."""
        try:
            millis = await script(keys=_keys(buckets), args=_args(buckets, now))
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return 0.0
        return int(millis) / 1000.0

    async def close(self) -> None:
        await self._redis.aclose()

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning(
                "rate limits: Redis unreachable, limits not enforced (%s)", type(exc).__name__
            )


def _keys(buckets: Sequence[Bucket]) -> list[str]:
    return [_PREFIX + b.key for b in buckets]


def _args(buckets: Sequence[Bucket], now: float) -> list[str]:
    return [repr(now), *(str(b.capacity) for b in buckets)]

"""Token-endpoint buckets in Redis, so several instances enforce one limit.

Each bucket is a hash ``{level, updated}`` under ``centrali:rl:<key>`` with a TTL of two
windows; one Lua script per step keeps it atomic across instances and costs one round trip.

The token endpoint makes one round trip per request: ``take_if_all`` (TokenLimiter.conclude)
answers, for every bucket, when it holds a token again, and the store keeps those "blocked
until" times in a small bounded table of this process, from which ``known_wait``
(TokenLimiter.check) answers with no round trip. That table only ever errs one way, and
briefly: a token given back by another instance (a refund) is not seen here, so a request
may be refused until the refill time it was told, at most one token's refill (60 s / limit).
It never lets through what Redis would refuse: ``take_if_all`` decides.

When Redis cannot be reached the limiter lets requests through (the limits are a defence in
depth, not the authentication) and says so in the log, at most once per ``_WARN_EVERY``
seconds.
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
_MAX_WAIT = 61.0  # no bucket (capacity >= 1) is ever further than 60 s from a token

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


# KEYS: bucket keys; ARGV: now, then per key its capacity and 1 (take a token) or 0 (only
# look). While any bucket is empty take nothing; else take one from each bucket marked 1.
# Answers {refused (1 or 0), then per key the milliseconds until it holds a token again
# (after the take)}.
_TAKE_IF_ALL = """
local now = tonumber(ARGV[1])
local levels = {}
local refused = 0
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[2 * i])
  local held = redis.call('HMGET', key, 'level', 'updated')
  local level = cap
  if held[1] then
    level = math.min(cap, tonumber(held[1]) + math.max(0, now - tonumber(held[2])) * cap / 60)
  end
  levels[i] = level
  if level < 1 then
    refused = 1
  end
end
local answer = {refused}
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[2 * i])
  local level = levels[i]
  if refused == 0 and ARGV[2 * i + 1] == '1' then
    level = level - 1
    redis.call('HSET', key, 'level', tostring(level), 'updated', tostring(now))
    redis.call('EXPIRE', key, 120)
  end
  local wait = 0
  if level < 1 then
    wait = math.ceil((1 - level) * 60 / cap * 1000)
  end
  answer[i + 1] = wait
end
return answer
"""


class BlockedUntil:
    """Bucket key → the time it holds a token again, as Redis last answered; at most
    ``max_entries`` of them: past that, the ones already over go, then those ending soonest
    (forgetting one only costs a round trip: Redis decides)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._until: dict[str, float] = {}
        self._max_entries = max_entries

    def learn(self, key: str, wait: float, now: float) -> None:
        """Redis said at ``now``: ``key`` holds a token again in ``wait`` seconds."""
        if wait <= 0:
            self._until.pop(key, None)
            return
        self._until[key] = now + wait
        if len(self._until) > self._max_entries:
            self._trim(now)

    def forget(self, key: str) -> None:
        self._until.pop(key, None)

    def wait(self, keys: Sequence[str], now: float) -> float:
        """Seconds until every key holds a token, as far as this table knows (0: go ahead)."""
        longest = 0.0
        for key in keys:
            until = self._until.get(key)
            if until is None:
                continue
            left = until - now
            # Over, or further off than any one token can be (the clock stepped back).
            if left <= 0 or left > _MAX_WAIT:
                del self._until[key]
            else:
                longest = max(longest, left)
        return longest

    def _trim(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
        if len(self._until) > self._max_entries:
            soonest = sorted(self._until.items(), key=lambda item: item[1])
            for key, _ in soonest[: len(soonest) - self._max_entries // 2]:
                del self._until[key]

    def __len__(self) -> int:
        return len(self._until)


class RedisBucketStore:
    def __init__(self, url: str, *, max_blocked: int = 10_000) -> None:
        self._redis: Any = aioredis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._take = self._redis.register_script(_TAKE)
        self._give_back = self._redis.register_script(_GIVE_BACK)
        self._take_if_all = self._redis.register_script(_TAKE_IF_ALL)
        self.blocked = BlockedUntil(max_blocked)
        self._warned_at = 0.0

    async def take(self, buckets: Sequence[Bucket], now: float) -> float:
        return await self._seconds(self._take, buckets, now)

    async def give_back(self, buckets: Sequence[Bucket], now: float) -> None:
        for bucket in buckets:
            self.blocked.forget(bucket.key)  # it holds a token again
        await self._seconds(self._give_back, buckets, now)

    async def take_if_all(
        self, required: Sequence[Bucket], taken: Sequence[Bucket], now: float
    ) -> float:
        """One script; what it answers of every bucket goes to ``blocked``."""
        looked = list({b.key: b for b in (*required, *taken)}.values())
        if not looked:
            return 0.0
        taking = {b.key for b in taken}
        args = [repr(now)]
        for bucket in looked:
            args += [str(bucket.capacity), "1" if bucket.key in taking else "0"]
        try:
            answer = await self._take_if_all(keys=_keys(looked), args=args)
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return 0.0
        refused, *waits = (int(n) / 1000.0 for n in answer)
        for bucket, wait in zip(looked, waits, strict=True):
            self.blocked.learn(bucket.key, wait, now)
        return max(waits) if refused else 0.0

    def known_wait(self, buckets: Sequence[Bucket], now: float) -> float:
        """From ``blocked``: no round trip."""
        return self.blocked.wait([b.key for b in buckets], now)

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

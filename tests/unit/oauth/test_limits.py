"""Abuse limits of the token endpoint: bucket arithmetic, the bucket stores and the
limiter's three budgets (contract "Operations and security": 429 ``slow_down`` with a
``Retry-After`` of at most 60 s; ``0`` turns a limit off).

A request is looked at before its client lookup (``TokenLimiter.check``, no round trip),
decided in one atomic step once its secret was checked (``TokenLimiter.conclude``: a failure
takes from the failure buckets, a success its issuance token, a held-back source is refused
either way) and gets its issuance token back when the grant then fails
(``TokenLimiter.refund``). The store contract (all-or-nothing take, give-back capped at
capacity, take_if_all, known_wait) and the limiter run against the in-process store and,
when one is reachable, against Redis, where a good request costs one round trip."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import pytest
import redis

from centrali.oauth.errors import OAuthError
from centrali.oauth.limits import (
    MAX_RETRY_AFTER,
    NOTHING_TAKEN,
    Admission,
    Bucket,
    BucketStore,
    LimitSettings,
    MemoryBucketStore,
    SlowDownError,
    TokenLimiter,
    address_key,
    failure_buckets,
    issuance_buckets,
    level_now,
    wait_for_one,
)

NOW = 1_700_000_000.0
IP = "203.0.113.7"
OTHER_IP = "198.51.100.9"
THIRD_IP = "192.0.2.44"
CLIENT = "ci_0123456789abcdefghij"
OTHER_CLIENT = "ci_jihgfedcba9876543210"
REDIS_URL = "redis://127.0.0.1:6379/0"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def waits(seconds: float) -> Any:
    """A wait as a store reports it (Redis rounds up to the millisecond)."""
    return pytest.approx(seconds, abs=1e-3)


# --- bucket arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "level", "elapsed", "expected"),
    [
        (60, 0.0, 10.0, 10.0),  # one token a second
        (6, 0.0, 10.0, 1.0),  # one token every ten seconds
        (6, 2.5, 0.0, 2.5),  # no time, no refill
        (60, 0.0, 3600.0, 60.0),  # capped at capacity
        (60, 59.5, 10.0, 60.0),
        (10, 3.0, -30.0, 3.0),  # a clock stepping back refills nothing, takes nothing
    ],
    ids=["per-second", "per-ten-seconds", "no-time", "capped", "nearly-full", "clock-back"],
)
def test_level_refills_capacity_per_minute(
    capacity: int, level: float, elapsed: float, expected: float
) -> None:
    assert level_now(capacity, level, NOW, NOW + elapsed) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("capacity", "level", "expected"),
    [
        (6, 0.0, 10.0),
        (60, 0.5, 0.5),
        (1, 0.0, 60.0),
        (20, 0.0, 3.0),
        (6, 1.0, 0.0),
        (6, 5.5, 0.0),
    ],
    ids=["empty-6", "half-60", "empty-1", "empty-20", "one-left", "plenty"],
)
def test_wait_for_one_token(capacity: int, level: float, expected: float) -> None:
    assert wait_for_one(Bucket("k", capacity), level) == pytest.approx(expected)


def test_bucket_rate_is_capacity_per_minute() -> None:
    assert Bucket("k", 120).rate == pytest.approx(2.0)


# --- the BucketStore contract, in process and in Redis ---------------------------------------


def redis_reachable(url: str) -> bool:
    try:
        conn = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(conn.ping())
        finally:
            conn.close()
    except (redis.RedisError, OSError):
        return False


Scenario = Callable[[BucketStore], Awaitable[None]]


class Contract:
    """Runs a scenario against a fresh store of one kind, in one event loop (a Redis client
    belongs to the loop it was opened in); bucket keys are unique to the test."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._prefix = f"test:{uuid.uuid4().hex}:"

    def bucket(self, name: str, capacity: int) -> Bucket:
        return Bucket(self._prefix + name, capacity)

    def run(self, scenario: Scenario) -> None:
        async def main() -> None:
            if self.kind == "memory":
                await scenario(MemoryBucketStore())
                return
            from centrali.store.redis_limits import RedisBucketStore

            store = RedisBucketStore(REDIS_URL)
            try:
                await scenario(store)
            finally:
                await store.close()

        asyncio.run(main())


@pytest.fixture(params=["memory", "redis"])
def contract(request: pytest.FixtureRequest) -> Contract:
    if request.param == "redis" and not redis_reachable(REDIS_URL):
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (.ci/run starts one)")
    return Contract(request.param)


async def empty(store: BucketStore, bucket: Bucket, now: float = NOW) -> None:
    for _ in range(bucket.capacity):
        assert await store.take([bucket], now) == 0.0


def test_an_unknown_bucket_is_full(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        assert await store.take_if_all([contract.bucket("never-seen", 1)], [], NOW) == 0.0
        bucket = contract.bucket("k", 3)
        for _ in range(3):
            assert await store.take([bucket], NOW) == 0.0
        assert await store.take([bucket], NOW) == waits(20.0)

    contract.run(scenario)


def test_take_empties_a_bucket_then_it_refills(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        bucket = contract.bucket("k", 5)  # one token every 12 s
        await empty(store, bucket)
        assert await store.take([bucket], NOW) == waits(12.0)
        assert await store.take([bucket], NOW + 6) == waits(6.0)
        assert await store.take([bucket], NOW + 12) == 0.0
        assert await store.take([bucket], NOW + 12) == waits(12.0)

    contract.run(scenario)


def test_a_refused_take_takes_nothing(contract: Contract) -> None:
    """Knocking on an empty bucket does not dig a hole: one token is one refill away."""

    async def scenario(store: BucketStore) -> None:
        bucket = contract.bucket("k", 5)
        await empty(store, bucket)
        for _ in range(50):
            assert await store.take([bucket], NOW) == waits(12.0)
        assert await store.take([bucket], NOW + 12) == 0.0

    contract.run(scenario)


def test_take_is_all_or_nothing(contract: Contract) -> None:
    """While one bucket is empty, the others keep their tokens."""

    async def scenario(store: BucketStore) -> None:
        full, spent = contract.bucket("full", 2), contract.bucket("spent", 1)
        await empty(store, spent)
        for _ in range(10):
            assert await store.take([full, spent], NOW) == waits(60.0)
            assert await store.take([spent, full], NOW) == waits(60.0)
        assert await store.take([full], NOW) == 0.0
        assert await store.take([full], NOW) == 0.0
        assert await store.take([full], NOW) == waits(30.0)

    contract.run(scenario)


def test_take_takes_from_every_bucket(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        a, b = contract.bucket("a", 1), contract.bucket("b", 2)
        assert await store.take([a, b], NOW) == 0.0
        assert await store.take([a], NOW) == waits(60.0)
        assert await store.take([b], NOW) == 0.0
        assert await store.take([b], NOW) == waits(30.0)

    contract.run(scenario)


def test_take_waits_for_the_slowest_bucket(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        slow, fast = contract.bucket("slow", 2), contract.bucket("fast", 60)
        await empty(store, slow)  # 30 s a token
        await empty(store, fast)  # 1 s a token
        assert await store.take([fast], NOW) == waits(1.0)
        assert await store.take([slow, fast], NOW) == waits(30.0)
        assert await store.take([slow, fast], NOW + 1) == waits(29.0)
        assert await store.take([fast], NOW + 1) == 0.0  # the refused take left it alone

    contract.run(scenario)


def test_a_take_refills_before_it_takes(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        bucket = contract.bucket("k", 2)
        await empty(store, bucket)
        assert await store.take([bucket], NOW + 45) == 0.0  # refilled 1.5, took 1: 0.5 left
        assert await store.take([bucket], NOW + 45) == waits(15.0)

    contract.run(scenario)


def test_give_back_returns_one_token_to_every_bucket(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        a, b = contract.bucket("a", 5), contract.bucket("b", 1)
        await empty(store, a)
        await empty(store, b)
        await store.give_back([a, b], NOW)
        assert await store.take([a, b], NOW) == 0.0
        assert await store.take([a], NOW) == waits(12.0)
        assert await store.take([b], NOW) == waits(60.0)

    contract.run(scenario)


def test_give_back_never_fills_a_bucket_above_capacity(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        bucket = contract.bucket("k", 3)
        assert await store.take([bucket], NOW) == 0.0
        for _ in range(5):
            await store.give_back([bucket], NOW)
        await empty(store, bucket)  # exactly three tokens
        assert await store.take([bucket], NOW) == waits(20.0)
        # Given back after the bucket refilled on its own: still capacity, no more.
        await store.give_back([bucket], NOW + 60)
        await empty(store, bucket, NOW + 60)
        assert await store.take([bucket], NOW + 60) == waits(20.0)

    contract.run(scenario)


def test_give_back_to_an_unknown_bucket_changes_nothing(contract: Contract) -> None:
    """A bucket the store does not hold (never taken from, swept, expired) is full."""

    async def scenario(store: BucketStore) -> None:
        bucket = contract.bucket("k", 2)
        await store.give_back([bucket], NOW)
        await empty(store, bucket)
        assert await store.take([bucket], NOW) == waits(30.0)

    contract.run(scenario)


def test_concurrent_takes_never_take_more_than_there_is(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        bucket = contract.bucket("k", 10)
        answers = await asyncio.gather(*(store.take([bucket], NOW) for _ in range(40)))
        assert sorted(answers)[:10] == [0.0] * 10
        assert all(wait == waits(6.0) for wait in sorted(answers)[10:])

    contract.run(scenario)


def test_take_if_all_takes_only_from_the_buckets_it_is_told(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        looked, taken = contract.bucket("looked", 1), contract.bucket("taken", 2)
        assert await store.take_if_all([looked, taken], [taken], NOW) == 0.0
        assert await store.take_if_all([looked, taken], [taken], NOW) == 0.0
        assert await store.take_if_all([looked, taken], [taken], NOW) == waits(30.0)
        assert await store.take([looked], NOW) == 0.0  # only ever looked at: still full
        assert await store.take_if_all([looked], [], NOW) == waits(60.0)

    contract.run(scenario)


def test_a_refused_take_if_all_takes_nothing(contract: Contract) -> None:
    """An empty bucket that is only looked at refuses the step: nothing is taken."""

    async def scenario(store: BucketStore) -> None:
        spent, kept = contract.bucket("spent", 1), contract.bucket("kept", 2)
        await empty(store, spent)
        for _ in range(10):
            assert await store.take_if_all([spent, kept], [kept], NOW) == waits(60.0)
            assert await store.take_if_all([spent], [kept], NOW) == waits(60.0)
        await empty(store, kept)  # exactly two tokens: none went
        assert await store.take_if_all([spent, kept], [kept], NOW + 30) == waits(30.0)
        assert await store.take_if_all([spent, kept], [kept], NOW + 60) == 0.0

    contract.run(scenario)


def test_take_if_all_with_all_buckets_taken_is_take(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        a, b = contract.bucket("a", 2), contract.bucket("b", 60)
        assert await store.take_if_all([a, b], [a, b], NOW) == 0.0
        assert await store.take([a, b], NOW) == 0.0
        assert await store.take_if_all([a, b], [a, b], NOW) == waits(30.0)
        assert await store.take([b], NOW) == 0.0  # 58 left: the refusal took none
        # A bucket named twice is taken from once.
        c = contract.bucket("c", 2)
        assert await store.take_if_all([c, c], [c, c], NOW) == 0.0
        assert await store.take([c], NOW) == 0.0

    contract.run(scenario)


def test_concurrent_take_if_all_take_exactly_the_capacity(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        looked, taken = contract.bucket("looked", 5), contract.bucket("taken", 10)
        steps = (store.take_if_all([looked, taken], [taken], NOW) for _ in range(40))
        answers = sorted(await asyncio.gather(*steps))
        assert answers[:10] == [0.0] * 10
        assert all(wait == waits(6.0) for wait in answers[10:])
        assert await store.take([looked], NOW) == 0.0  # never taken from

    contract.run(scenario)


def test_known_wait_knows_what_the_store_answered(contract: Contract) -> None:
    """Either store knows what its own take_if_all found: the look ahead of
    TokenLimiter.check, which takes nothing."""

    async def scenario(store: BucketStore) -> None:
        bucket, other = contract.bucket("k", 2), contract.bucket("other", 1)
        assert store.known_wait([bucket, other], NOW) == 0.0
        assert await store.take_if_all([bucket], [bucket], NOW) == 0.0
        assert store.known_wait([bucket], NOW) == 0.0  # one token left
        assert await store.take_if_all([bucket], [bucket], NOW) == 0.0
        for _ in range(5):
            assert store.known_wait([bucket, other], NOW) == waits(30.0)
        assert store.known_wait([other], NOW) == 0.0
        assert store.known_wait([bucket], NOW + 10) == waits(20.0)
        assert store.known_wait([bucket], NOW + 30) == 0.0  # refilled
        assert await store.take_if_all([bucket], [bucket], NOW + 30) == 0.0
        assert store.known_wait([bucket], NOW + 30) == waits(30.0)
        await store.give_back([bucket], NOW + 30)
        assert store.known_wait([bucket], NOW + 30) == 0.0  # it holds a token again

    contract.run(scenario)


def test_known_wait_learns_from_a_refusal(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        bucket = contract.bucket("k", 6)
        await empty(store, bucket)  # plain takes (the login limits): nothing learned on Redis
        assert await store.take_if_all([bucket], [], NOW + 4) == waits(6.0)
        assert store.known_wait([bucket], NOW + 4) == waits(6.0)
        assert store.known_wait([bucket], NOW + 10) == 0.0

    contract.run(scenario)


def test_empty_bucket_lists_take_and_wait_nothing(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        assert await store.take([], NOW) == 0.0
        assert await store.take_if_all([], [], NOW) == 0.0
        assert store.known_wait([], NOW) == 0.0
        await store.give_back([], NOW)

    contract.run(scenario)


def test_a_look_takes_nothing(contract: Contract) -> None:
    """take_if_all with nothing to take: what conclude does for a success with no issuance
    budget."""

    async def scenario(store: BucketStore) -> None:
        bucket = contract.bucket("k", 1)
        for _ in range(20):
            assert await store.take_if_all([bucket], [], NOW) == 0.0
        assert await store.take([bucket], NOW) == 0.0
        assert await store.take_if_all([bucket], [], NOW) == waits(60.0)
        assert await store.take_if_all([bucket], [], NOW + 15) == waits(45.0)

    contract.run(scenario)


def test_a_look_waits_for_the_slowest_bucket(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        slow, fast = contract.bucket("slow", 2), contract.bucket("fast", 60)
        for _ in range(2):
            assert await store.take([slow], NOW) == 0.0
        for _ in range(60):
            assert await store.take([fast], NOW) == 0.0
        assert await store.take_if_all([fast], [], NOW) == waits(1.0)
        assert await store.take_if_all([slow, fast], [], NOW) == waits(30.0)
        assert store.known_wait([slow, fast], NOW) == waits(30.0)

    contract.run(scenario)


# --- MemoryBucketStore: bounded memory, threads ----------------------------------------------


@pytest.mark.parametrize("capacity", [100, 1], ids=["fresh-keys", "emptied-keys"])
def test_sweep_keeps_memory_bounded_under_a_flood_of_keys(capacity: int) -> None:
    store = MemoryBucketStore(max_entries=100)
    largest = 0
    for i in range(5_000):
        key = f"f:ip:10.0.{i // 256}.{i % 256}"
        assert store.take_sync([Bucket(key, capacity)], NOW + i * 0.001) == 0.0
        largest = max(largest, len(store))
    assert largest <= 100
    assert len(store) <= 100


def test_sweep_drops_idle_buckets_first() -> None:
    """Buckets idle for a minute are full again: they go before anything still counting."""
    store = MemoryBucketStore(max_entries=10)
    for i in range(8):
        assert store.take_sync([Bucket(f"old{i}", 10)], NOW) == 0.0
    limited = Bucket("limited", 1)
    assert store.take_sync([limited], NOW + 50) == 0.0
    for i in range(2):
        assert store.take_sync([Bucket(f"new{i}", 10)], NOW + 61) == 0.0  # 11th key: a sweep
    assert len(store) == 3  # the eight idle ones went, the recent ones stayed
    assert store.known_wait([limited], NOW + 61) == pytest.approx(49.0)


def test_a_flood_of_new_keys_does_not_free_a_limited_bucket() -> None:
    """The oldest bucket is often the one holding an attacker back; a sweep drops the
    fullest, so fresh keys (one token spent each) go before it does."""
    store = MemoryBucketStore(max_entries=100)
    limited = Bucket(f"f:ipc:{IP}:{CLIENT}", 3)  # one token every 20 s
    for _ in range(3):
        assert store.take_sync([limited], NOW) == 0.0
    for i in range(5_000):
        key = f"f:ip:10.1.{i // 256}.{i % 256}"
        assert store.take_sync([Bucket(key, 100)], NOW + i * 0.001) == 0.0
        assert len(store) <= 100
    assert store.take_sync([limited], NOW + 5) == pytest.approx(15.0)


def test_sweep_drops_the_fullest_buckets_not_the_oldest() -> None:
    store = MemoryBucketStore(max_entries=10)
    spent = [Bucket(f"spent{i}", 10) for i in range(4)]  # the oldest, and empty
    for bucket in spent:
        for _ in range(10):
            assert store.take_sync([bucket], NOW) == 0.0
    for i in range(30):
        assert store.take_sync([Bucket(f"fresh{i}", 10)], NOW + 1) == 0.0
        assert len(store) <= 10
    for bucket in spent:  # one token every 6 s; 1 s of it refilled
        assert store.take_sync([bucket], NOW + 1) == pytest.approx(5.0)


def test_concurrent_takes_from_threads_take_exactly_the_capacity() -> None:
    capacity, threads = 4_000, 8
    store = MemoryBucketStore()
    bucket = Bucket("shared", capacity)
    start = threading.Barrier(threads)
    taken = [0] * threads

    def hammer(n: int) -> None:
        start.wait()
        for _ in range(2 * capacity // threads):  # twice as many tries as tokens
            if store.take_sync([bucket], NOW) == 0.0:
                taken[n] += 1

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert sum(taken) == capacity
    assert store.take_sync([bucket], NOW) == pytest.approx(60.0 / capacity)


def test_concurrent_give_backs_from_threads_lose_no_update() -> None:
    capacity, threads = 4_000, 8
    store = MemoryBucketStore()
    bucket = Bucket("shared", capacity)
    for _ in range(capacity):
        assert store.take_sync([bucket], NOW) == 0.0
    start = threading.Barrier(threads)

    def hammer() -> None:
        start.wait()
        for _ in range(capacity // threads - 1):  # one token short of full
            store.give_back_sync([bucket], NOW)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    for _ in range(capacity - threads):
        assert store.take_sync([bucket], NOW) == 0.0
    # Exactly empty: one lost update would leave a token short, and refuse earlier.
    assert store.take_sync([bucket], NOW) == pytest.approx(60.0 / capacity)


# --- TokenLimiter: check → lookup → verify → conclude → issue (→ refund) ----------------------


class Env:
    """TokenLimiters over fresh stores of one kind, on one event loop for the whole test (a
    Redis client belongs to the loop it was opened in). Addresses and client ids are unique
    to the test, so Redis keys never meet another test's."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        tag = uuid.uuid4().hex[:12]
        self.ip, self.other_ip, self.third_ip = (f"{a}#{tag}" for a in (IP, OTHER_IP, THIRD_IP))
        self.client, self.other_client = f"{CLIENT}{tag}", f"{OTHER_CLIENT}{tag}"
        self.loop = asyncio.new_event_loop()
        self._opened: list[Any] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def store(self) -> BucketStore:
        """A fresh store: in this process, or one more instance on the shared Redis."""
        if self.kind == "memory":
            return MemoryBucketStore()
        from centrali.store.redis_limits import RedisBucketStore

        store = RedisBucketStore(REDIS_URL)
        self._opened.append(store)
        return store

    def limiter(
        self,
        per_ip: int = 0,
        per_client_ip: int = 0,
        issuance: int = 0,
        store: BucketStore | None = None,
    ) -> TokenLimiter:
        settings = LimitSettings(per_ip, per_client_ip, issuance)
        return TokenLimiter(settings, self.store() if store is None else store)

    def attempt(
        self,
        limit: TokenLimiter,
        ip: str,
        client_id: str | None,
        outcome: str,
        now: float = NOW,
        *,
        public: bool = False,
    ) -> int | None:
        """One whole request as the endpoint makes it: check, (the lookup and the secret
        check), conclude with what the secret check found, refund when the grant then
        failed. ``outcome``: "issued", "auth_failed" or "grant_failed". The Retry-After of
        a refusal, or None."""
        authenticated = outcome != "auth_failed"
        try:
            self.run(limit.check(ip, client_id, now, public=public))
            admission = self.run(limit.conclude(ip, client_id, authenticated, now, public=public))
        except SlowDownError as exc:
            return exc.retry_after
        if outcome == "grant_failed":
            self.run(limit.refund(admission, now))
        return None

    def refused(
        self, limit: TokenLimiter, ip: str, client_id: str | None, now: float = NOW
    ) -> int | None:
        """The Retry-After of a refusal, or None: a request with the right secret whose
        grant then failed, which spends nothing."""
        return self.attempt(limit, ip, client_id, "grant_failed", now)

    def close(self) -> None:
        for store in self._opened:
            self.run(store.close())
        self.loop.close()


@pytest.fixture(params=["memory", "redis"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    if request.param == "redis" and not redis_reachable(REDIS_URL):
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (.ci/run starts one)")
    env = Env(request.param)
    try:
        yield env
    finally:
        env.close()


def test_a_failure_takes_a_token_from_each_failure_bucket(env: Env) -> None:
    limit = env.limiter(per_ip=1, per_client_ip=1, issuance=1)
    assert env.run(limit.conclude(env.ip, env.client, False, NOW)) is NOTHING_TAKEN
    assert env.refused(limit, env.ip, env.client) == 60
    assert env.refused(limit, env.ip, env.other_client) == 60  # the address's bucket
    assert env.attempt(limit, env.other_ip, env.client, "issued") is None  # issuance untouched


def test_a_success_takes_its_issuance_token_and_no_failure_token(env: Env) -> None:
    limit = env.limiter(per_ip=1, per_client_ip=1, issuance=1)
    admission = env.run(limit.conclude(env.ip, env.client, True, NOW))
    assert admission == Admission(issuance=tuple(issuance_buckets(env.client, limit.settings)))
    assert env.refused(limit, env.other_ip, env.client) == 60  # issued: spent, anywhere
    # Both failure buckets still hold their token: one failure goes through, then none.
    assert env.attempt(limit, env.ip, env.other_client, "auth_failed") is None
    assert env.attempt(limit, env.ip, env.other_client, "auth_failed") == 60


def test_a_held_back_source_is_refused_with_the_right_secret(env: Env) -> None:
    limit = env.limiter(per_client_ip=2, issuance=1)
    for _ in range(2):
        assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    with pytest.raises(SlowDownError) as refusal:
        env.run(limit.conclude(env.ip, env.client, True, NOW))
    assert refusal.value.retry_after == 30
    # The refusal took nothing: the client's one issuance token is still there.
    assert env.attempt(limit, env.other_ip, env.client, "issued") is None
    assert env.attempt(limit, env.third_ip, env.client, "issued") == 60


def test_a_refused_conclude_takes_nothing(env: Env) -> None:
    """Knocking on an empty bucket, with a wrong secret or the right one, digs no hole."""
    limit = env.limiter(per_client_ip=1, issuance=2)
    assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    for _ in range(5):
        assert env.attempt(limit, env.ip, env.client, "auth_failed") == 60
        assert env.attempt(limit, env.ip, env.client, "issued") == 60
    assert env.attempt(limit, env.other_ip, env.client, "issued") is None
    assert env.attempt(limit, env.third_ip, env.client, "issued") is None
    assert env.refused(limit, env.other_ip, env.client) == 30  # exactly two were there
    assert env.attempt(limit, env.ip, env.client, "auth_failed", NOW + 60) is None


def test_refund_gives_the_issuance_token_back(env: Env) -> None:
    limit = env.limiter(per_client_ip=1, issuance=1)
    for _ in range(5):  # invalid_scope and the like: issued nothing, spent nothing
        assert env.attempt(limit, env.ip, env.client, "grant_failed") is None
    assert env.attempt(limit, env.ip, env.client, "auth_failed") is None  # failure budget full
    assert env.refused(limit, env.ip, env.client) == 60
    assert env.attempt(limit, env.other_ip, env.client, "issued") is None  # issuance token too
    assert env.refused(limit, env.third_ip, env.client) == 60


def test_check_refuses_what_is_known_to_be_spent_and_takes_nothing(env: Env) -> None:
    limit = env.limiter(per_client_ip=3, issuance=1)
    env.run(limit.check(env.ip, env.client, NOW))
    for _ in range(3):
        assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    for _ in range(10):
        with pytest.raises(SlowDownError) as refusal:
            env.run(limit.check(env.ip, env.client, NOW))
        assert refusal.value.retry_after == 20
    env.run(limit.check(env.other_ip, env.client, NOW))  # another address
    env.run(limit.check(env.ip, env.other_client, NOW))  # another client from that address
    env.run(limit.check(env.ip, env.client, NOW + 20))  # a token came back
    # The issuance budget is looked at too, wherever the client asks from (not for a public
    # client, which has none).
    assert env.attempt(limit, env.other_ip, env.client, "issued") is None
    with pytest.raises(SlowDownError):
        env.run(limit.check(env.third_ip, env.client, NOW))
    env.run(limit.check(env.third_ip, env.client, NOW, public=True))


def test_a_burst_of_failures_gets_no_more_than_the_budget(env: Env) -> None:
    """All of them checked at once, and concluded at once: one atomic step each."""
    limit = env.limiter(per_client_ip=3)

    async def burst() -> list[Admission | BaseException]:
        for _ in range(20):
            await limit.check(env.ip, env.client, NOW)
        steps = (limit.conclude(env.ip, env.client, False, NOW) for _ in range(20))
        return await asyncio.gather(*steps, return_exceptions=True)

    answers = env.run(burst())
    assert sum(a is NOTHING_TAKEN for a in answers) == 3
    assert sum(isinstance(a, SlowDownError) for a in answers) == 17


def test_a_burst_of_successes_gets_no_more_than_the_issuance_budget(env: Env) -> None:
    limit = env.limiter(issuance=5)

    async def burst() -> list[Admission | BaseException]:
        steps = (limit.conclude(env.ip, env.client, True, NOW) for _ in range(30))
        return await asyncio.gather(*steps, return_exceptions=True)

    answers = env.run(burst())
    assert sum(isinstance(a, Admission) and a.issuance != () for a in answers) == 5
    assert sum(isinstance(a, SlowDownError) for a in answers) == 25


def test_a_burst_of_good_requests_is_not_held_back_by_the_failure_budget(env: Env) -> None:
    """No good request holds a failure token: forty at once, with a failure budget of 3."""
    limit = env.limiter(per_ip=3, per_client_ip=3)

    async def burst() -> list[Admission | BaseException]:
        steps = (limit.conclude(env.ip, env.client, True, NOW) for _ in range(40))
        return await asyncio.gather(*steps, return_exceptions=True)

    assert env.run(burst()) == [NOTHING_TAKEN] * 40
    for _ in range(3):
        assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    assert env.refused(limit, env.ip, env.client) == 20


def test_failures_per_client_and_address(env: Env) -> None:
    limit = env.limiter(per_client_ip=3)
    for _ in range(3):
        assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    assert env.refused(limit, env.ip, env.client) == 20  # 3 a minute: one every 20 s
    assert env.refused(limit, env.other_ip, env.client) is None  # the real client, elsewhere
    assert env.refused(limit, env.ip, env.other_client) is None  # another client, that address
    assert env.refused(limit, env.ip, env.client, NOW + 20) is None  # a token came back


def test_failures_per_address_across_client_ids(env: Env) -> None:
    limit = env.limiter(per_ip=3)
    for i in range(3):
        assert env.attempt(limit, env.ip, f"ci_guess{i}", "auth_failed") is None
    assert env.refused(limit, env.ip, "ci_never_tried") == 20
    assert env.refused(limit, env.ip, None) == 20
    assert env.refused(limit, env.other_ip, "ci_guess0") is None


def test_a_request_without_client_id_takes_from_the_address_only(env: Env) -> None:
    """No credentials at all: a failed authentication of the address."""
    limit = env.limiter(per_ip=2, per_client_ip=2, issuance=2)
    keys = [b.key for b in failure_buckets(env.ip, None, limit.settings)]
    assert keys == [f"f:ip:{address_key(env.ip)}"]
    assert env.attempt(limit, env.ip, None, "auth_failed") is None
    assert env.attempt(limit, env.ip, None, "auth_failed") is None
    assert env.refused(limit, env.ip, None) == 30
    assert env.refused(limit, env.ip, env.client) == 30
    assert env.refused(limit, env.other_ip, env.client) is None


def test_an_ipv6_source_is_limited_by_its_64_and_ipv4_by_its_address(env: Env) -> None:
    """Rotating through the addresses of one /64 gives no fresh budget."""
    tag = uuid.uuid4().hex
    net = f"2001:db8:{tag[:4]}:{tag[4:8]}"  # a /64 no other test run uses
    next_net = f"2001:db8:{tag[:4]}:{(int(tag[4:8], 16) + 1) % 0x10000:x}"
    limit = env.limiter(per_ip=2, per_client_ip=2)
    assert env.attempt(limit, f"{net}::1", f"ci_guess{tag}1", "auth_failed") is None
    assert (
        env.attempt(limit, f"{net}:ffff:ffff:ffff:fffe", f"ci_guess{tag}2", "auth_failed") is None
    )
    assert env.refused(limit, f"{net}::abcd", env.client) == 30  # the same /64: held back
    assert env.refused(limit, f"{next_net}::1", env.client) is None  # the next /64 is not
    v4 = f"10.{int(tag[8:10], 16)}.{int(tag[10:12], 16)}"
    for _ in range(2):
        assert env.attempt(limit, f"{v4}.1", env.client, "auth_failed") is None
    assert env.refused(limit, f"{v4}.1", env.client) == 30
    assert env.refused(limit, f"{v4}.2", env.client) is None  # the next IPv4 address is not


@pytest.mark.parametrize(
    ("capacity", "expected"),
    [(1, 60), (2, 30), (59, 2), (60, 1), (1000, 1)],
    ids=["1", "2", "59", "60", "1000"],
)
def test_retry_after_is_between_1_and_60(env: Env, capacity: int, expected: int) -> None:
    limit = env.limiter(per_client_ip=capacity)
    for _ in range(capacity):
        assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    retry_after = env.refused(limit, env.ip, env.client)
    assert retry_after == expected
    assert 1 <= retry_after <= MAX_RETRY_AFTER == 60


def test_failures_are_not_charged_to_issuance(env: Env) -> None:
    limit = env.limiter(issuance=1)
    for _ in range(10):
        assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    assert env.refused(limit, env.ip, env.client) is None


def test_issuance_is_charged_on_issue_only_and_per_client(env: Env) -> None:
    limit = env.limiter(per_ip=1, per_client_ip=1, issuance=2)
    assert env.attempt(limit, env.ip, env.client, "issued") is None
    assert env.refused(limit, env.ip, env.client) is None  # no failure token was taken
    assert env.attempt(limit, env.ip, env.client, "issued") is None
    assert env.refused(limit, env.ip, env.client) == 30
    assert env.refused(limit, env.other_ip, env.client) == 30  # per client, wherever it asks
    assert env.refused(limit, env.ip, env.other_client) is None


def test_a_refused_request_says_when_to_come_back(env: Env) -> None:
    limit = env.limiter(per_client_ip=6)
    for _ in range(6):
        env.run(limit.conclude(env.ip, env.client, False, NOW))
    with pytest.raises(SlowDownError) as refusal:
        env.run(limit.conclude(env.ip, env.client, True, NOW + 5))
    assert refusal.value.retry_after == 5  # one token every 10 s, 5 s of it gone
    assert refusal.value.headers() == {"Retry-After": "5"}
    assert refusal.value.status_code == 429


def test_a_public_client_has_no_issuance_budget(env: Env) -> None:
    """Every user of a public client (no secret) would share its budget, and any of them
    could spend it for all: only confidential clients get one."""
    limit = env.limiter(issuance=1)
    for _ in range(5):
        assert env.attempt(limit, env.ip, "centrali-console", "issued", public=True) is None
        admission = env.run(limit.conclude(env.ip, "centrali-console", True, NOW, public=True))
        assert admission is NOTHING_TAKEN
    assert env.attempt(limit, env.ip, env.client, "issued") is None
    assert env.refused(limit, env.ip, env.client) == 60  # the confidential client's one token


def test_a_long_client_id_is_limited_like_any_other(env: Env) -> None:
    long_id = env.client + "y" * 300  # cut to 128 characters in keys: the test's tag first
    limit = env.limiter(per_client_ip=2, issuance=1)
    assert env.attempt(limit, env.ip, long_id, "auth_failed") is None
    assert env.attempt(limit, env.ip, long_id, "auth_failed") is None
    assert env.refused(limit, env.ip, long_id) == 30
    assert env.attempt(limit, env.other_ip, long_id, "issued") is None
    assert env.refused(limit, env.third_ip, long_id) == 60


# --- TokenLimiter over a recording store: which buckets, how many steps ----------------------


class SpyStore:
    """A MemoryBucketStore that records every call with the keys it got."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.inner = MemoryBucketStore()

    async def take(self, buckets: Sequence[Bucket], now: float) -> float:
        self.calls.append(("take", [b.key for b in buckets]))
        return await self.inner.take(buckets, now)

    async def give_back(self, buckets: Sequence[Bucket], now: float) -> None:
        self.calls.append(("give_back", [b.key for b in buckets]))
        await self.inner.give_back(buckets, now)

    async def take_if_all(
        self, required: Sequence[Bucket], taken: Sequence[Bucket], now: float
    ) -> float:
        self.calls.append(("take_if_all", [b.key for b in required]))
        self.calls.append(("taken", [b.key for b in taken]))
        return await self.inner.take_if_all(required, taken, now)

    def known_wait(self, buckets: Sequence[Bucket], now: float) -> float:
        self.calls.append(("known_wait", [b.key for b in buckets]))
        return self.inner.known_wait(buckets, now)


def whole_request(limit: TokenLimiter, client_id: str | None, outcome: str) -> int | None:
    """``Env.attempt`` over any store, in a fresh loop."""
    return whole_request_from(limit, IP, client_id, outcome)


def whole_request_from(
    limit: TokenLimiter, ip: str, client_id: str | None, outcome: str
) -> int | None:
    """The same, from ``ip``."""
    authenticated = outcome != "auth_failed"

    async def request() -> None:
        await limit.check(ip, client_id, NOW)
        admission = await limit.conclude(ip, client_id, authenticated, NOW)
        if outcome == "grant_failed":
            await limit.refund(admission, NOW)

    try:
        run(request())
    except SlowDownError as exc:
        return exc.retry_after
    return None


@pytest.mark.parametrize(
    ("outcome", "calls"),
    [
        ("issued", ["known_wait", "take_if_all"]),
        ("auth_failed", ["known_wait", "take_if_all"]),
        ("grant_failed", ["known_wait", "take_if_all", "give_back"]),
    ],
)
def test_a_request_is_one_store_step_and_a_refund_one_more(outcome: str, calls: list[str]) -> None:
    spy = SpyStore()
    limit = TokenLimiter(LimitSettings(5, 5, 5), spy)
    assert whole_request(limit, CLIENT, outcome) is None
    assert [name for name, _ in spy.calls if name != "taken"] == calls


def test_a_request_without_client_id_is_free_when_only_per_client_limits_are_on() -> None:
    spy = SpyStore()
    limit = TokenLimiter(LimitSettings(0, 5, 5), spy)
    for outcome in ("issued", "auth_failed", "grant_failed"):
        assert whole_request(limit, None, outcome) is None
    assert run(limit.conclude(IP, None, False, NOW)) is NOTHING_TAKEN
    run(limit.refund(NOTHING_TAKEN, NOW))
    assert spy.calls == []


def test_issuance_off_takes_no_issuance_token() -> None:
    spy = SpyStore()
    limit = TokenLimiter(LimitSettings(1, 1, 0), spy)
    for _ in range(5):
        admission = run(limit.conclude(IP, CLIENT, True, NOW))
        assert admission is NOTHING_TAKEN
        run(limit.refund(admission, NOW))
    assert spy.calls
    assert not any(key.startswith("i:") for _, keys in spy.calls for key in keys)
    assert not any(keys for name, keys in spy.calls if name == "taken")
    assert whole_request(limit, CLIENT, "auth_failed") is None


def test_limits_of_0_are_off() -> None:
    settings = LimitSettings(failures_per_ip=0, failures_per_client_ip=0, issuance_per_client=0)
    assert not settings.enabled
    spy = SpyStore()
    limit = TokenLimiter(settings, spy)
    for _ in range(200):
        for client_id in (CLIENT, None):
            for outcome in ("issued", "auth_failed", "grant_failed"):
                assert whole_request(limit, client_id, outcome) is None
    assert spy.calls == []


@pytest.mark.parametrize(
    ("per_ip", "per_client_ip", "issuance", "kinds"),
    [
        (5, 0, 0, ["f:ip:"]),
        (0, 5, 0, ["f:ipc:"]),
        (0, 0, 5, ["i:c:"]),
        (5, 5, 5, ["f:ip:", "f:ipc:", "i:c:"]),
    ],
    ids=["ip", "client-ip", "issuance", "all"],
)
def test_only_limits_turned_on_have_buckets(
    per_ip: int, per_client_ip: int, issuance: int, kinds: list[str]
) -> None:
    settings = LimitSettings(per_ip, per_client_ip, issuance)
    assert settings.enabled
    failure = [b.key for b in failure_buckets(IP, CLIENT, settings)]
    issued = [b.key for b in issuance_buckets(CLIENT, settings)]
    keys = failure + issued
    assert len(keys) == len(kinds)
    for key, kind in zip(keys, kinds, strict=True):
        assert key.startswith(kind)
    assert all(key.startswith("f:") for key in failure)
    assert all(key.startswith("i:") for key in issued)
    spy = SpyStore()
    limit = TokenLimiter(settings, spy)
    run(limit.check(IP, CLIENT, NOW))
    admission = run(limit.conclude(IP, CLIENT, True, NOW))
    assert [b.key for b in admission.issuance] == issued
    failed = run(limit.conclude(IP, CLIENT, False, NOW))
    assert failed is NOTHING_TAKEN
    # One look, then one atomic step each: a success looks at every bucket and takes its
    # issuance token, a failure looks at and takes from the failure buckets alone.
    expected = [("known_wait", keys), ("take_if_all", keys), ("taken", issued)]
    if failure:
        expected += [("take_if_all", failure), ("taken", failure)]
    assert spy.calls == expected


def test_default_limit_settings_match_the_contract() -> None:
    assert LimitSettings() == LimitSettings(100, 20, 0)


def test_client_ids_are_never_in_keys_only_a_digest_of_fixed_length() -> None:
    settings = LimitSettings(failures_per_ip=5, failures_per_client_ip=5, issuance_per_client=5)
    secret = "sk_" + "s3cr3t" * 10  # a client that swapped its id and its secret
    for client_id in (secret, "ci_" + "x" * 100_000, CLIENT, "\ud800", ""):
        keys = [b.key for b in failure_buckets(IP, client_id, settings)]
        keys += [b.key for b in issuance_buckets(client_id, settings)]
        assert len(keys) == 3
        assert all(len(k) <= 80 for k in keys)
        assert all(client_id not in k for k in keys if client_id)
    assert not any("sk_" in b.key for b in issuance_buckets(secret, settings))


# Where "address:client_id" collided: an IPv6 address is full of ':'.
COLLIDING = [(("2001:db8::1:2", "a"), ("2001:db8::1", "2:a")), (("::1", "a"), ("::", "1:a"))]


@pytest.mark.parametrize(("first", "second"), COLLIDING, ids=["2001:db8", "loopback"])
def test_ipv6_addresses_and_client_ids_do_not_collide_in_keys(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    settings = LimitSettings(failures_per_ip=0, failures_per_client_ip=1, issuance_per_client=0)
    assert failure_buckets(*first, settings) != failure_buckets(*second, settings)
    limit = TokenLimiter(settings, MemoryBucketStore())
    assert whole_request_from(limit, *first, "auth_failed") is None
    assert whole_request_from(limit, *first, "auth_failed") == 60
    assert whole_request_from(limit, *second, "auth_failed") is None  # a budget of its own


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.7", "4-cb007107"),
        ("::ffff:203.0.113.7", "4-cb007107"),  # IPv4-mapped: the IPv4 address
        ("2001:db8::1", "6-20010db800000000"),  # IPv6: its /64
        ("2001:db8:0:0:ffff:ffff:ffff:ffff", "6-20010db800000000"),
        ("2001:db8:0:1::1", "6-20010db800000001"),
    ],
)
def test_address_keys_are_unambiguous_and_colon_free(ip: str, key: str) -> None:
    assert address_key(ip) == key
    assert address_key("testclient").startswith("n-")
    assert address_key("testclient") != address_key("testclient2")
    for name in ("unknown", "fe80::1%eth0", "a:b"):
        assert ":" not in address_key(name)


def test_redis_keys_hold_no_client_id(redis_env: Env) -> None:
    env = redis_env
    secret = f"sk_{uuid.uuid4().hex}"
    limit = env.limiter(per_ip=5, per_client_ip=5, issuance=5)
    assert env.attempt(limit, env.ip, secret, "auth_failed") is None
    assert env.attempt(limit, env.ip, secret, "issued") is None
    conn = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [
            k.decode()
            for b in failure_buckets(env.ip, secret, limit.settings)
            for k in conn.keys("centrali:rl:" + b.key)
        ]
        assert len(keys) == 2
        assert not list(conn.scan_iter(match=f"*{secret}*"))
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("outcome", "spent"),
    [("issued", "i:c:"), ("auth_failed", "f:ipc:"), ("grant_failed", None)],
    ids=["issued", "auth_failed", "grant_failed"],
)
def test_a_long_client_id_gets_back_tokens_from_the_buckets_it_took_them_from(
    outcome: str, spent: str | None
) -> None:
    long_id = "ci_" + "y" * 300
    spy = SpyStore()
    limit = TokenLimiter(LimitSettings(0, 1, 1), spy)
    assert whole_request(limit, long_id, outcome) is None
    keys = [key for _, keys in spy.calls for key in keys]
    assert keys
    assert all(len(key) < 200 for key in keys)
    # What was given back is there again; what the outcome spent is not.
    expected = None if spent is None else 60
    assert whole_request(limit, long_id, "grant_failed") == expected


# --- RedisBucketStore: one round trip a request, the blocked-until table ----------------------


class RoundTrips:
    """Counts the commands a RedisBucketStore sends (each one a round trip)."""

    def __init__(self, store: Any) -> None:
        self.commands: list[str] = []
        client = store._redis
        send = client.execute_command

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.commands.append(str(args[0]))
            return await send(*args, **kwargs)

        client.execute_command = counted

    def __len__(self) -> int:
        return len(self.commands)


@pytest.fixture
def redis_env() -> Iterator[Env]:
    if not redis_reachable(REDIS_URL):
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (.ci/run starts one)")
    env = Env("redis")
    try:
        yield env
    finally:
        env.close()


def counted_limiter(env: Env, **limits: int) -> tuple[TokenLimiter, RoundTrips]:
    """A limiter on a Redis store of its own whose scripts are loaded already (the first
    call of a script in a process may cost a SCRIPT LOAD)."""
    limit = env.limiter(**limits)
    warm = Bucket(f"test:{uuid.uuid4().hex}", 1)
    env.run(limit.store.take_if_all([warm], [], NOW))
    env.run(limit.store.give_back([warm], NOW))
    return limit, RoundTrips(limit.store)


def test_redis_a_good_request_is_one_round_trip(redis_env: Env) -> None:
    env = redis_env
    limit, trips = counted_limiter(env, per_ip=5, per_client_ip=5, issuance=5)
    for _ in range(3):
        before = len(trips)
        env.run(limit.check(env.ip, env.client, NOW))  # no round trip
        assert len(trips) == before
        env.run(limit.conclude(env.ip, env.client, True, NOW))
        assert len(trips) == before + 1
    assert trips.commands == ["EVALSHA"] * 3


def test_redis_failures_and_refusals_round_trips(redis_env: Env) -> None:
    env = redis_env
    limit, trips = counted_limiter(env, per_client_ip=2, issuance=1)
    assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    assert len(trips) == 2  # one each
    # The last failure emptied the bucket, and Redis said so: refused with no round trip,
    # before the lookup.
    for _ in range(10):
        with pytest.raises(SlowDownError) as refusal:
            env.run(limit.check(env.ip, env.client, NOW + 1))
        assert refusal.value.retry_after == 29
    assert len(trips) == 2
    # A grant that fails after conclude: one more, to give the issuance token back.
    assert env.attempt(limit, env.other_ip, env.client, "grant_failed") is None
    assert len(trips) == 4
    env.run(limit.refund(NOTHING_TAKEN, NOW))  # nothing taken, nothing to send
    assert len(trips) == 4


def test_redis_another_instance_learns_from_its_first_refusal(redis_env: Env) -> None:
    env = redis_env
    first = env.limiter(per_client_ip=2)
    second, trips = counted_limiter(env, per_client_ip=2)
    for _ in range(2):
        assert env.attempt(first, env.ip, env.client, "auth_failed") is None
    # The second instance does not know yet: its check lets the request on to the lookup,
    # and conclude, in Redis, refuses it (the right secret too).
    env.run(second.check(env.ip, env.client, NOW))
    with pytest.raises(SlowDownError):
        env.run(second.conclude(env.ip, env.client, True, NOW))
    assert len(trips) == 1
    with pytest.raises(SlowDownError) as refusal:  # now it knows: no round trip
        env.run(second.check(env.ip, env.client, NOW + 10))
    assert refusal.value.retry_after == 20
    assert len(trips) == 1


def test_redis_concurrent_concludes_on_two_instances_take_exactly_the_budget(
    redis_env: Env,
) -> None:
    """The atomicity the endpoint relies on: checks all pass at once, then every conclude
    is one script, whichever instance sends it."""
    env = redis_env
    stores = [env.store(), env.store()]
    limits = [env.limiter(per_ip=50, per_client_ip=7, issuance=4, store=s) for s in stores]

    async def burst() -> list[Admission | BaseException]:
        for limit in limits:
            await limit.check(env.ip, env.client, NOW)
        steps = [limits[i % 2].conclude(env.ip, env.client, i % 3 == 0, NOW) for i in range(60)]
        return await asyncio.gather(*steps, return_exceptions=True)

    answers = env.run(burst())
    successes = [a for i, a in enumerate(answers) if i % 3 == 0]
    failures = [a for i, a in enumerate(answers) if i % 3 != 0]
    assert sum(isinstance(a, Admission) and a.issuance != () for a in successes) <= 4
    assert sum(a is NOTHING_TAKEN for a in failures) == 7
    assert all(isinstance(a, Admission | SlowDownError) for a in answers), answers
    # Once the failure budget is gone, nothing more goes through, on either instance.
    for limit in limits:
        assert env.refused(limit, env.ip, env.client) is not None


def test_redis_the_learned_wait_runs_out(redis_env: Env) -> None:
    env = redis_env
    limit = env.limiter(per_client_ip=6)  # one token every 10 s
    store: Any = limit.store
    for _ in range(6):
        assert env.attempt(limit, env.ip, env.client, "auth_failed") is None
    buckets = failure_buckets(env.ip, env.client, limit.settings)
    assert store.known_wait(buckets, NOW + 4) == waits(6.0)
    held = len(store.blocked)
    assert held >= 1
    assert store.known_wait(buckets, NOW + 10) == 0.0
    assert len(store.blocked) == held - 1
    env.run(limit.check(env.ip, env.client, NOW + 10))
    assert env.attempt(limit, env.ip, env.client, "auth_failed", NOW + 10) is None


def test_redis_unreachable_fails_open_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    from centrali.store.redis_limits import RedisBucketStore

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = Env("memory")
    store = RedisBucketStore(f"redis://127.0.0.1:{port}/0")
    limit = TokenLimiter(LimitSettings(1, 1, 1), store)
    try:
        with caplog.at_level(logging.WARNING, logger="centrali.limits"):
            for outcome in ("auth_failed", "auth_failed", "issued", "grant_failed", "issued"):
                assert env.attempt(limit, IP, CLIENT, outcome) is None
    finally:
        env.run(store.close())
        env.close()
    warnings = [r for r in caplog.records if r.name == "centrali.limits"]
    assert len(warnings) == 1, warnings
    assert "Redis" in warnings[0].getMessage()


# --- the blocked-until table -------------------------------------------------------------------


def test_blocked_until_answers_the_longest_wait_it_knows() -> None:
    from centrali.store.redis_limits import BlockedUntil

    table = BlockedUntil()
    assert table.wait(["a"], NOW) == 0.0
    table.learn("a", 12.0, NOW)
    table.learn("b", 30.0, NOW)
    assert table.wait(["a"], NOW) == pytest.approx(12.0)
    assert table.wait(["a", "b", "c"], NOW + 2) == pytest.approx(28.0)
    table.learn("b", 0.0, NOW + 2)  # it holds a token again
    assert table.wait(["b"], NOW + 2) == 0.0
    table.forget("a")
    assert table.wait(["a"], NOW + 2) == 0.0
    assert len(table) == 0


def test_blocked_until_forgets_what_ran_out() -> None:
    from centrali.store.redis_limits import BlockedUntil

    table = BlockedUntil()
    table.learn("a", 5.0, NOW)
    assert table.wait(["a"], NOW + 4.9) == pytest.approx(0.1)
    assert len(table) == 1
    assert table.wait(["a"], NOW + 5) == 0.0
    assert len(table) == 0
    # A clock stepping back leaves a wait longer than any bucket has: dropped, not believed.
    table.learn("b", 60.0, NOW)
    assert table.wait(["b"], NOW - 3600) == 0.0
    assert len(table) == 0


def test_blocked_until_stays_bounded_and_keeps_the_longest_waits() -> None:
    from centrali.store.redis_limits import BlockedUntil

    table = BlockedUntil(max_entries=100)
    table.learn("attacker", 60.0, NOW)
    largest = 0
    for i in range(5_000):
        table.learn(f"k{i}", 1.0 + (i % 7), NOW + i * 0.001)
        largest = max(largest, len(table))
    assert largest <= 100
    assert table.wait(["attacker"], NOW + 5) == pytest.approx(55.0)
    # What has run out goes first.
    table = BlockedUntil(max_entries=10)
    for i in range(10):
        table.learn(f"old{i}", 1.0, NOW)
    table.learn("new", 30.0, NOW + 2)
    assert len(table) == 1
    assert table.wait(["new"], NOW + 2) == pytest.approx(30.0)


# --- SlowDownError ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "retry_after"),
    [(0.0001, 1), (0.5, 1), (1.0, 1), (1.01, 2), (12.0, 12), (59.2, 60), (61.0, 60), (1e9, 60)],
)
def test_slow_down_retry_after_is_whole_seconds_from_1_to_60(wait: float, retry_after: int) -> None:
    exc = SlowDownError(wait)
    assert exc.retry_after == retry_after
    assert exc.headers() == {"Retry-After": str(retry_after)}


def test_slow_down_error_body() -> None:
    exc = SlowDownError(5)
    assert isinstance(exc, OAuthError)
    assert exc.status_code == 429
    body = exc.body()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "slow_down"
    assert body["error_description"]
    assert exc.detail not in body.values()

"""Abuse limits of the token endpoint: bucket arithmetic, the bucket stores and the
limiter's three budgets (contract "Operations and security": 429 ``slow_down`` with a
``Retry-After`` of at most 60 s; ``0`` turns a limit off).

A request takes a token from each of its buckets *before* its secret is checked
(``TokenLimiter.admit``) and gets back what its outcome did not spend
(``TokenLimiter.settle``). The store contract (all-or-nothing take, give-back capped at
capacity, the older wait_time/charge) runs against the in-process store and, when one is
reachable, against Redis."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
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
        assert await store.wait_time([contract.bucket("never-seen", 1)], NOW) == 0.0
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


def test_empty_bucket_lists_take_and_wait_nothing(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        assert await store.take([], NOW) == 0.0
        assert await store.wait_time([], NOW) == 0.0
        await store.give_back([], NOW)

    contract.run(scenario)


# The older wait_time look (the login limiter's), on the same buckets.


def test_wait_time_takes_nothing(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        bucket = contract.bucket("k", 1)
        for _ in range(20):
            assert await store.wait_time([bucket], NOW) == 0.0
        assert await store.take([bucket], NOW) == 0.0
        assert await store.wait_time([bucket], NOW) == waits(60.0)
        assert await store.wait_time([bucket], NOW + 15) == waits(45.0)

    contract.run(scenario)


def test_wait_time_is_the_longest_of_the_buckets(contract: Contract) -> None:
    async def scenario(store: BucketStore) -> None:
        slow, fast = contract.bucket("slow", 2), contract.bucket("fast", 60)
        for _ in range(2):
            assert await store.take([slow], NOW) == 0.0
        for _ in range(60):
            assert await store.take([fast], NOW) == 0.0
        assert await store.wait_time([fast], NOW) == waits(1.0)
        assert await store.wait_time([slow, fast], NOW) == waits(30.0)

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
    assert run(store.wait_time([limited], NOW + 61)) == pytest.approx(49.0)


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


# --- TokenLimiter ----------------------------------------------------------------------------


def limiter(
    per_ip: int = 0, per_client_ip: int = 0, issuance: int = 0
) -> tuple[TokenLimiter, MemoryBucketStore]:
    store = MemoryBucketStore()
    settings = LimitSettings(
        failures_per_ip=per_ip, failures_per_client_ip=per_client_ip, issuance_per_client=issuance
    )
    return TokenLimiter(settings, store), store


def attempt(
    limit: TokenLimiter, ip: str, client_id: str | None, outcome: str, now: float = NOW
) -> int | None:
    """One whole request, settled with ``outcome``: the Retry-After of a refusal, or None."""
    try:
        admission = run(limit.admit(ip, client_id, now))
    except SlowDownError as exc:
        return exc.retry_after
    run(limit.settle(admission, outcome, now))
    return None


def refused(limit: TokenLimiter, ip: str, client_id: str | None, now: float = NOW) -> int | None:
    """The Retry-After of a refusal, or None when the request may go ahead (nothing spent)."""
    return attempt(limit, ip, client_id, "other", now)


def spent(store: MemoryBucketStore, bucket: Bucket, now: float = NOW) -> bool:
    """Whether ``bucket`` (capacity 1) is empty; takes its token when it is not."""
    return store.take_sync([bucket], now) > 0


def test_admit_takes_a_token_from_every_bucket() -> None:
    limit, store = limiter(per_ip=1, per_client_ip=1, issuance=1)
    admission = run(limit.admit(IP, CLIENT, NOW))
    failure = failure_buckets(IP, CLIENT, limit.settings)
    issuance = issuance_buckets(CLIENT, limit.settings)
    assert admission == Admission(tuple(failure), tuple(issuance))
    assert len(failure) == 2
    assert len(issuance) == 1
    for bucket in (*failure, *issuance):
        assert store.take_sync([bucket], NOW) == pytest.approx(60.0)


OUTCOMES = [
    ("issued", False, True),  # the secret was right: no failure, one token issued
    ("auth_failed", True, False),  # a failed authentication, nothing issued
    ("other", False, False),
    ("invalid_grant", False, False),
    ("server_error", False, False),
    ("", False, False),
]


@pytest.mark.parametrize(
    ("outcome", "failure_kept", "issuance_kept"), OUTCOMES, ids=[o[0] or "empty" for o in OUTCOMES]
)
def test_settle_gives_back_what_the_outcome_did_not_spend(
    outcome: str, failure_kept: bool, issuance_kept: bool
) -> None:
    limit, store = limiter(per_ip=1, per_client_ip=1, issuance=1)
    admission = run(limit.admit(IP, CLIENT, NOW))
    run(limit.settle(admission, outcome, NOW))
    for bucket in admission.failure:
        assert spent(store, bucket) is failure_kept, bucket.key
    for bucket in admission.issuance:
        assert spent(store, bucket) is issuance_kept, bucket.key


def test_requests_in_flight_hold_their_tokens() -> None:
    """Tokens are taken before the secret is checked: concurrent attempts cannot all pass
    one check and get more secret checks than the limit."""
    limit, _ = limiter(per_client_ip=3)
    in_flight = [run(limit.admit(IP, CLIENT, NOW)) for _ in range(3)]
    assert refused(limit, IP, CLIENT) == 20
    for admission in in_flight:
        run(limit.settle(admission, "issued", NOW))
    assert refused(limit, IP, CLIENT) is None


def test_concurrent_admissions_get_no_more_than_the_limit() -> None:
    limit, _ = limiter(per_client_ip=3)

    async def burst() -> list[Admission | BaseException]:
        admits = (limit.admit(IP, CLIENT, NOW) for _ in range(20))
        return await asyncio.gather(*admits, return_exceptions=True)

    answers = run(burst())
    assert sum(isinstance(a, Admission) for a in answers) == 3
    assert sum(isinstance(a, SlowDownError) for a in answers) == 17


def test_a_refused_admission_takes_nothing() -> None:
    limit, _ = limiter(per_client_ip=1, issuance=2)
    run(limit.admit(IP, CLIENT, NOW))  # in flight: IP's failure token and one issuance token
    for _ in range(5):
        assert refused(limit, IP, CLIENT) == 60
    run(limit.admit(OTHER_IP, CLIENT, NOW))  # the second issuance token was still there
    assert refused(limit, THIRD_IP, CLIENT) == 30


def test_failures_per_client_and_address() -> None:
    limit, _ = limiter(per_client_ip=3)
    for _ in range(3):
        assert attempt(limit, IP, CLIENT, "auth_failed") is None
    assert refused(limit, IP, CLIENT) == 20  # 3 a minute: one every 20 s
    assert refused(limit, OTHER_IP, CLIENT) is None  # the real client, elsewhere
    assert refused(limit, IP, OTHER_CLIENT) is None  # another client from that address
    assert refused(limit, IP, CLIENT, NOW + 20) is None  # a token came back


def test_failures_per_address_across_client_ids() -> None:
    limit, _ = limiter(per_ip=3)
    for i in range(3):
        assert attempt(limit, IP, f"ci_guess{i}", "auth_failed") is None
    assert refused(limit, IP, "ci_never_tried") == 20
    assert refused(limit, IP, None) == 20
    assert refused(limit, OTHER_IP, "ci_guess0") is None


def test_a_request_without_client_id_takes_from_the_address_only() -> None:
    """No credentials at all: a failed authentication of the address (never settled)."""
    limit, _ = limiter(per_ip=2, per_client_ip=2, issuance=2)
    first = run(limit.admit(IP, None, NOW))
    assert first == Admission(tuple(failure_buckets(IP, None, limit.settings)), ())
    assert [b.key for b in first.failure] == [f"f:ip:{IP}"]
    run(limit.admit(IP, None, NOW))
    assert refused(limit, IP, None) == 30
    assert refused(limit, IP, CLIENT) == 30
    assert refused(limit, OTHER_IP, CLIENT) is None


def test_a_request_without_client_id_is_free_when_only_per_client_limits_are_on() -> None:
    spy = SpyStore()
    limit = TokenLimiter(LimitSettings(0, 5, 5), spy)
    assert run(limit.admit(IP, None, NOW)) is NOTHING_TAKEN
    run(limit.settle(NOTHING_TAKEN, "auth_failed", NOW))
    assert spy.calls == []


@pytest.mark.parametrize(
    ("capacity", "expected"),
    [(1, 60), (2, 30), (59, 2), (60, 1), (1000, 1)],
    ids=["1", "2", "59", "60", "1000"],
)
def test_retry_after_is_between_1_and_60(capacity: int, expected: int) -> None:
    limit, _ = limiter(per_client_ip=capacity)
    for _ in range(capacity):
        assert attempt(limit, IP, CLIENT, "auth_failed") is None
    retry_after = refused(limit, IP, CLIENT)
    assert retry_after == expected
    assert 1 <= retry_after <= MAX_RETRY_AFTER == 60


def test_failures_are_not_charged_to_issuance() -> None:
    limit, _ = limiter(issuance=1)
    for _ in range(10):
        assert attempt(limit, IP, CLIENT, "auth_failed") is None
    assert refused(limit, IP, CLIENT) is None


def test_issuance_is_charged_on_issue_only_and_per_client() -> None:
    limit, _ = limiter(per_ip=1, per_client_ip=1, issuance=2)
    assert attempt(limit, IP, CLIENT, "issued") is None
    assert refused(limit, IP, CLIENT) is None  # the failure tokens came back
    assert attempt(limit, IP, CLIENT, "issued") is None
    assert refused(limit, IP, CLIENT) == 30
    assert refused(limit, OTHER_IP, CLIENT) == 30  # per client, wherever it asks from
    assert refused(limit, IP, OTHER_CLIENT) is None


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

    async def wait_time(self, buckets: Sequence[Bucket], now: float) -> float:
        self.calls.append(("wait_time", [b.key for b in buckets]))
        return await self.inner.wait_time(buckets, now)


def test_issuance_off_takes_no_issuance_token() -> None:
    spy = SpyStore()
    limit = TokenLimiter(LimitSettings(1, 1, 0), spy)
    for _ in range(5):
        admission = run(limit.admit(IP, CLIENT, NOW))
        assert admission.issuance == ()
        run(limit.settle(admission, "issued", NOW))
    assert spy.calls
    assert not any(key.startswith("i:") for _, keys in spy.calls for key in keys)
    assert refused(limit, IP, CLIENT) is None


def test_limits_of_0_are_off() -> None:
    settings = LimitSettings(failures_per_ip=0, failures_per_client_ip=0, issuance_per_client=0)
    assert not settings.enabled
    spy = SpyStore()
    limit = TokenLimiter(settings, spy)
    for _ in range(200):
        for client_id in (CLIENT, None):
            admission = run(limit.admit(IP, client_id, NOW))
            assert admission == NOTHING_TAKEN
            for outcome, _, _ in OUTCOMES:
                run(limit.settle(admission, outcome, NOW))
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
    failure = failure_buckets(IP, CLIENT, settings)
    keys = [b.key for b in [*failure, *issuance_buckets(CLIENT, settings)]]
    assert len(keys) == len(kinds)
    for key, kind in zip(keys, kinds, strict=True):
        assert key.startswith(kind)
    assert all(b.key.startswith("f:") for b in failure)
    assert all(b.key.startswith("i:") for b in issuance_buckets(CLIENT, settings))
    spy = SpyStore()
    admission = run(TokenLimiter(settings, spy).admit(IP, CLIENT, NOW))
    assert [b.key for b in (*admission.failure, *admission.issuance)] == keys
    assert spy.calls == [("take", keys)]  # one atomic step for all of them


def test_default_limit_settings_match_the_contract() -> None:
    assert LimitSettings() == LimitSettings(100, 20, 0)


def test_client_ids_are_truncated_in_keys() -> None:
    settings = LimitSettings(failures_per_ip=5, failures_per_client_ip=5, issuance_per_client=5)
    huge = "ci_" + "x" * 100_000
    keys = [b.key for b in failure_buckets(IP, huge, settings)]
    keys += [b.key for b in issuance_buckets(huge, settings)]
    assert max(len(k) for k in keys) <= len(f"f:ipc:{IP}:") + 128


@pytest.mark.parametrize(
    ("outcome", "kept"),
    [("issued", "i:c:"), ("auth_failed", "f:ipc:"), ("other", None)],
    ids=["issued", "auth_failed", "other"],
)
def test_a_long_client_id_gets_back_tokens_from_the_buckets_it_took_them_from(
    outcome: str, kept: str | None
) -> None:
    long_id = "ci_" + "y" * 300
    spy = SpyStore()
    limit = TokenLimiter(LimitSettings(0, 1, 1), spy)
    admission = run(limit.admit(IP, long_id, NOW))
    run(limit.settle(admission, outcome, NOW))
    (took, taken), (gave, given) = spy.calls
    assert (took, gave) == ("take", "give_back")
    assert all(len(key) < 200 for key in taken)
    assert given == [key for key in taken if kept is None or not key.startswith(kept)]
    assert len(spy.inner) == 2
    # What was given back is there again; what the outcome spent is not.
    expected = None if kept is None else 60
    assert refused(limit, IP, long_id) == expected


def test_a_long_client_id_is_limited_like_any_other() -> None:
    long_id = "ci_" + "y" * 300
    limit, store = limiter(per_client_ip=2, issuance=1)
    assert attempt(limit, IP, long_id, "auth_failed") is None
    assert attempt(limit, IP, long_id, "auth_failed") is None
    assert refused(limit, IP, long_id) == 30
    limit, store = limiter(issuance=1)
    assert attempt(limit, IP, long_id, "issued") is None
    assert refused(limit, OTHER_IP, long_id) == 60
    assert len(store) == 1


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


def test_a_refused_admission_says_when_to_come_back() -> None:
    limit, _ = limiter(per_client_ip=6)
    for _ in range(6):
        run(limit.admit(IP, CLIENT, NOW))
    with pytest.raises(SlowDownError) as refusal:
        run(limit.admit(IP, CLIENT, NOW + 5))
    assert refusal.value.retry_after == 5  # one token every 10 s, 5 s of it gone
    assert refusal.value.headers() == {"Retry-After": "5"}
    assert refusal.value.status_code == 429


def test_a_public_client_has_no_issuance_budget() -> None:
    """Every user of a public client (no secret) would share its budget, and any of them
    could spend it for all: only confidential clients get one."""
    limit, _ = limiter(issuance=1)
    for _ in range(5):
        admission = run(limit.admit(IP, "centrali-console", NOW, public=True))
        assert admission.issuance == ()
        run(limit.settle(admission, "issued", NOW))
    assert attempt(limit, IP, CLIENT, "issued") is None
    assert refused(limit, IP, CLIENT) == 60  # the confidential client's one token is spent

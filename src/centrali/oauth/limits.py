"""Abuse limits of the token endpoint: token buckets, checked before any client lookup.

Three budgets, each a bucket that holds ``limit`` tokens and refills ``limit`` per minute:

- failed authentications per source address (``failures_per_ip``; an IPv6 source counts
  by its /64, see ``address_key``);
- failed authentications per source address *and* client_id (``failures_per_client_ip``):
  an attacker hammering one client_id from one address exhausts that budget, while the real
  client, from its own address, keeps its own;
- tokens issued per client_id (``issuance_per_client``), charged on success only, so only
  the holder of the secret can spend it (public clients, which have none, have no such budget).

A request is refused (429, ``slow_down``) while any of its buckets is empty. In order
(see ``TokenLimiter``):

1. ``check``: a request whose budget is known to be spent is refused, taking nothing, before
   it costs a client lookup (no round trip: the in-process store looks at its buckets, the
   Redis one at what its earlier answers said);
2. the client lookup and the secret check;
3. ``conclude``, one atomic step once the outcome of the secret check is known: while a
   bucket of the request is empty nothing is taken and the request is refused, the right
   secret too; else a failed authentication takes a token from each failure bucket and an
   authenticated one takes its issuance token (a good request never holds failure tokens);
4. the token is issued, or, when the grant then fails (``invalid_scope``, ...), ``refund``
   gives the issuance token back.

Keys never hold what a client sent as is: the address is encoded by ``address_key`` (no
``:``, so it cannot run into the id after it) and the client id is a digest (``id_key``).

The bucket arithmetic lives here, with no I/O; the in-process store below keeps buckets in a
dict, and ``centrali.store.redis_limits`` keeps them in Redis so several instances share one
budget.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from centrali.oauth.errors import OAuthError

MAX_RETRY_AFTER = 60
_WINDOW = 60.0  # every limit is "per minute"


class SlowDownError(OAuthError):
    """429 with ``Retry-After``: a limit holds; the request is refused whatever its secret."""

    error = "slow_down"
    status_code = 429
    description = "Too many requests; retry later"

    def __init__(self, retry_after: float) -> None:
        super().__init__(None, detail="rate limited")
        self.retry_after = max(1, min(MAX_RETRY_AFTER, math.ceil(retry_after)))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


@dataclass(frozen=True, slots=True)
class LimitSettings:
    failures_per_ip: int = 100
    failures_per_client_ip: int = 20
    issuance_per_client: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.failures_per_ip or self.failures_per_client_ip or self.issuance_per_client)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One budget: its key and capacity (tokens per minute)."""

    key: str
    capacity: int

    @property
    def rate(self) -> float:
        return self.capacity / _WINDOW


def level_now(capacity: int, level: float, updated: float, now: float) -> float:
    """The bucket's level at ``now`` after refilling since ``updated``."""
    return min(float(capacity), level + max(0.0, now - updated) * capacity / _WINDOW)


def wait_for_one(bucket: Bucket, level: float) -> float:
    """Seconds until ``bucket`` holds one token again (0 when it does)."""
    return 0.0 if level >= 1.0 else (1.0 - level) / bucket.rate


def address_key(ip: str) -> str:
    """The source of a request as it appears in bucket keys.

    An IPv6 address counts by its /64: one host (or one customer of a provider) is usually
    given a whole /64, and rotating through it must not give a fresh budget per address. An
    IPv4 address counts by itself (an IPv4-mapped IPv6 address as its IPv4 address).

    The encoding is unambiguous and has no ``:`` in it (an IPv6 address joined to a client
    id by ``:`` could read as another address and id): ``4-`` + hex of the IPv4 address,
    ``6-`` + hex of the /64 prefix, anything else (no address, a test client's name) ``n-`` +
    a digest of it."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "n-" + _digest(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return "4-" + address.packed.hex()
    return "6-" + address.packed[:8].hex()


def id_key(value: str) -> str:
    """A client id (or any name a client sends) as it appears in bucket keys: a digest of
    fixed length, so a client that sends its secret as its id puts no secret into the
    store's keys, and no id can reach into the key's other parts."""
    return _digest(value)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def failure_buckets(ip: str, client_id: str | None, s: LimitSettings) -> list[Bucket]:
    """The buckets a failed authentication is charged to."""
    buckets = []
    source = address_key(ip)
    if s.failures_per_ip:
        buckets.append(Bucket(f"f:ip:{source}", s.failures_per_ip))
    if client_id is not None and s.failures_per_client_ip:
        buckets.append(Bucket(f"f:ipc:{source}:{id_key(client_id)}", s.failures_per_client_ip))
    return buckets


def issuance_buckets(client_id: str, s: LimitSettings) -> list[Bucket]:
    if not s.issuance_per_client:
        return []
    return [Bucket(f"i:c:{id_key(client_id)}", s.issuance_per_client)]


class BucketStore(Protocol):
    """Where bucket levels live; every method is one atomic step for all ``buckets``."""

    async def take(self, buckets: Sequence[Bucket], now: float) -> float:
        """Take one token from every bucket if each holds one and return 0; else take
        nothing and return the seconds until each holds one again."""
        ...

    async def give_back(self, buckets: Sequence[Bucket], now: float) -> None:
        """Return one token to every bucket (never above capacity)."""
        ...

    async def take_if_all(
        self, required: Sequence[Bucket], taken: Sequence[Bucket], now: float
    ) -> float:
        """If every bucket of ``required`` and of ``taken`` holds a token, take one from each
        of ``taken`` (the others are only looked at) and return 0; else take nothing and
        return the seconds until each holds one again (TokenLimiter.conclude)."""
        ...

    def known_wait(self, buckets: Sequence[Bucket], now: float) -> float:
        """Seconds until every bucket holds a token as far as this process knows (0: go
        ahead), with no I/O and taking nothing: the look ahead of TokenLimiter.check; only a
        take decides."""
        ...


class MemoryBucketStore:
    """Buckets in this process. When the table grows past ``max_entries`` the buckets that
    are full again are dropped first, then the fullest: memory stays bounded, and a flood of
    new keys cannot wash out the buckets that are actually holding someone back."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._levels: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    async def take(self, buckets: Sequence[Bucket], now: float) -> float:
        return self.take_sync(buckets, now)

    async def give_back(self, buckets: Sequence[Bucket], now: float) -> None:
        self.give_back_sync(buckets, now)

    async def take_if_all(
        self, required: Sequence[Bucket], taken: Sequence[Bucket], now: float
    ) -> float:
        return self.take_if_all_sync(required, taken, now)

    def known_wait(self, buckets: Sequence[Bucket], now: float) -> float:
        """What the buckets hold: this store knows all there is to know."""
        with self._lock:
            return max((wait_for_one(b, self._level(b, now)) for b in buckets), default=0.0)

    def _level(self, bucket: Bucket, now: float) -> float:
        held = self._levels.get(bucket.key)
        if held is None:
            return float(bucket.capacity)
        return level_now(bucket.capacity, held[0], held[1], now)

    def take_sync(self, buckets: Sequence[Bucket], now: float) -> float:
        return self.take_if_all_sync(buckets, buckets, now)

    def take_if_all_sync(
        self, required: Sequence[Bucket], taken: Sequence[Bucket], now: float
    ) -> float:
        with self._lock:
            looked = {b.key: b for b in (*required, *taken)}
            levels = {key: self._level(b, now) for key, b in looked.items()}
            wait = max((wait_for_one(b, levels[b.key]) for b in looked.values()), default=0.0)
            if wait > 0:
                return wait
            for bucket in {b.key: b for b in taken}.values():
                self._levels[bucket.key] = (levels[bucket.key] - 1.0, now)
            if len(self._levels) > self._max_entries:
                self._sweep(now)
            return 0.0

    def give_back_sync(self, buckets: Sequence[Bucket], now: float) -> None:
        with self._lock:
            for bucket in buckets:
                if bucket.key in self._levels:
                    level = min(float(bucket.capacity), self._level(bucket, now) + 1.0)
                    self._levels[bucket.key] = (level, now)

    def _sweep(self, now: float) -> None:
        idle = [k for k, (_, updated) in self._levels.items() if now - updated >= _WINDOW]
        for key in idle:
            del self._levels[key]
        if len(self._levels) > self._max_entries:
            fullest = sorted(self._levels.items(), key=lambda item: -item[1][0])
            for key, _ in fullest[: len(fullest) // 2]:
                del self._levels[key]

    def __len__(self) -> int:
        return len(self._levels)


@dataclass(frozen=True, slots=True)
class Admission:
    """The tokens a request holds: what ``conclude`` took for a token about to be issued
    (``refund`` gives it back should the grant fail)."""

    issuance: tuple[Bucket, ...] = ()


NOTHING_TAKEN = Admission()


class TokenLimiter:
    """The three budgets over a bucket store.

    ``check`` (before the client lookup, no round trip) refuses what is known to be held
    back; ``conclude`` (once the secret was checked) decides in one atomic step: while a
    bucket is empty it takes nothing and refuses, so concurrent guesses cannot all slip past
    one look and a held-back source is refused with the right secret too; otherwise a
    failure takes a token from each failure bucket and a success its issuance token, which
    ``refund`` gives back if the grant then fails. A good request never holds failure
    tokens, so concurrent good requests never hold back one another."""

    # Bucket names of recent (address, client, public) triples: parsing the address and
    # hashing the id cost more than the rest of a check. Bounded: emptied when full.
    _KNOWN_MAX = 4096

    def __init__(self, settings: LimitSettings, store: BucketStore) -> None:
        self.settings = settings
        self.store = store
        self._known: dict[
            tuple[str, str | None, bool], tuple[tuple[Bucket, ...], tuple[Bucket, ...]]
        ] = {}

    def _buckets(
        self, ip: str, client_id: str | None, public: bool
    ) -> tuple[tuple[Bucket, ...], tuple[Bucket, ...]]:
        """A request's failure and issuance buckets. A public client (no secret) has no
        issuance budget: every user of it would share one, and any of them could spend it
        for all."""
        key = (ip, client_id, public)
        known = self._known.get(key)
        if known is not None:
            return known
        failure = tuple(failure_buckets(ip, client_id, self.settings))
        issuance = (
            tuple(issuance_buckets(client_id, self.settings)) if client_id and not public else ()
        )
        if len(ip) <= 64 and (client_id is None or len(client_id) <= 128):  # no 64 KiB keys
            if len(self._known) >= self._KNOWN_MAX:
                self._known.clear()
            self._known[key] = (failure, issuance)
        return failure, issuance

    async def check(
        self, ip: str, client_id: str | None, now: float, *, public: bool = False
    ) -> None:
        """Raise SlowDownError when a budget of this request is known to be spent, taking
        nothing, so a refused request costs no client lookup. No round trip: the store
        answers from what it knows (``BucketStore.known_wait``); ``conclude`` decides."""
        failure, issuance = self._buckets(ip, client_id, public)
        if failure or issuance:
            wait = self.store.known_wait((*failure, *issuance), now)
            if wait > 0:
                raise SlowDownError(wait)

    async def conclude(
        self,
        ip: str,
        client_id: str | None,
        authenticated: bool,
        now: float,
        *,
        public: bool = False,
    ) -> Admission:
        """Once the credentials were checked, one atomic step of the store: while a bucket of
        the request is empty (a failure bucket, or the issuance bucket of an authenticated
        confidential client) take nothing and raise SlowDownError, the right secret from a
        held-back source too; else an authenticated request takes its issuance token (kept
        in the Admission, for ``refund``) and a failed one a token from each failure bucket
        (nothing to give back: NOTHING_TAKEN)."""
        failure, issuance = self._buckets(ip, client_id, public)
        taken = issuance if authenticated else failure
        required = (*failure, *issuance) if authenticated else failure
        if not required:
            return NOTHING_TAKEN
        wait = await self.store.take_if_all(required, taken, now)
        if wait > 0:
            raise SlowDownError(wait)
        return Admission(issuance=issuance) if authenticated and issuance else NOTHING_TAKEN

    async def refund(self, admission: Admission, now: float) -> None:
        """Give back the issuance token ``conclude`` took, when the grant then failed
        (``invalid_scope``, ...); nothing to do, and no round trip, for NOTHING_TAKEN."""
        if admission.issuance:
            await self.store.give_back(admission.issuance, now)

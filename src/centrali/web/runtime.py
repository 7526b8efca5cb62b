"""What a running app holds: settings, store, keys; built once per process."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request

from centrali.config import Settings
from centrali.oauth.client_assertions import ReplayStore, assertion_methods
from centrali.oauth.client_auth import METHODS, ClientAuthenticator
from centrali.oauth.grants import IssuerConfig
from centrali.oauth.keys import KeySet
from centrali.oauth.limits import BucketStore, LimitSettings, MemoryBucketStore, TokenLimiter
from centrali.oauth.ports import ClientRecord
from centrali.oauth.reuse import TokenReuseCache
from centrali.oauth.user_ports import PublicClient
from centrali.services.auth import TokenPolicy
from centrali.services.credential_usage import CredentialUsageCounter
from centrali.services.federation import IssuerKeyCache
from centrali.services.keys import KeyWatcher
from centrali.services.oidc import OidcStore, find_public_client
from centrali.services.token_failures import TokenFailureCounter
from centrali.store import audit_queries
from centrali.store.client_store import SqlClientStore
from centrali.store.db import Database
from centrali.store.replay import SqlReplayStore, replay_key
from centrali.store.repositories import AccountGrants, read_records, service_accounts_grants
from centrali.store.revocation import revoked_jtis
from centrali.web.batching import TurnBatch

log = logging.getLogger("centrali.web")


class SystemClock:
    def now(self) -> float:
        return time.time()


@dataclass
class Runtime:
    settings: Settings
    db: Database
    keys: KeySet
    clock: SystemClock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self.clients = SqlClientStore(self.db.autocommit_engine)
        # The hot lookups, gathered per event-loop turn (looked up at call time: tests
        # watch the store's methods).
        self.client_lookups: TurnBatch[str, ClientRecord | None] = TurnBatch(
            lambda client_ids: self.clients.find_clients(client_ids), name="clients"
        )
        self.grant_lookups: TurnBatch[tuple[str, str], AccountGrants | None] = TurnBatch(
            lambda pairs: self._service_accounts_grants(pairs), name="grants"
        )
        self.record_reads: TurnBatch[tuple[str, int], tuple[Any, ...] | None] = TurnBatch(
            lambda keys: self._read_records(keys), name="records"
        )
        # The reuse cache's question before a held token goes out (token_asgi.issue_token).
        self.revoked_jtis: TurnBatch[str, bool] = TurnBatch(
            lambda jtis: revoked_jtis(self.db, jtis), name="revoked"
        )
        self.limiter = build_limiter(self.settings)
        self.token_failures = TokenFailureCounter()
        self.credential_usage = CredentialUsageCounter()
        self.oidc_store = OidcStore(self.db, self.settings.issuer)
        self.replay = build_replay_store(self.settings, self.db)
        self.issuer_keys = IssuerKeyCache(allow_http=self.settings.federation_allow_http)
        issuer = self.settings.issuer
        self.authenticator = ClientAuthenticator(
            clients=_BatchedClients(self.client_lookups),
            public_clients=_PublicClients(self.oidc_store),
            limiter=self.limiter,
            failures=self.token_failures,
            usage=self.credential_usage,
            methods={
                **METHODS,
                **assertion_methods(
                    issuer=issuer,
                    token_endpoint=f"{issuer}/oidc/token",
                    replay=self.replay,
                    issuer_keys=self.issuer_keys,
                ),
            },
        )
        self.set_keys(self.keys)

    def _service_accounts_grants(
        self, pairs: Sequence[tuple[str, str]]
    ) -> list[AccountGrants | None]:
        with self.db.autocommit_engine.connect() as conn:
            return service_accounts_grants(conn, pairs)

    def _read_records(self, keys: Sequence[tuple[str, int]]) -> list[tuple[Any, ...] | None]:
        with self.db.autocommit_engine.connect() as conn:
            return read_records(conn, keys)

    def set_keys(self, keys: KeySet) -> None:
        self.keys = keys
        s = self.settings
        reuse = TokenReuseCache(s.token_reuse_seconds) if s.token_reuse_seconds else None
        self.issuer_config = IssuerConfig(
            keys=keys, issuer=s.issuer, audience=s.audience, ttl=s.token_ttl, reuse=reuse
        )
        self.policy = TokenPolicy(keys=keys, issuer=s.issuer, audience=s.audience)

    async def close(self) -> None:
        """Release what the worker holds besides the store (the Redis connection, the
        lookup threads)."""
        for batch in (
            self.client_lookups,
            self.grant_lookups,
            self.record_reads,
            self.revoked_jtis,
        ):
            batch.close()
        await self.issuer_keys.close()
        for holder in (self.limiter.store if self.limiter else None, self.replay):
            close = getattr(holder, "close", None)
            if close is not None:
                await close()


class _BatchedClients:
    """The pipeline's ClientStore: each lookup joins the batch of the moment."""

    def __init__(self, batch: TurnBatch[str, ClientRecord | None]) -> None:
        self._batch = batch

    async def find_client(self, client_id: str) -> ClientRecord | None:
        return await self._batch.find(client_id)


class _BatchedReplay:
    """The database ReplayStore: the assertion ids of the moment stored in one transaction,
    on a thread of its own (web.batching)."""

    def __init__(self, store: SqlReplayStore) -> None:
        self._batch: TurnBatch[tuple[str, int], bool] = TurnBatch(store.use_many, name="replay")

    async def use_once(self, key: str, expires_at: float) -> bool:
        return await self._batch.find((replay_key(key), math.ceil(expires_at)))

    async def close(self) -> None:
        self._batch.close()


class _PublicClients:
    """The pipeline's PublicClientLookup: a store read, in a worker thread."""

    def __init__(self, store: OidcStore) -> None:
        self._store = store

    async def find_public_client(self, client_id: str) -> PublicClient | None:
        return await asyncio.to_thread(find_public_client, self._store, client_id)


FAILURE_FLUSH_SECONDS = 5.0


FAILURE_RETENTION = timedelta(days=90)


async def flush_token_failures(runtime: Runtime) -> None:
    """Write the failed-token counts and the credentials' last-use times to the store every
    few seconds, off the event loop, and once more when the worker stops; once an hour drop
    failure windows older than 90 days."""
    pruned_at = time.monotonic() - 3600  # the first tick prunes
    try:
        while True:
            await asyncio.sleep(FAILURE_FLUSH_SECONDS)
            await _flush_failures(runtime)
            await flush_credential_usage(runtime)
            if time.monotonic() - pruned_at >= 3600:
                pruned_at = time.monotonic()
                await _prune_failures(runtime)
    finally:
        await _flush_failures(runtime)
        await flush_credential_usage(runtime)


async def flush_credential_usage(runtime: Runtime) -> None:
    try:
        await asyncio.to_thread(runtime.credential_usage.flush, runtime.db)
    except Exception:  # the times are kept for the next flush
        log.warning("credential last-use times: store write failed; kept for the next flush")


async def _prune_failures(runtime: Runtime) -> None:
    def prune() -> None:
        with runtime.db.write() as session:
            audit_queries.prune_token_failure_counts(
                session, before=datetime.now(UTC) - FAILURE_RETENTION
            )

    try:
        await asyncio.to_thread(prune)
    except Exception:
        log.warning("failed token counts: pruning old windows failed; retried in an hour")


async def _flush_failures(runtime: Runtime) -> None:
    try:
        await asyncio.to_thread(runtime.token_failures.flush, runtime.db, datetime.now(UTC))
    except Exception:  # the counts are kept for the next flush
        log.warning("failed token counts: store write failed; kept for the next flush")


def build_replay_store(settings: Settings, db: Database) -> ReplayStore:
    """Where used private_key_jwt assertion ids are kept: Redis when configured, else the
    database (shared by every worker and instance either way)."""
    if settings.redis_url:
        from centrali.store.replay import RedisReplayStore  # only when configured

        return RedisReplayStore(settings.redis_url)
    return _BatchedReplay(SqlReplayStore(db))


def build_limiter(settings: Settings) -> TokenLimiter | None:
    """The token endpoint's abuse limits: in this process, or shared through Redis."""
    limits = LimitSettings(
        failures_per_ip=settings.token_failures_per_ip,
        failures_per_client_ip=settings.token_failures_per_client_ip,
        issuance_per_client=settings.token_issuance_per_client,
    )
    if not limits.enabled:
        return None
    store: BucketStore
    if settings.redis_url:
        from centrali.store.redis_limits import RedisBucketStore  # only when configured

        store = RedisBucketStore(settings.redis_url)
    else:
        store = MemoryBucketStore()
    return TokenLimiter(limits, store)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


_keys_log = logging.getLogger("centrali.keys")


async def watch_keys(runtime: Runtime, watcher: KeyWatcher) -> None:
    """Reread the keys every ``key_refresh_seconds`` and switch to a new set when the store
    or the clock says so (a rotation, a retirement, a pending key's activation), without a
    restart. A failed reread is logged and tried again at the next tick."""
    interval = runtime.settings.key_refresh_seconds
    while True:
        await asyncio.sleep(interval)
        reread = asyncio.ensure_future(asyncio.to_thread(watcher.poll, runtime.clock.now()))
        try:
            keys = await asyncio.shield(reread)
        except asyncio.CancelledError:
            # Shutting down: let a reread in flight finish before the store is closed.
            with suppress(Exception):
                await reread
            raise
        except Exception as exc:  # the store may be away for a while; keep the keys we have
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            _keys_log.warning("signing keys not reread (retrying in %s s): %s", interval, reason)
            continue
        if keys is not None:
            runtime.set_keys(keys)
            _keys_log.info(
                "signing keys reloaded: %s signs, %d published",
                keys.signing.kid,
                len(keys.verification),
            )

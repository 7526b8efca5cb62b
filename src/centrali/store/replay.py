"""The ``ReplayStore`` of ``private_key_jwt`` assertions: each ``jti`` once, across every
worker and instance, until the assertion expires.

In the database by default (``client_assertion_jtis``: ``SqlReplayStore.use_many`` stores the
keys of many requests in one ``INSERT … ON CONFLICT DO NOTHING RETURNING key`` transaction;
web.runtime gathers the requests of the moment into it on a thread of its own, so a busy
worker does not pay one write transaction per request),
or in Redis when ``CENTRALI_REDIS_URL`` is set (``SET key NX EXAT``: one round trip, expiry by
Redis). A store that does not answer is
``StoreUnavailableError`` (503): an assertion that cannot be checked is not let through.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from centrali.store.client_store import StoreUnavailableError
from centrali.store.db import Database
from centrali.store.tables import ClientAssertionJti

PRUNE_EVERY = 300.0  # seconds between sweeps of expired rows, per process


def replay_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class SqlReplayStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._pruned_at = 0.0

    def use_many(self, keys: Sequence[tuple[str, int]]) -> list[bool]:
        """One transaction for many (key, expires at) pairs, keys already hashed
        (replay_key): True for each key stored now, False for one that was already there
        (or repeats an earlier key of the same call). Blocking."""
        if not keys:
            return []
        now = time.time()
        first: dict[str, int] = {}
        for key, expires_at in keys:
            first.setdefault(key, expires_at)
        insert = pg_insert if self._db.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = (
            insert(ClientAssertionJti)
            .values([{"key": k, "expires_at": e} for k, e in first.items()])
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(ClientAssertionJti.key)
        )
        try:
            with self._db.write() as session:
                if now - self._pruned_at >= PRUNE_EVERY:
                    self._pruned_at = now
                    session.execute(
                        delete(ClientAssertionJti).where(ClientAssertionJti.expires_at < int(now))
                    )
                stored = set(session.execute(stmt).scalars())
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(type(exc).__name__) from exc
        answers = []
        for key, _ in keys:
            answers.append(key in stored)
            stored.discard(key)  # a second use in the same batch is a replay too
        return answers


class RedisReplayStore:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis  # only when configured

        self._redis: Any = redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    async def use_once(self, key: str, expires_at: float) -> bool:
        import redis

        try:
            done = await self._redis.set(
                f"centrali:jti:{replay_key(key)}", b"1", nx=True, exat=math.ceil(expires_at)
            )
        except redis.RedisError as exc:
            raise StoreUnavailableError(type(exc).__name__) from exc
        return bool(done)

    async def close(self) -> None:
        await self._redis.aclose()

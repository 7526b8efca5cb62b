"""The ``ReplayStore`` of ``private_key_jwt`` assertions: each ``jti`` once, across every
worker and instance, until the assertion expires.

In the database by default (``client_assertion_jtis``: an INSERT that a second use of the
same key cannot repeat, in a worker thread), or in Redis when ``CENTRALI_REDIS_URL`` is set
(``SET key NX EXAT``: one round trip, expiry by Redis). A store that does not answer is
``StoreUnavailableError`` (503): an assertion that cannot be checked is not let through.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

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

    async def use_once(self, key: str, expires_at: float) -> bool:
        return await asyncio.to_thread(self._use_once, replay_key(key), expires_at)

    def _use_once(self, key: str, expires_at: float) -> bool:
        now = time.time()
        try:
            with self._db.write() as session:
                if now - self._pruned_at >= PRUNE_EVERY:
                    self._pruned_at = now
                    session.execute(
                        delete(ClientAssertionJti).where(ClientAssertionJti.expires_at < int(now))
                    )
                session.execute(
                    insert(ClientAssertionJti).values(key=key, expires_at=math.ceil(expires_at))
                )
        except IntegrityError:
            return False  # already used (on this instance or another)
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(type(exc).__name__) from exc
        return True


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

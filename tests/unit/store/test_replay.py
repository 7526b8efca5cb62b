"""store.replay: each assertion id once, in one transaction for many (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

from centrali.store.db import Database
from centrali.store.replay import SqlReplayStore, replay_key


def test_each_key_is_stored_once_across_calls_and_within_one(db: Database) -> None:
    store = SqlReplayStore(db)
    later = int(time.time()) + 300
    a, b, c = (replay_key(f"ci_x\n{jti}") for jti in ("a", "b", "c"))
    assert store.use_many([(a, later), (b, later), (a, later)]) == [True, True, False]
    assert store.use_many([(b, later), (c, later)]) == [False, True]
    assert store.use_many([]) == []


def test_expired_keys_are_pruned(db: Database) -> None:
    store = SqlReplayStore(db)
    gone = replay_key("ci_x\nold")
    assert store.use_many([(gone, int(time.time()) - 10)]) == [True]
    store._pruned_at = 0.0  # the next call sweeps
    # The sweep runs first, so the expired key can be stored again (its assertion has long
    # expired anyway: the method refuses it before it gets here).
    assert store.use_many([(gone, int(time.time()) + 300)]) == [True]


def test_a_key_is_a_fixed_length_digest() -> None:
    assert len(replay_key("ci_x\n" + "j" * 10_000)) == 64
    assert replay_key("ci_a\nb") != replay_key("ci_a\nc")

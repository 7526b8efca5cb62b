"""Failed token requests counted in memory (``TokenFailureCounter``) and added to the store
(``token_failure_counts``) by ``flush``: on every configured backend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from centrali.services import service_accounts as accounts
from centrali.services.context import Actor
from centrali.services.token_failures import MAX_KEYS, UNKNOWN_CLIENT, TokenFailureCounter
from centrali.services.workspaces import create_workspace
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import TokenFailureCount

T0 = datetime(2026, 3, 1, 10, 15, 0, tzinfo=UTC)
HOUR_10 = datetime(2026, 3, 1, 10, tzinfo=UTC)
HOUR_11 = datetime(2026, 3, 1, 11, tzinfo=UTC)
KNOWN_SHAPE = "ci_" + "a" * 20


class Clock:
    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def counter(clock: Clock | None = None, max_keys: int = MAX_KEYS) -> TokenFailureCounter:
    return TokenFailureCounter(max_keys=max_keys, clock=clock or Clock())


# --- in memory -------------------------------------------------------------------------------


def test_counts_per_client_reason_and_hour() -> None:
    clock = Clock(HOUR_10 + timedelta(minutes=59, seconds=59))
    c = counter(clock)
    c.record(KNOWN_SHAPE, "wrong_secret")
    c.record(KNOWN_SHAPE, "wrong_secret")
    c.record(KNOWN_SHAPE, "revoked")
    clock.at = HOUR_11
    c.record(KNOWN_SHAPE, "wrong_secret")
    assert c.snapshot() == {
        (KNOWN_SHAPE, "wrong_secret", HOUR_10): 2,
        (KNOWN_SHAPE, "revoked", HOUR_10): 1,
        (KNOWN_SHAPE, "wrong_secret", HOUR_11): 1,
    }
    assert c.pending() == 4


@pytest.mark.parametrize(
    "client_id",
    ["", "x" * 33, "ci_\x00abc", "ci_\nabc", "ci_é", "c" * 10_000],
    ids=["empty", "too-long", "nul", "newline", "non-ascii", "huge"],
)
def test_an_id_that_cannot_be_an_account_is_counted_as_unknown_at_once(client_id: str) -> None:
    c = counter()
    c.record(client_id, "unknown_client")
    assert c.snapshot() == {(UNKNOWN_CLIENT, "unknown_client", HOUR_10): 1}


def test_a_long_reason_is_cut_to_the_column() -> None:
    c = counter()
    c.record(KNOWN_SHAPE, "r" * 100)
    assert c.snapshot() == {(KNOWN_SHAPE, "r" * 32, HOUR_10): 1}


def test_past_the_cap_new_keys_fold_into_unknown() -> None:
    c = counter(max_keys=5)
    ids = [f"ci_{i:020d}" for i in range(12)]
    for client_id in ids:
        c.record(client_id, "wrong_secret")
    for client_id in ids[:5]:  # keys already held keep counting past the cap
        c.record(client_id, "wrong_secret")
    c.record(ids[-1], "revoked")
    snapshot = c.snapshot()
    assert {k[0] for k in snapshot} == {*ids[:5], UNKNOWN_CLIENT}
    assert all(snapshot[(i, "wrong_secret", HOUR_10)] == 2 for i in ids[:5])
    assert snapshot[(UNKNOWN_CLIENT, "wrong_secret", HOUR_10)] == 7
    assert snapshot[(UNKNOWN_CLIENT, "revoked", HOUR_10)] == 1
    # Beyond the cap, at most one "unknown" key per reason and hour.
    assert len(snapshot) == 5 + 2
    assert c.pending() == 12 + 5 + 1


def test_a_flood_of_made_up_ids_stays_within_the_cap() -> None:
    c = counter(max_keys=100)
    for i in range(20_000):
        c.record(f"ci_{i:020d}", "unknown_client")
    assert len(c.snapshot()) == 101
    assert c.pending() == 20_000


def test_records_from_many_threads_all_count() -> None:
    c = counter(max_keys=50)
    threads, per_thread = 8, 5_000
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            # 8 threads x 10 ids = 80 keys against a cap of 50: the folding races too.
            c.record(f"ci_{n:02d}{i % 10:018d}", "wrong_secret")

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    snapshot = c.snapshot()
    assert sum(snapshot.values()) == threads * per_thread
    assert len(snapshot) == 51
    assert snapshot[(UNKNOWN_CLIENT, "wrong_secret", HOUR_10)] == (80 - 50) * (per_thread // 10)


def test_flush_of_nothing_writes_nothing() -> None:
    # Not even a connection: an unreachable store does not matter.
    db = Database("postgresql://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    try:
        assert counter().flush(db, T0) == 0
    finally:
        db.dispose()


def test_a_failed_flush_keeps_the_counts_for_the_next() -> None:
    c = counter(max_keys=3)
    c.record(KNOWN_SHAPE, "wrong_secret")
    c.record("ci_" + "b" * 20, "revoked")
    db = Database("postgresql://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    try:
        with pytest.raises(Exception, match="(?i)connect"):
            c.flush(db, T0)
    finally:
        db.dispose()
    c.record("ci_" + "c" * 20, "revoked")
    assert c.snapshot() == {
        (KNOWN_SHAPE, "wrong_secret", HOUR_10): 1,
        ("ci_" + "b" * 20, "revoked", HOUR_10): 1,
        ("ci_" + "c" * 20, "revoked", HOUR_10): 1,
    }


# --- flushed to the store ----------------------------------------------------------------------


def stored(db: Database) -> dict[tuple[str, str, datetime], dict[str, Any]]:
    with db.read() as session:
        rows = session.scalars(select(TokenFailureCount)).all()
        return {
            (r.client_id, r.reason, r.window_start): {
                "workspace_id": r.workspace_id,
                "count": r.count,
                "last_seen_at": r.last_seen_at,
            }
            for r in rows
        }


def make_account(db: Database, workspace: str = "acme-corp") -> tuple[str, int]:
    """A new account's clientId, and its workspace's id."""
    view = accounts.create(db, workspace_slug=workspace, actor=Actor("u"), name="n")
    with db.read() as session:
        found = repo.get_workspace(session, slug=workspace)
        assert found is not None
        return view.client_id, found.id


def test_flush_resolves_workspaces_and_folds_unknown_ids(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    create_workspace(db, slug="globex")
    acme_client, acme_id = make_account(db, "acme-corp")
    globex_client, globex_id = make_account(db, "globex")
    clock = Clock()
    c = counter(clock)
    for _ in range(3):
        c.record(acme_client, "wrong_secret")
    clock.at = T0 + timedelta(minutes=5)
    c.record(globex_client, "revoked")
    c.record("ci_" + "z" * 20, "unknown_client")  # well-formed, but no such account
    c.record("ci_" + "y" * 20, "unknown_client")
    c.record("", "invalid_request")
    assert c.flush(db, T0 + timedelta(minutes=10)) == 7
    assert c.pending() == 0
    assert stored(db) == {
        (acme_client, "wrong_secret", HOUR_10): {
            "workspace_id": acme_id,
            "count": 3,
            "last_seen_at": T0,
        },
        (globex_client, "revoked", HOUR_10): {
            "workspace_id": globex_id,
            "count": 1,
            "last_seen_at": T0 + timedelta(minutes=5),
        },
        (UNKNOWN_CLIENT, "unknown_client", HOUR_10): {
            "workspace_id": None,
            "count": 2,
            "last_seen_at": T0 + timedelta(minutes=5),
        },
        (UNKNOWN_CLIENT, "invalid_request", HOUR_10): {
            "workspace_id": None,
            "count": 1,
            "last_seen_at": T0 + timedelta(minutes=5),
        },
    }


def test_flushing_twice_adds_up(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    client_id, workspace_id = make_account(db)
    clock = Clock()
    c = counter(clock)
    c.record(client_id, "wrong_secret")
    c.record("ci_" + "z" * 20, "unknown_client")
    assert c.flush(db, T0) == 2
    clock.at = T0 + timedelta(minutes=30)
    c.record(client_id, "wrong_secret")
    c.record(client_id, "wrong_secret")
    c.record("ci_" + "x" * 20, "unknown_client")
    clock.at = HOUR_11 + timedelta(minutes=1)
    c.record(client_id, "wrong_secret")
    assert c.flush(db, HOUR_11 + timedelta(minutes=2)) == 4
    # A second counter (another worker) adds to the same rows.
    other = counter(Clock(T0 + timedelta(minutes=1)))
    other.record(client_id, "wrong_secret")
    assert other.flush(db, T0 + timedelta(minutes=2)) == 1
    rows = stored(db)
    assert rows[(client_id, "wrong_secret", HOUR_10)] == {
        "workspace_id": workspace_id,
        "count": 4,
        "last_seen_at": T0 + timedelta(minutes=30),  # the later one is kept
    }
    assert rows[(client_id, "wrong_secret", HOUR_11)]["count"] == 1
    assert rows[(UNKNOWN_CLIENT, "unknown_client", HOUR_10)]["count"] == 2
    assert len(rows) == 3


def test_a_deleted_account_still_counts_under_its_id(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    view = accounts.create(db, workspace_slug="acme-corp", actor=Actor("u"), name="n")
    accounts.delete(db, workspace_slug="acme-corp", account_id=view.id, actor=Actor("u"))
    c = counter()
    c.record(view.client_id, "deleted")
    assert c.flush(db, T0) == 1
    assert stored(db)[(view.client_id, "deleted", HOUR_10)]["count"] == 1


def test_stamps_are_bounded_by_the_flush_time(db: Database) -> None:
    c = counter(Clock(HOUR_11 + timedelta(minutes=5)))  # a clock ahead of `now`
    c.record("ci_" + "z" * 20, "unknown_client")
    now = T0 + timedelta(minutes=1)
    c.flush(db, now)
    assert stored(db) == {
        (UNKNOWN_CLIENT, "unknown_client", HOUR_10): {
            "workspace_id": None,
            "count": 1,
            "last_seen_at": now,
        }
    }


def test_flush_of_a_full_counter_in_one_transaction(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    known = [make_account(db)[0] for _ in range(3)]
    c = counter(max_keys=MAX_KEYS)
    for i in range(MAX_KEYS + 500):
        c.record(f"ci_{i:020d}", "unknown_client")
    for client_id in known:  # past the cap: folded, though they are accounts
        c.record(client_id, "wrong_secret")
    assert c.flush(db, T0) == MAX_KEYS + 503
    rows = stored(db)
    assert rows == {
        (UNKNOWN_CLIENT, "unknown_client", HOUR_10): {
            "workspace_id": None,
            "count": MAX_KEYS + 500,
            "last_seen_at": T0,
        },
        (UNKNOWN_CLIENT, "wrong_secret", HOUR_10): {
            "workspace_id": None,
            "count": 3,
            "last_seen_at": T0,
        },
    }


def test_records_while_flushing_from_another_thread_are_never_lost(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    client_id, _ = make_account(db)
    c = counter()
    threads, per_thread = 4, 2_000
    done = threading.Event()

    def work() -> None:
        for i in range(per_thread):
            c.record(client_id if i % 2 else "ci_" + "q" * 20, "wrong_secret")

    def flusher() -> None:
        while not done.is_set():
            c.flush(db, T0)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    background = threading.Thread(target=flusher)
    background.start()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    done.set()
    background.join()
    c.flush(db, T0)
    rows = stored(db)
    assert rows[(client_id, "wrong_secret", HOUR_10)]["count"] == threads * per_thread // 2
    assert rows[(UNKNOWN_CLIENT, "wrong_secret", HOUR_10)]["count"] == threads * per_thread // 2


def test_servers_flushing_at_once_add_up(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    known = sorted(make_account(db)[0] for _ in range(5))
    rounds, workers = 20, 3
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def worker() -> None:
        c = counter()
        start.wait()
        try:
            for _ in range(rounds):
                # The same keys in a different order each time: no deadlock, no duplicate.
                for client_id in reversed(known) if threading.get_ident() % 2 else known:
                    c.record(client_id, "wrong_secret")
                c.record("ci_" + "z" * 20, "unknown_client")
                c.flush(db, T0)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    rows = stored(db)
    assert all(rows[(k, "wrong_secret", HOUR_10)]["count"] == rounds * workers for k in known)
    assert rows[(UNKNOWN_CLIENT, "unknown_client", HOUR_10)]["count"] == rounds * workers

"""Key rotation: the states of keys over time (pure), and the key service over a real store
(SQLite, and PostgreSQL when configured) with time passed in, never slept."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from centrali.config import Settings
from centrali.oauth.keys import KeyEntry, KeySet, KeyStatus, key_states, next_change
from centrali.oauth.keywrap import MasterKeyError
from centrali.services import keys as svc
from centrali.services.errors import ConflictError, NotFoundError
from centrali.store.db import Database
from centrali.store.tables import SigningKeyRow

T0 = 1_800_000_000.0
KEEP = 1000.0


def entry(gen: int, created: float = T0, activates: float | None = None, **kw: object) -> KeyEntry:
    return KeyEntry(
        kid=f"k{gen}",
        alg=str(kw.get("alg", "RS256")),
        generation=gen,
        created_at=created,
        activates_at=activates,
        retired_at=kw.get("retired"),  # type: ignore[arg-type]
    )


def states(entries: list[KeyEntry], now: float) -> dict[str, tuple[str, float | None]]:
    return {
        s.entry.kid: (s.state, s.retire_after)
        for s in key_states(entries, now=now, keep_seconds=KEEP)
    }


# --- key_states: the life of a key ----------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "now", "expected"),
    [
        ([entry(1)], T0, {"k1": ("active", None)}),
        # A key stored without activation time signs at once, even if its clock ran ahead.
        ([entry(1, created=T0 + 5)], T0, {"k1": ("active", None)}),
        (
            [entry(1), entry(2, T0 + 10, activates=T0 + 100)],
            T0 + 50,
            {"k2": ("pending", None), "k1": ("active", None)},
        ),
        (
            [entry(1), entry(2, T0 + 10, activates=T0 + 100)],
            T0 + 100,
            {"k2": ("active", None), "k1": ("superseded", T0 + 100 + KEEP)},
        ),
        (
            [entry(1), entry(2, T0 + 10, activates=T0 + 100)],
            T0 + 100 + KEEP,
            {"k2": ("active", None), "k1": ("retired", T0 + 100 + KEEP)},
        ),
        (
            [entry(1), entry(2, T0 + 10)],
            T0 + 20,
            {"k2": ("active", None), "k1": ("superseded", T0 + 10 + KEEP)},
        ),
        (
            # Each older key counts from the next newer one that took over.
            [entry(1), entry(2, T0 + 10), entry(3, T0 + 500)],
            T0 + 600,
            {
                "k3": ("active", None),
                "k2": ("superseded", T0 + 500 + KEEP),
                "k1": ("superseded", T0 + 10 + KEEP),
            },
        ),
        (
            [entry(1, retired=T0 + 1), entry(2, T0 + 10)],
            T0 + 20,
            {"k2": ("active", None), "k1": ("retired", None)},
        ),
        (
            # A cancelled (retired) rotation supersedes nothing.
            [entry(1), entry(2, T0 + 10, activates=T0 + 100, retired=T0 + 20)],
            T0 + 200,
            {"k2": ("retired", None), "k1": ("active", None)},
        ),
        (
            # Algorithms rotate independently.
            [entry(1), entry(2, T0 + 10, alg="ES256"), entry(3, T0 + 20, alg="EdDSA")],
            T0 + 30,
            {"k3": ("active", None), "k2": ("active", None), "k1": ("active", None)},
        ),
        (
            [entry(1), entry(2, T0 + 10, alg="ES256"), entry(3, T0 + 20)],
            T0 + 30,
            {"k3": ("active", None), "k2": ("active", None), "k1": ("superseded", T0 + 20 + KEEP)},
        ),
    ],
    ids=[
        "one-key",
        "clock-ahead",
        "pending-before-activation",
        "activation-supersedes",
        "superseded-past-its-tokens",
        "immediate-rotation",
        "three-generations",
        "explicitly-retired",
        "cancelled-rotation",
        "algorithms-apart",
        "other-alg-between",
    ],
)
def test_key_states(
    entries: list[KeyEntry], now: float, expected: dict[str, tuple[str, float | None]]
) -> None:
    assert states(entries, now) == expected


def test_states_come_newest_first_and_published_ones_are_marked() -> None:
    found = key_states(
        [entry(1), entry(3, T0 + 5, activates=T0 + 9), entry(2, T0 + 1)],
        now=T0 + 2,
        keep_seconds=KEEP,
    )
    assert [s.entry.kid for s in found] == ["k3", "k2", "k1"]
    assert [s.published for s in found] == [True, True, True]
    assert not KeyStatus(entry(4), "retired").published


def test_next_change_is_the_first_activation_or_expiry_ahead() -> None:
    entries = [entry(1), entry(2, T0 + 10), entry(3, T0 + 20, activates=T0 + 300)]
    at = T0 + 30
    assert next_change(key_states(entries, now=at, keep_seconds=KEEP), now=at) == T0 + 300
    at = T0 + 400  # k3 signs; k2 and k1 are superseded, k1 since k2 took over
    assert next_change(key_states(entries, now=at, keep_seconds=KEEP), now=at) == T0 + 10 + KEEP
    at = T0 + 300 + KEEP  # both gone
    assert next_change(key_states(entries, now=at, keep_seconds=KEEP), now=at) is None


# --- the policy -----------------------------------------------------------------------------


def test_policy_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CENTRALI_"):
            monkeypatch.delenv(name)
    assert svc.KeyPolicy.from_settings(Settings()) == svc.KeyPolicy()
    # The default keeps a superseded key past its last token, a late worker and clock skew.
    assert svc.KeyPolicy().keep_seconds == 25200 + 10 + svc.CLOCK_SKEW_SECONDS


def test_policy_never_shows_the_master_key() -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    policy = svc.KeyPolicy.from_settings(Settings(master_key=SecretStr(secret)))
    assert policy.master_key == base64.b64decode(secret)
    assert secret not in repr(policy) and "master_key" not in repr(policy)


def test_malformed_master_key_setting_is_refused() -> None:
    with pytest.raises(MasterKeyError):
        svc.KeyPolicy.from_settings(Settings(master_key=SecretStr("c2hvcnQ=")))


# --- the service over a store ---------------------------------------------------------------

LEAD = 900.0
POLICY = svc.KeyPolicy(token_ttl=600, lead_time=int(LEAD), refresh_seconds=1.0)
MASTER = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def restore_keys(db: Database) -> Iterator[None]:
    """PostgreSQL keeps the first key between tests: put back whatever a test did to it."""
    with db.read() as session:
        kept = {
            r.kid: (r.private_pem, r.retired_at, r.activates_at)
            for r in session.scalars(select(SigningKeyRow))
        }
    yield
    with db.write() as session:
        for row in session.scalars(select(SigningKeyRow)).all():
            if row.kid not in kept:
                session.delete(row)
            else:
                row.private_pem, row.retired_at, row.activates_at = kept[row.kid]


def first_kid(db: Database) -> str:
    return svc.load_key_set(db, policy=POLICY).signing.kid


def started(db: Database) -> float:
    """A time well after the first key was made, in whole seconds (exact through the store)."""
    return float(int(svc.list_signing_keys(db, POLICY)[0].created_at.timestamp()) + 5000)


def by_kid(views: list[svc.KeyView]) -> dict[str, svc.KeyView]:
    return {v.kid: v for v in views}


@pytest.mark.usefixtures("restore_keys")
def test_rotation_publishes_first_signs_later_and_drops_the_old_key_last(db: Database) -> None:
    old = first_kid(db)
    now = started(db)
    new = svc.rotate_signing_key(db, "RS256", POLICY, now=now)
    assert new.state == "pending" and new.activates_at is not None
    assert new.activates_at.timestamp() == pytest.approx(now + LEAD)

    before = svc.load_key_set(db, policy=POLICY, now=now + 1)
    assert before.signing.kid == old
    assert set(before.verification) == {old, new.kid}
    assert {k["kid"] for k in before.jwks()["keys"]} == {old, new.kid}
    assert before.changes_at == pytest.approx(now + LEAD)

    after = svc.load_key_set(db, policy=POLICY, now=now + LEAD)
    assert after.signing.kid == new.kid
    assert set(after.verification) == {old, new.kid}
    assert after.changes_at == pytest.approx(now + LEAD + POLICY.keep_seconds)
    listed = by_kid(svc.list_signing_keys(db, POLICY, now=now + LEAD))
    assert (listed[new.kid].state, listed[old].state) == ("active", "superseded")
    retire_after = listed[old].retire_after
    assert retire_after is not None
    assert retire_after.timestamp() == pytest.approx(now + LEAD + POLICY.keep_seconds)

    gone = svc.load_key_set(db, policy=POLICY, now=now + LEAD + POLICY.keep_seconds)
    assert set(gone.verification) == {new.kid} and gone.changes_at is None


@pytest.mark.usefixtures("restore_keys")
def test_rotation_of_an_algorithm_without_a_key_signs_at_once(db: Database) -> None:
    view = svc.rotate_signing_key(db, "ES256", POLICY)
    assert (view.state, view.activates_at, view.alg) == ("active", None, "ES256")
    keys = svc.load_key_set(db, "ES256", POLICY)
    assert keys.signing.kid == view.kid and first_kid(db) in keys.verification


@pytest.mark.usefixtures("restore_keys")
def test_retire_refuses_the_signing_key_and_keys_with_live_tokens(db: Database) -> None:
    old = first_kid(db)
    now = started(db)
    new = svc.rotate_signing_key(db, "RS256", POLICY, lead_time=0, now=now)
    with pytest.raises(ConflictError, match=f"{new.kid} is the active RS256 key"):
        svc.retire_signing_keys(db, "RS256", POLICY, kid=new.kid, force=True, now=now + 1)
    with pytest.raises(ConflictError, match="--force"):
        svc.retire_signing_keys(db, "RS256", POLICY, kid=old, now=now + 1)
    with pytest.raises(NotFoundError, match="no signing key nope"):
        svc.retire_signing_keys(db, "RS256", POLICY, kid="nope", now=now + 1)
    # Nothing has outlived its tokens yet; afterwards the old key goes.
    assert svc.retire_signing_keys(db, "RS256", POLICY, now=now + 1) == []
    later = now + POLICY.keep_seconds
    assert svc.retire_signing_keys(db, "RS256", POLICY, now=later) == [old]
    assert svc.retire_signing_keys(db, "RS256", POLICY, now=later) == []
    listed = by_kid(svc.list_signing_keys(db, POLICY, now=later))
    assert (listed[old].state, listed[old].retire_after) == ("retired", None)


@pytest.mark.usefixtures("restore_keys")
def test_forced_retire_and_cancelled_rotation(db: Database) -> None:
    old = first_kid(db)
    now = started(db)
    immediate = svc.rotate_signing_key(db, "RS256", POLICY, lead_time=0, now=now)
    assert svc.retire_signing_keys(db, "RS256", POLICY, kid=old, force=True, now=now) == [old]
    assert svc.retire_signing_keys(db, "RS256", POLICY, kid=old, now=now) == [old]  # idempotent
    pending = svc.rotate_signing_key(db, "RS256", POLICY, now=now + 1)
    assert svc.retire_signing_keys(db, "RS256", POLICY, kid=pending.kid, now=now + 2) == [
        pending.kid
    ]
    keys = svc.load_key_set(db, policy=POLICY, now=now + LEAD + 10)
    assert keys.signing.kid == immediate.kid and set(keys.verification) == {immediate.kid}


@pytest.mark.usefixtures("restore_keys")
def test_active_key_of_another_algorithm_retires_only_with_force(db: Database) -> None:
    es = svc.rotate_signing_key(db, "ES256", POLICY)
    with pytest.raises(ConflictError, match="active ES256 key"):
        svc.retire_signing_keys(db, "RS256", POLICY, kid=es.kid)
    assert svc.retire_signing_keys(db, "RS256", POLICY, kid=es.kid, force=True) == [es.kid]


@pytest.mark.usefixtures("restore_keys")
def test_watcher_rebuilds_only_on_a_change_or_when_a_key_is_due(db: Database) -> None:
    old = first_kid(db)
    now = started(db)
    watcher = svc.KeyWatcher(db, "RS256", POLICY)
    assert watcher.poll(now) is not None  # the first poll loads
    assert watcher.poll(now + 1) is None
    new = svc.rotate_signing_key(db, "RS256", POLICY, now=now + 2)
    published = watcher.poll(now + 3)
    assert published is not None and published.signing.kid == old
    assert set(published.verification) == {old, new.kid}
    assert watcher.poll(now + 4) is None
    switched = watcher.poll(now + 2 + LEAD)
    assert switched is not None and switched.signing.kid == new.kid
    dropped = watcher.poll(now + 2 + LEAD + POLICY.keep_seconds)
    assert dropped is not None and set(dropped.verification) == {new.kid}
    # Marking the expired key retired changes the table, not the published set.
    svc.retire_signing_keys(db, "RS256", POLICY, now=now + 2 + LEAD + POLICY.keep_seconds)
    assert watcher.poll(now + 3 + LEAD + POLICY.keep_seconds) is None


@pytest.mark.usefixtures("restore_keys")
def test_new_keys_are_stored_encrypted_under_a_master_key(db: Database) -> None:
    policy = svc.KeyPolicy.from_settings(Settings(master_key=SecretStr(MASTER)))
    view = svc.rotate_signing_key(db, "ES256", policy)
    with db.read() as session:
        stored = session.scalars(
            select(SigningKeyRow.private_pem).where(SigningKeyRow.kid == view.kid)
        ).one()
    assert stored.startswith("enc:v1:") and "PRIVATE KEY" not in stored
    assert by_kid(svc.list_signing_keys(db, policy))[view.kid].encrypted
    keys = svc.load_key_set(db, "ES256", policy)
    assert keys.signing.kid == view.kid
    # The plaintext first key still loads beside it (the upgrade path).
    assert svc.load_key_set(db, "RS256", policy).signing.kid in keys.verification
    with pytest.raises(MasterKeyError, match="is encrypted: set CENTRALI_MASTER_KEY"):
        svc.load_key_set(db, "ES256", POLICY)
    wrong = svc.KeyPolicy(master_key=bytes(32))
    with pytest.raises(MasterKeyError, match="does not decrypt"):
        svc.ensure_signing_key(db, "RS256", wrong)


@pytest.mark.usefixtures("restore_keys")
def test_encrypt_rewrites_every_plaintext_key_in_place(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    policy = svc.KeyPolicy.from_settings(Settings(master_key=SecretStr(MASTER)))
    old = first_kid(db)
    caplog.set_level(logging.WARNING, logger="centrali.keys")
    assert svc.load_key_set(db, policy=policy).signing.kid == old  # plaintext still loads
    assert [r.getMessage() for r in caplog.records] == [
        "1 signing key(s) stored unencrypted: run `centrali keys encrypt`"
    ]
    es = svc.rotate_signing_key(db, "ES256", POLICY)
    with pytest.raises(MasterKeyError, match="set CENTRALI_MASTER_KEY"):
        svc.encrypt_signing_keys(db, POLICY)
    assert sorted(svc.encrypt_signing_keys(db, policy)) == sorted([old, es.kid])
    assert svc.encrypt_signing_keys(db, policy) == []
    with db.read() as session:
        stored = session.scalars(select(SigningKeyRow.private_pem)).all()
    assert all(s.startswith("enc:v1:") and "PRIVATE KEY" not in s for s in stored)
    caplog.clear()
    assert svc.load_key_set(db, policy=policy).signing.kid == old
    svc.ensure_signing_key(db, "RS256", policy)  # the master key opens them all
    assert caplog.records == []


def test_first_start_with_a_master_key_stores_the_key_encrypted(tmp_path: Path) -> None:
    from centrali.web.app import prepare_store

    db = Database(f"sqlite:///{tmp_path}/fresh.db")
    try:
        policy = svc.KeyPolicy.from_settings(Settings(master_key=SecretStr(MASTER)))
        prepare_store(db, "EdDSA", policy)
        prepare_store(db, "EdDSA", policy)  # idempotent
        with db.engine.connect() as conn:
            stored = conn.execute(text("SELECT private_pem FROM signing_keys")).scalars().all()
        assert len(stored) == 1 and stored[0].startswith("enc:v1:")
        with pytest.raises(MasterKeyError, match="is encrypted"):
            prepare_store(db, "EdDSA", POLICY)
    finally:
        db.dispose()


def test_key_set_carries_its_change_time() -> None:
    from centrali.oauth.keys import generate_private_key_pem, load_signing_key

    key = load_signing_key(generate_private_key_pem("EdDSA"), "EdDSA")
    assert KeySet.of(key).changes_at is None
    assert KeySet.of(key, changes_at=T0).changes_at == T0


def test_superseded_keys_outlive_the_longest_token_they_signed(tmp_path: Path) -> None:
    """User access tokens may live longer than service-account ones: a superseded key stays
    until the longer of the two has expired."""
    from centrali.services.keys import KeyPolicy

    longer_for_users = Settings(data_dir=tmp_path, token_ttl=600, user_token_ttl=3600)
    assert KeyPolicy.from_settings(longer_for_users).token_ttl == 3600
    longer_for_accounts = Settings(data_dir=tmp_path, token_ttl=7200, user_token_ttl=900)
    assert KeyPolicy.from_settings(longer_for_accounts).token_ttl == 7200

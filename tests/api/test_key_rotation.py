"""Key rotation in a running app: the background reread publishes a new key before it signs,
switches signing at its activation and drops the old key once its tokens have expired; the
app's clock is driven forward instead of sleeping."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from centrali.config import Settings
from centrali.oauth.keywrap import MasterKeyError
from centrali.services import keys as svc
from centrali.services.permissions import ADMIN_GROUP
from centrali.services.users import create_user, issue_user_token
from centrali.store.db import Database
from centrali.store.tables import SigningKeyRow
from centrali.web.app import create_app
from tests.conftest import ISSUER
from tests.factories import Factory, bearer

TTL = 600
LEAD = 100
STRUCTURES = "/workspace/acme-corp/api/v1/structures"
MASTER = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Workers reread the keys every 50 ms here (10 s by default)."""
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        issuer=ISSUER,
        token_ttl=TTL,
        key_refresh_seconds=0.05,
    )


class FakeClock:
    """The app's clock (token checks and key activation), moved by the test."""

    def __init__(self) -> None:
        self.at = float(int(time.time()))  # whole seconds: exact through the store's datetimes

    def now(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += max(0.0, seconds)


@pytest.fixture(autouse=True)
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


@pytest.fixture
def clock(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(runtime_of(client), "clock", fake)
    return fake


def runtime_of(client: TestClient) -> Any:
    return client.app.app.state.runtime  # type: ignore[attr-defined]


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the keys were not reread in time"
        time.sleep(0.02)


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def published(client: TestClient) -> set[str]:
    r = client.get("/oidc/jwks")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=300"
    return {k["kid"] for k in r.json()["keys"]}


def test_rotated_key_is_published_before_it_signs_and_the_old_one_outlives_its_tokens(
    factory: Factory, client: TestClient, clock: FakeClock, settings: Settings
) -> None:
    factory.workspace()
    account = factory.service_account(factory.admin())
    token_a = factory.sa_token(account)
    old = kid_of(token_a)
    assert published(client) == {old}

    policy = svc.KeyPolicy.from_settings(settings)
    new = svc.rotate_signing_key(factory.db, "RS256", policy, lead_time=LEAD, now=clock.at)
    assert new.state == "pending"
    # Published at the next reread, without a restart; the old key still signs.
    wait_until(lambda: published(client) == {old, new.kid})
    token_b = factory.sa_token(account)
    assert kid_of(token_b) == old

    # From its activation on the new key signs; tokens of the old key keep working.
    clock.at += LEAD
    wait_until(lambda: kid_of(factory.sa_token(account)) == new.kid)
    assert published(client) == {old, new.kid}
    for token in (token_a, token_b):
        assert client.get(STRUCTURES, headers=bearer(token)).status_code == 200

    # Its tokens expire while the old key is still published...
    clock.at = jwt.decode(token_b, options={"verify_signature": False})["exp"] + 1
    r = client.get(STRUCTURES, headers=bearer(token_b))
    assert (r.status_code, r.json()["error"]) == (401, "token_expired")
    assert old in published(client)

    # ...and once none can be alive the key goes: its kid is unknown.
    clock.at = new.activates_at.timestamp() + policy.keep_seconds  # type: ignore[union-attr]
    wait_until(lambda: published(client) == {new.kid})
    r = client.get(STRUCTURES, headers=bearer(token_b))
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    listed = {v.kid: v.state for v in svc.list_signing_keys(factory.db, policy, now=clock.at)}
    assert listed == {new.kid: "active", old: "retired"}


def test_retired_key_stops_verifying_without_a_restart(
    factory: Factory, client: TestClient, clock: FakeClock, settings: Settings
) -> None:
    factory.workspace()
    account = factory.service_account(factory.admin())
    token = factory.sa_token(account)
    policy = svc.KeyPolicy.from_settings(settings)
    new = svc.rotate_signing_key(factory.db, "RS256", policy, lead_time=0, now=clock.at)
    wait_until(lambda: kid_of(factory.sa_token(account)) == new.kid)
    assert client.get(STRUCTURES, headers=bearer(token)).status_code == 200

    svc.retire_signing_keys(factory.db, "RS256", policy, kid=kid_of(token), force=True)
    wait_until(lambda: published(client) == {new.kid})
    assert client.get(STRUCTURES, headers=bearer(token)).status_code == 401


def test_reread_failures_are_logged_and_retried(
    factory: Factory,
    client: TestClient,
    clock: FakeClock,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = 3
    real_poll = svc.KeyWatcher.poll

    def flaky_poll(self: svc.KeyWatcher, now: float) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        return real_poll(self, now)

    caplog.set_level(logging.WARNING, logger="centrali.keys")
    monkeypatch.setattr(svc.KeyWatcher, "poll", flaky_poll)
    factory.workspace()
    account = factory.service_account(factory.admin())
    new = svc.rotate_signing_key(factory.db, "RS256", svc.KeyPolicy(), lead_time=0)
    wait_until(lambda: new.kid in published(client))
    assert factory.sa_token(account)  # the worker kept serving throughout
    lines = [r.getMessage() for r in caplog.records if r.name == "centrali.keys"]
    assert len(lines) == 3 and all("signing keys not reread" in line for line in lines)
    assert all("server closed the connection" in line and "\n" not in line for line in lines)


def test_app_with_a_master_key_signs_with_encrypted_keys(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    with_key = settings.model_copy(update={"master_key": SecretStr(MASTER)})
    policy = svc.KeyPolicy.from_settings(with_key)
    assert svc.encrypt_signing_keys(db, policy)
    with db.read() as session:
        assert all(
            "PRIVATE KEY" not in r.private_pem for r in session.scalars(select(SigningKeyRow))
        )

    with TestClient(create_app(with_key, db=db), base_url=ISSUER) as client:
        factory = Factory(client=client, db=db, settings=with_key)
        factory.workspace()
        admin = create_user(
            db, email="admin@acme-corp.test", workspace_slug="acme-corp", groups=[ADMIN_GROUP]
        )
        admin_token = issue_user_token(
            admin,
            keys=svc.load_key_set(db, policy=policy),
            issuer=with_key.issuer,
            audience=with_key.audience,
            ttl=TTL,
            now=time.time(),
        ).token
        account = factory.service_account(admin_token)
        token = factory.sa_token(account)
        assert kid_of(token) in published(client)
        assert client.get(STRUCTURES, headers=bearer(token)).status_code == 200

    for master_key, message in [
        ("", "is encrypted"),
        (base64.b64encode(bytes(32)).decode(), "does not decrypt"),
    ]:
        bad = settings.model_copy(update={"master_key": SecretStr(master_key)})
        with pytest.raises(MasterKeyError, match=message), TestClient(create_app(bad, db=db)):
            pass

"""Migration 0006 (several secrets per service account) on a store holding accounts made
before it, on SQLite and PostgreSQL: an account's one secret keeps working after the upgrade,
and after a downgrade to 0005 its ``secret_hash`` is back and works again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import jwt
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, bindparam, text

from centrali.config import Settings
from centrali.oauth.credentials import hash_secret
from centrali.services.permissions import BUILTIN_GROUPS
from centrali.store.db import Database
from centrali.store.migrate import alembic_config, current_revision, head_revision, upgrade
from centrali.store.tables import UtcDateTime
from centrali.web.app import create_app
from tests.conftest import ISSUER
from tests.factories import Factory, bearer
from tests.unit.store import test_migrations

# The same empty store per backend as the other migration tests (a fixture, used by name).
empty_db = test_migrations.empty_db

WS = "acme-corp"
BASE = f"/workspace/{WS}/api/v1/service-accounts"
T = datetime(2025, 1, 1, tzinfo=UTC)
ACTIVE, REVOKED, DELETED = 1, 2, 3
CLIENT_IDS = {ACTIVE: "ci_" + "a" * 20, REVOKED: "ci_" + "b" * 20, DELETED: "ci_" + "c" * 20}
SECRETS = {ACTIVE: "sk_" + "0123456789abcdef" * 4, REVOKED: "sk_" + "fedcba9876543210" * 4}
STATUSES = {ACTIVE: "active", REVOKED: "revoked", DELETED: "deleted"}


def seed_at_0005(engine: Engine) -> None:
    """A workspace with its built-in groups and three accounts, as 0005 stored them: an active
    and a revoked one with a secret hash, a deleted one without."""
    timed = {"t": T}

    def run(sql: str, **params: object) -> None:
        conn.execute(text(sql).bindparams(bindparam("t", type_=UtcDateTime())), {**timed, **params})

    with engine.begin() as conn:
        run(
            "INSERT INTO workspaces (id, slug, name, created_at, service_account_count)"
            " VALUES (1, :slug, :slug, :t, 2)",
            slug=WS,
        )
        group_ids = {}
        for gid, group in enumerate(BUILTIN_GROUPS, start=1):
            group_ids[group.name] = gid
            run(
                "INSERT INTO groups (id, workspace_id, name, is_default, created_at)"
                " VALUES (:id, 1, :name, :default, :t)",
                id=gid,
                name=group.name,
                default=group.is_default,
            )
            for permission in group.permissions:
                conn.execute(
                    text("INSERT INTO group_permissions (group_id, permission) VALUES (:g, :p)"),
                    {"g": gid, "p": permission},
                )
        for aid, status in STATUSES.items():
            secret = SECRETS.get(aid)
            run(
                "INSERT INTO service_accounts (id, workspace_id, client_id, secret_hash, name,"
                " grant_types, scope, status, tokens_valid_after, created_at, created_by,"
                " updated_at, group_names) VALUES (:id, 1, :cid, :hash, :name, :grants,"
                " 'openid', :status, 0, :t, 'admin-sub', :t, :groups)",
                id=aid,
                cid=CLIENT_IDS[aid],
                hash=hash_secret(secret) if secret else None,
                name=f"Made before 0006 ({status})",
                grants='["client_credentials"]',
                status=status,
                groups='["api-users"]',
            )
            conn.execute(
                text(
                    "INSERT INTO service_account_groups (service_account_id, group_id)"
                    " VALUES (:a, :g)"
                ),
                {"a": aid, "g": group_ids["api-users"]},
            )


def downgrade(engine: Engine, revision: str) -> None:
    """``alembic downgrade`` on ``engine``, the way store.migrate runs ``upgrade``."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


@contextmanager
def serving(url: str, data_dir: Path) -> Iterator[Factory]:
    """The app on the store at ``url`` (its start migrates to head), in-process."""
    settings = Settings(database_url=url, data_dir=data_dir, issuer=ISSUER)
    db = Database(url)
    try:
        with TestClient(create_app(settings, db=db), base_url=ISSUER) as client:
            yield Factory(client=client, db=db, settings=settings)
    finally:
        db.dispose()


def token_status(factory: Factory, aid: int, secret: str) -> int:
    r = factory.token_response(CLIENT_IDS[aid], secret)
    if r.status_code != 200:
        assert r.json()["error"] == "invalid_client", r.text
    return int(r.status_code)


def assert_token_for_active(factory: Factory) -> None:
    r = factory.token_response(CLIENT_IDS[ACTIVE], SECRETS[ACTIVE])
    assert r.status_code == 200, r.text
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == CLIENT_IDS[ACTIVE]
    assert claims["workspace"] == WS
    assert claims["groups"] == ["api-users"]


def stored_hashes(engine: Engine) -> dict[int, str | None]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, secret_hash FROM service_accounts ORDER BY id"))
        return {int(aid): value for aid, value in rows}


def test_head_is_past_0005() -> None:
    """The migration under test exists."""
    assert head_revision() not in (None, "0005")


def test_account_made_before_0006_keeps_its_secret_after_the_upgrade(
    empty_db: Database, tmp_path: Path
) -> None:
    upgrade(empty_db.engine, "0005")
    seed_at_0005(empty_db.engine)
    upgrade(empty_db.engine)
    assert current_revision(empty_db.engine) == head_revision() != "0005"

    with serving(empty_db.url, tmp_path) as factory:
        assert_token_for_active(factory)
        assert token_status(factory, ACTIVE, SECRETS[REVOKED]) == 401
        assert token_status(factory, ACTIVE, "sk_" + "0" * 64) == 401
        assert token_status(factory, REVOKED, SECRETS[REVOKED]) == 401
        assert token_status(factory, DELETED, SECRETS[ACTIVE]) == 401

        admin = bearer(factory.admin(WS))
        r = factory.client.get(f"{BASE}/{ACTIVE}/secrets", headers=admin)
        assert r.status_code == 200, r.text
        account = factory.client.get(f"{BASE}/{ACTIVE}", headers=admin).json()
        # The secret moved into its new table, and nothing else the account holds was lost.
        assert (len(r.json()["data"]), account["groups"]) == (1, ["api-users"])
        [secret] = r.json()["data"]
        # Only the hash was kept before 0006: no hint to show.
        assert secret["hint"] is None
        assert secret["expiresAt"] is None
        assert type(secret["id"]) is int
        assert "sha256$" not in r.text
        assert account["credentialsExpireAt"] is None
        # The migrated secret is the account's last live one.
        r = factory.client.delete(f"{BASE}/{ACTIVE}/secrets/{secret['id']}", headers=admin)
        assert r.status_code == 409, r.text
        # A second secret beside it: both work.
        r = factory.client.post(f"{BASE}/{ACTIVE}/secrets", json={}, headers=admin)
        assert r.status_code == 201, r.text
        assert token_status(factory, ACTIVE, r.json()["clientSecret"]) == 200
        assert_token_for_active(factory)

        # The revoked account's secret was migrated too: it works once activated.
        r = factory.client.post(f"{BASE}/{REVOKED}/activate", headers=admin)
        assert r.status_code == 200, r.text
        assert token_status(factory, REVOKED, SECRETS[REVOKED]) == 200


def test_downgrade_to_0005_puts_each_secret_hash_back(empty_db: Database, tmp_path: Path) -> None:
    engine = empty_db.engine
    upgrade(engine, "0005")
    seed_at_0005(engine)
    upgrade(engine)
    with serving(empty_db.url, tmp_path) as factory:
        assert_token_for_active(factory)

    downgrade(engine, "0005")
    assert current_revision(engine) == "0005"
    hashes = stored_hashes(engine)
    assert hashes == {
        ACTIVE: hash_secret(SECRETS[ACTIVE]),
        REVOKED: hash_secret(SECRETS[REVOKED]),
        DELETED: None,
    }
    assert hashes[ACTIVE] == hash_secret(SECRETS[ACTIVE])

    # And up again (the app migrates on start): the same secret still works.
    with serving(empty_db.url, tmp_path) as factory:
        assert current_revision(engine) == head_revision()
        assert_token_for_active(factory)
        assert token_status(factory, REVOKED, SECRETS[REVOKED]) == 401

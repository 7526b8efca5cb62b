"""Migration 0007 (keys and federated credentials, used assertion ids) on a store holding
accounts made before it, on SQLite and PostgreSQL: their secrets keep working, they get empty
key and federated copies, and a downgrade to 0006 drops what 0007 added and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import Engine, inspect, text

from centrali.oauth.keys import thumbprint
from centrali.store.db import Database
from centrali.store.migrate import current_revision, head_revision, upgrade
from tests.conftest import ISSUER
from tests.factories import bearer
from tests.unit.store import test_migration_0006 as m6
from tests.unit.store import test_migrations

# The same empty store per backend as the other migration tests (a fixture, used by name).
empty_db = test_migrations.empty_db

NEW_TABLES = {
    "service_account_keys",
    "service_account_federated_credentials",
    "client_assertion_jtis",
}
NEW_COLUMNS = {"public_keys", "federated"}


def tables_and_columns(engine: Engine) -> tuple[set[str], set[str]]:
    found = inspect(engine)
    names = set(found.get_table_names())
    columns = {c["name"] for c in found.get_columns("service_accounts")}
    return names, columns


def copies(engine: Engine) -> dict[int, tuple[object, object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, public_keys, federated FROM service_accounts ORDER BY id")
        )
        return {
            int(aid): tuple(json.loads(v) if isinstance(v, str) else v for v in (keys, fed))
            for aid, keys, fed in rows
        }


def test_head_is_past_0006() -> None:
    assert head_revision() not in (None, "0005", "0006")


def test_upgrade_gives_every_account_empty_copies_and_keeps_secrets(
    empty_db: Database, tmp_path: Path
) -> None:
    engine = empty_db.engine
    upgrade(engine, "0005")
    m6.seed_at_0005(engine)
    upgrade(engine, "0006")
    names, columns = tables_and_columns(engine)
    assert not (NEW_TABLES & names) and not (NEW_COLUMNS & columns)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    names, columns = tables_and_columns(engine)
    assert NEW_TABLES <= names and NEW_COLUMNS <= columns
    assert copies(engine) == {aid: ([], []) for aid in m6.STATUSES}

    with m6.serving(empty_db.url, tmp_path) as factory:
        m6.assert_token_for_active(factory)
        admin = bearer(factory.admin(m6.WS))
        jwk = OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate().public_key(), as_dict=True)
        r = factory.client.post(f"{m6.BASE}/{m6.ACTIVE}/keys", json={"jwk": jwk}, headers=admin)
        assert r.status_code == 201, r.text
        body = {"name": "ci", "issuer": "https://issuer.example", "subject": "s"}
        r = factory.client.post(
            f"{m6.BASE}/{m6.ACTIVE}/federated-credentials", json=body, headers=admin
        )
        assert r.status_code == 201, r.text
    keys, federated = copies(engine)[m6.ACTIVE]
    assert isinstance(keys, list) and isinstance(federated, list)
    assert [k[1] for k in keys] == [thumbprint(jwk)]
    assert [f[1:4] for f in federated] == [["https://issuer.example", "s", ISSUER]]


def test_downgrade_to_0006_drops_keys_and_federated_and_keeps_secrets(
    empty_db: Database, tmp_path: Path
) -> None:
    engine = empty_db.engine
    upgrade(engine, "0005")
    m6.seed_at_0005(engine)
    upgrade(engine)
    with m6.serving(empty_db.url, tmp_path) as factory:
        admin = bearer(factory.admin(m6.WS))
        body = {"name": "ci", "issuer": "https://issuer.example", "subject": "s"}
        r = factory.client.post(
            f"{m6.BASE}/{m6.ACTIVE}/federated-credentials", json=body, headers=admin
        )
        assert r.status_code == 201, r.text

    m6.downgrade(engine, "0006")
    assert current_revision(engine) == "0006"
    names, columns = tables_and_columns(engine)
    assert not (NEW_TABLES & names) and not (NEW_COLUMNS & columns)
    # The accounts, their groups and secrets are all still there (no cascade).
    with engine.connect() as conn:
        secrets = conn.execute(text("SELECT count(*) FROM service_account_secrets")).scalar_one()
        groups = conn.execute(text("SELECT count(*) FROM service_account_groups")).scalar_one()
        accounts = conn.execute(text("SELECT count(*) FROM service_accounts")).scalar_one()
    assert (secrets, groups, accounts) == (2, 3, 3)

    # And up again (the app migrates on start): the secret still works.
    with m6.serving(empty_db.url, tmp_path) as factory:
        assert current_revision(engine) == head_revision()
        m6.assert_token_for_active(factory)
    assert copies(engine)[m6.ACTIVE] == ([], [])

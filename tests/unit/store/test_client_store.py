"""The token endpoint's lookup: one statement on a raw connection that survives a reconnect."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import text

from centrali.oauth.credentials import SECRET_SLOTS
from centrali.oauth.ports import FederatedCredential
from centrali.services import service_accounts as accounts
from centrali.services.context import Actor
from centrali.services.workspaces import create_workspace
from centrali.store.client_store import SqlClientStore, StoreUnavailableError
from centrali.store.db import Database


def test_lookup_reads_the_account(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    view = accounts.create(
        db, workspace_slug="acme-corp", actor=Actor("u"), name="n", groups=["developers"]
    )
    store = SqlClientStore(db.autocommit_engine)
    record = store.find_clients([view.client_id])[0]
    assert record is not None
    assert (record.workspace, record.groups, record.active) == ("acme-corp", ("developers",), True)
    assert record.grant_types == ("client_credentials",) and record.scopes == ("openid",)
    # One live secret, padded with dead entries to a fixed length (every row costs the same).
    assert [s.id for s in record.secrets if s.live(0)] == [view.secret_id]
    assert len(record.secrets) == SECRET_SLOTS
    assert store.find_clients(["ci_unknown"])[0] is None
    accounts.revoke(db, workspace_slug="acme-corp", account_id=view.id, actor=Actor("u"))
    revoked = store.find_clients([view.client_id])[0]
    assert revoked is not None and not revoked.active and revoked.tokens_cutoff_ms > 0
    store.close()


def test_many_ids_in_one_statement_answer_in_order(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    create_workspace(db, slug="globex")
    actor = Actor("u")
    a = accounts.create(db, workspace_slug="acme-corp", actor=actor, name="a")
    b = accounts.create(db, workspace_slug="globex", actor=actor, name="b", groups=["developers"])
    accounts.revoke(db, workspace_slug="globex", account_id=b.id, actor=actor)
    store = SqlClientStore(db.autocommit_engine)
    odd = "ci_'; DROP TABLE service_accounts; --"
    asked = [b.client_id, "ci_unknown", a.client_id, odd, b.client_id]
    answers = store.find_clients(asked)
    assert [r.client_id if r else None for r in answers] == [
        b.client_id,
        None,
        a.client_id,
        None,
        b.client_id,
    ]
    first_b, _, first_a, _, again_b = answers
    assert first_a is not None and (first_a.workspace, first_a.active) == ("acme-corp", True)
    assert first_b is not None and (first_b.workspace, first_b.groups) == (
        "globex",
        ("developers",),
    )
    assert not first_b.active and first_b == again_b
    assert store.find_clients([]) == []
    assert store.find_clients([a.client_id])[0] == first_a
    store.close()


def test_a_killed_connection_is_replaced(db: Database) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (a server-side disconnect)")
    store = SqlClientStore(db.autocommit_engine)
    assert store.find_clients(["ci_x"])[0] is None
    pid = store._connection().driver_connection.info.backend_pid
    with db.engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert store.find_clients(["ci_x"])[0] is None  # reconnected once, transparently
    store.close()


def test_an_unreachable_store_raises_store_unavailable() -> None:
    db = Database("postgresql://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    store = SqlClientStore(db.autocommit_engine)
    with pytest.raises(StoreUnavailableError):
        store.find_clients(["ci_x"])[0]
    db.dispose()


def test_lookup_reads_the_live_keys_and_federated_credentials(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    actor = Actor("u")
    view = accounts.create(db, workspace_slug="acme-corp", actor=actor, name="n")
    store = SqlClientStore(db.autocommit_engine)
    fresh = store.find_clients([view.client_id])[0]
    assert fresh is not None and (fresh.keys, fresh.federated) == ((), ())

    jwk = OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate().public_key(), as_dict=True)
    expires = (actor.at + timedelta(days=1)).isoformat()
    key = accounts.add_key(
        db,
        workspace_slug="acme-corp",
        account_id=view.id,
        actor=actor,
        jwk=jwk,
        expires_at=expires,
    )
    workload = accounts.add_federated(
        db,
        workspace_slug="acme-corp",
        account_id=view.id,
        actor=actor,
        name="ci",
        issuer="https://issuer.example",
        subject="repo:x",
        default_audience="https://centrali.example",
    )
    record = store.find_clients([view.client_id])[0]
    assert record is not None
    [stored_key] = record.keys
    assert (stored_key.kid, stored_key.alg) == (key.kid, "EdDSA")
    assert dict(stored_key.jwk) == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": jwk["x"],
        "kid": key.kid,
        "alg": "EdDSA",
        "use": "sig",
    }
    assert stored_key.expires_at_ms == int((actor.at + timedelta(days=1)).timestamp() * 1000)
    assert stored_key.live(actor.at.timestamp()) and type(stored_key.id) is int
    assert record.federated == (
        FederatedCredential(
            workload.id, "https://issuer.example", "repo:x", "https://centrali.example", None
        ),
    )
    # Deleting the account empties both copies.
    accounts.delete(db, workspace_slug="acme-corp", account_id=view.id, actor=actor)
    gone = store.find_clients([view.client_id])[0]
    assert gone is not None and (gone.keys, gone.federated, gone.active) == ((), (), False)
    store.close()

"""The workspace API's batched reads (repositories.service_accounts_grants, read_records):
many requests' rows in one statement, each answer its own."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from centrali.oauth.introspection import Revocation
from centrali.services import service_accounts as accounts
from centrali.services import structures
from centrali.services.context import Actor
from centrali.services.workspaces import create_workspace
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.revocation import add_revoked_token


def test_many_tokens_in_one_statement_answer_in_order(db: Database) -> None:
    create_workspace(db, slug="acme-corp")
    create_workspace(db, slug="globex")
    actor = Actor("u")
    reader = accounts.create(db, workspace_slug="acme-corp", actor=actor, name="r")
    dev = accounts.create(
        db, workspace_slug="globex", actor=actor, name="d", groups=["developers", "api-users"]
    )
    bare = accounts.create(db, workspace_slug="acme-corp", actor=actor, name="b", groups=[])
    accounts.revoke(db, workspace_slug="globex", account_id=dev.id, actor=actor)
    with db.write() as session:
        revocation = Revocation("jti-dropped", reader.client_id, "acme-corp", int(time.time()) + 60)
        add_revoked_token(session, revocation=revocation, now=datetime.now(UTC))

    pairs = [
        (dev.client_id, "jti-1"),
        (reader.client_id, "jti-dropped"),
        ("ci_unknown", "jti-2"),
        (reader.client_id, ""),
        (bare.client_id, "jti-3"),
        (dev.client_id, "jti-1"),
    ]
    with db.autocommit_engine.connect() as conn:
        answers = repo.service_accounts_grants(conn, pairs)
        single = repo.service_account_grants(conn, client_id=reader.client_id, jti=None)
        assert repo.service_accounts_grants(conn, []) == []
    dev1, dropped, unknown, plain, bare_answer, dev_again = answers
    assert unknown is None
    assert dev1 is not None and dev1 == dev_again
    assert (dev1[0].status, dev1[0].workspace, dev1[0].token_revoked) == (
        "revoked",
        "globex",
        False,
    )
    assert dev1[0].tokens_cutoff_ms > 0
    assert set(dev1[1]) == {"developers", "api-users"}
    assert dropped is not None and dropped[0].token_revoked
    assert plain is not None and not plain[0].token_revoked and plain[0].workspace == "acme-corp"
    assert plain[1] == dropped[1] and "records:read" in plain[1]["api-users"]
    assert bare_answer is not None and bare_answer[1] == {}
    assert single == plain


def test_many_records_in_one_statement_answer_in_order(db: Database) -> None:
    actor = Actor("u")
    made = {}
    for slug in ("acme-corp", "globex"):
        create_workspace(db, slug=slug)
        structures.create_structure(
            db,
            workspace_slug=slug,
            actor=actor,
            slug="notes",
            name="Notes",
            description=None,
            fields=[{"name": "text", "type": "string", "required": True}],
        )
        made[slug] = structures.create_record(
            db, workspace_slug=slug, actor=actor, record_slug="notes", data={"text": slug}
        )
    acme, globex = made["acme-corp"], made["globex"]
    keys = [
        ("globex", globex.id),
        ("acme-corp", globex.id),  # another workspace's record: not found here
        ("acme-corp", acme.id),
        ("nowhere", acme.id),
        ("acme-corp", 2**63 - 1),
        ("globex", globex.id),
    ]
    with db.autocommit_engine.connect() as conn:
        rows = repo.read_records(conn, keys)
        assert repo.read_records(conn, []) == []
    assert [row is None for row in rows] == [False, True, False, True, True, False]
    assert structures.record_view(rows[0]) == globex == structures.record_view(rows[5])
    assert structures.record_view(rows[2]) == acme
    assert acme.data == {"text": "acme-corp"}

"""Migrations on a store that already holds data (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from centrali.store.db import Database, normalize_url
from centrali.store.migrate import current_revision, head_revision, upgrade
from tests.conftest import BACKENDS, PG_URL


@pytest.fixture(params=BACKENDS)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty store of its own (a private schema on PostgreSQL)."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path}/m.db")
        yield db
        db.dispose()
        return
    schema = f"m_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    db = Database(f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
    try:
        yield db
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


T = "2025-01-01T00:00:00+00:00"
GRANTS = '["client_credentials"]'


def test_0003_backfills_group_names_and_counts(empty_db: Database) -> None:
    db = empty_db
    try:
        upgrade(db.engine, "0002")  # a store made before 0003
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO workspaces (id, slug, name, created_at) VALUES (1, 'w', 'w', :t)"
                ),
                {"t": "2025-01-01T00:00:00+00:00"},
            )
            for gid, name in ((1, "b-group"), (2, "a-group")):
                conn.execute(
                    text(
                        "INSERT INTO groups (id, workspace_id, name, is_default, created_at) "
                        "VALUES (:id, 1, :n, false, :t)"
                    ),
                    {"id": gid, "n": name, "t": "2025-01-01T00:00:00+00:00"},
                )
            for aid, status in ((1, "active"), (2, "deleted"), (3, "revoked")):
                conn.execute(
                    text(
                        "INSERT INTO service_accounts (id, workspace_id, client_id, secret_hash,"
                        " name, grant_types, scope, status, tokens_valid_after, created_at,"
                        " created_by, updated_at) VALUES (:id, 1, :cid, NULL, 'n', :grants,"
                        " 'openid', :st, 0, :t, 'x', :t)"
                    ),
                    {"id": aid, "cid": f"ci_{aid}", "st": status, "t": T, "grants": GRANTS},
                )
            conn.execute(
                text(
                    "INSERT INTO service_account_groups (service_account_id, group_id) "
                    "VALUES (1, 1), (1, 2)"
                )
            )
        upgrade(db.engine)
        assert current_revision(db.engine) == head_revision()
        with db.engine.connect() as conn:
            names = conn.execute(
                text("SELECT group_names FROM service_accounts WHERE id = 1")
            ).scalar_one()
            count = conn.execute(
                text("SELECT service_account_count FROM workspaces WHERE id = 1")
            ).scalar_one()
        if isinstance(names, str):
            names = json.loads(names)
        assert names == ["a-group", "b-group"]
        assert count == 2  # the deleted one does not count
    finally:
        db.dispose()


def test_migrations_build_exactly_the_models(empty_db: Database) -> None:
    """The schema Alembic builds is the one the ORM declares: no table, column or index
    missing or extra (an ``alembic check`` as a test)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from centrali.store.tables import Base

    upgrade(empty_db.engine)
    assert current_revision(empty_db.engine) == head_revision()
    with empty_db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []

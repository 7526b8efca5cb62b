"""Shared fixtures: a fresh store per test (SQLite, and PostgreSQL when configured),
the app in-process, and factories for workspaces, users and service accounts."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from centrali.config import Settings
from centrali.store.db import Database, normalize_url
from centrali.store.tables import Base
from centrali.web.app import create_app, prepare_store
from tests.factories import Factory

PG_URL = os.environ.get("CENTRALI_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])
ISSUER = "http://testserver"
# Kept between tests: the key (RSA generation is slow) and migration bookkeeping.
_KEEP = {"signing_keys", "alembic_version", "server_settings"}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with a signing key, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "centrali.db"
    db = Database(f"sqlite:///{path}")
    prepare_store(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A private schema in the test PostgreSQL database, migrated once per session."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    db = Database(url)
    prepare_store(db)
    db.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "centrali.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_schema_url")
    db = Database(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name not in _KEEP]
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        # Keys added by a test (another algorithm, a rotation) go; the first key stays.
        conn.execute(
            text(
                "DELETE FROM signing_keys WHERE generation > "
                "(SELECT min(generation) FROM signing_keys)"
            )
        )
    db.dispose()
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path, issuer=ISSUER)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db), base_url=ISSUER) as test_client:
        yield test_client


@pytest.fixture
def factory(client: TestClient, db: Database, settings: Settings) -> Factory:
    return Factory(client=client, db=db, settings=settings)

"""Alembic, driven from code: ``serve`` and ``centrali db upgrade`` bring the schema to head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction (a no-op when already there)."""
    if revision == "head" and current_revision(engine) == head_revision():
        return
    config = alembic_config()
    # On SQLite take the write lock up front (see store.db): two servers starting together
    # on a fresh file would otherwise fail the second one's lock upgrade at once.
    with engine.execution_options(sqlite_immediate=True).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)

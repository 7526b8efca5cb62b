"""Alembic, driven from code: ``serve`` and ``centrali db upgrade`` bring the schema to head.

Alembic and SQLAlchemy are imported by the functions that use them, not with this module:
commands that only read (``centrali user token``) check the schema with ``schema_problem`` or
``known_revisions``, which read the revision chain from the migration files' ``revision`` /
``down_revision`` lines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_REVISION_LINE = re.compile(r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$""", re.M)


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> tuple[list[str], str | None]:
    """(every revision, the head) from the migration files, without importing Alembic or the
    migrations; the head is None when the chain does not have exactly one."""
    revisions: list[str] = []
    parents: set[str] = set()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        revision = found.get("revision", "").strip("\"'")
        if not revision:
            continue
        revisions.append(revision)
        parents.update(re.findall(r"""["']([^"']+)["']""", found.get("down_revision", "")))
    heads = [r for r in revisions if r not in parents]
    return revisions, heads[0] if len(heads) == 1 else None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def stored_revision(engine: Engine) -> str | None:
    """The store's revision by one query (None: never migrated)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError, ProgrammingError

    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError):  # no such table: an empty store
            return None


def schema_problem(engine: Engine) -> str | None:
    """Why the store's schema is not the one this version reads, in a few words, or None."""
    revisions, head = known_revisions()
    stored = stored_revision(engine)
    if stored is None:
        return "the store has no schema yet (run `centrali db upgrade` or `centrali serve`)"
    if head is not None and stored == head:
        return None
    if stored in revisions:
        return (
            f"the store's schema is at {stored}, this centrali reads {head}: "
            "run `centrali db upgrade`"
        )
    return f"the store's schema {stored} is unknown to this centrali (a newer version's?)"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction (a no-op when already there)."""
    from alembic import command

    if revision == "head" and current_revision(engine) == head_revision():
        return
    config = alembic_config()
    # On SQLite take the write lock up front (see store.db): two servers starting together
    # on a fresh file would otherwise fail the second one's lock upgrade at once.
    with engine.execution_options(sqlite_immediate=True).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)

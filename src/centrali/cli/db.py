"""``centrali db``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from centrali.cli.base import checked_database_url, with_settings

if TYPE_CHECKING:
    from centrali.config import Settings


@click.group()
def db() -> None:
    """Manage the store."""


@db.command()
@with_settings
def upgrade(settings: Settings) -> None:
    """Migrate the store to the latest schema."""
    from centrali.store.db import Database
    from centrali.store.migrate import current_revision
    from centrali.store.migrate import upgrade as upgrade_schema

    database = Database(checked_database_url(settings))
    try:
        upgrade_schema(database.engine)
        click.echo(f"schema at {current_revision(database.engine)}")
    finally:
        database.dispose()

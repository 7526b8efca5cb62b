"""``centrali db``."""

from __future__ import annotations

import click

from centrali.cli.base import cli, with_settings
from centrali.config import Settings
from centrali.store.db import Database
from centrali.store.migrate import current_revision
from centrali.store.migrate import upgrade as upgrade_schema


@cli.group()
def db() -> None:
    """Manage the store."""


@db.command()
@with_settings
def upgrade(settings: Settings) -> None:
    """Migrate the store to the latest schema."""
    database = Database(settings.database_url)
    upgrade_schema(database.engine)
    click.echo(f"schema at {current_revision(database.engine)}")

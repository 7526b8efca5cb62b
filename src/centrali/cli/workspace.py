"""``centrali workspace``."""

from __future__ import annotations

import click

from centrali.cli.base import cli, open_store, with_settings
from centrali.config import Settings
from centrali.services.workspaces import create_workspace


@cli.group()
def workspace() -> None:
    """Manage workspaces."""


@workspace.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug)")
@with_settings
def create(settings: Settings, slug: str, name: str | None) -> None:
    """Create a workspace with its built-in groups."""
    ws = create_workspace(open_store(settings), slug=slug, name=name)
    click.echo(ws.slug)

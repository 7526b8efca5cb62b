"""``centrali workspace``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from centrali.cli.base import open_store, with_settings

if TYPE_CHECKING:
    from centrali.config import Settings


@click.group()
def workspace() -> None:
    """Manage workspaces."""


@workspace.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug)")
@with_settings
def create(settings: Settings, slug: str, name: str | None) -> None:
    """Create a workspace with its built-in groups."""
    from centrali.services.workspaces import create_workspace

    ws = create_workspace(open_store(settings), slug=slug, name=name)
    click.echo(ws.slug)

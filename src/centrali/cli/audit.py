"""``centrali audit``."""

from __future__ import annotations

import json

import click

from centrali.cli.base import cli, open_store, with_settings
from centrali.config import Settings
from centrali.services.audit import list_events
from centrali.services.validation import PageRequest


@cli.group()
def audit() -> None:
    """Read the audit log."""


@audit.command("list")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug")
@click.option("--page", default="1", help="Page, from 1")
@click.option("--limit", default="20", help="Events per page, at most 100")
@with_settings
def list_(settings: Settings, workspace_slug: str, page: str, limit: str) -> None:
    """Print the workspace's audit events, newest first, one JSON object per line."""
    events, _total = list_events(
        open_store(settings), workspace_slug=workspace_slug, page=PageRequest.parse(page, limit)
    )
    for event in events:
        click.echo(json.dumps(event.as_dict(), sort_keys=True))

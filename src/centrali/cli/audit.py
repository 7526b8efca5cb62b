"""``centrali audit``: the audit log and the counts of failed token requests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from centrali.cli.base import open_existing_store, with_settings

if TYPE_CHECKING:
    from centrali.config import Settings
    from centrali.services.validation import PageRequest

_SINCE_HELP = "Only from this time on, ISO 8601 with a timezone (2026-01-31T12:00:00Z)"
_UNTIL_HELP = "Only before this time, ISO 8601 with a timezone"
_JSON_HELP = 'One JSON object {"data", "page", "limit", "total"} instead of JSON lines'


@click.group()
def audit() -> None:
    """Read the audit log."""


def _echo_page(items: list[dict[str, Any]], paging: PageRequest, total: int, as_page: bool) -> None:
    if as_page:
        click.echo(json.dumps(paging.body(items, total), sort_keys=True))
        return
    for item in items:
        click.echo(json.dumps(item, sort_keys=True))


@audit.command("list")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug")
@click.option("--action", help="Only this action, e.g. service_account.rotated")
@click.option("--actor", help="Only events by this actor (a user's subject, cli:NAME)")
@click.option("--target", help="Only events on this target (a clientId, a group name)")
@click.option("--since", help=_SINCE_HELP)
@click.option("--until", help=_UNTIL_HELP)
@click.option("--page", default="1", help="Page, from 1")
@click.option("--limit", default="20", help="Events per page, at most 100")
@click.option("--json", "as_page", is_flag=True, help=_JSON_HELP)
@with_settings
def list_(
    settings: Settings,
    workspace_slug: str,
    action: str | None,
    actor: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
    page: str,
    limit: str,
    as_page: bool,
) -> None:
    """Print the workspace's audit events, newest first, one JSON object per line."""
    from centrali.services.audit import AuditFilter, list_events
    from centrali.services.validation import PageRequest

    paging = PageRequest.parse(page, limit)
    filters = AuditFilter.parse(action=action, actor=actor, target=target, since=since, until=until)
    db = open_existing_store(settings)
    try:
        events, total = list_events(db, workspace_slug=workspace_slug, page=paging, filters=filters)
    finally:
        db.dispose()
    _echo_page([e.as_dict() for e in events], paging, total, as_page)


@audit.command("failures")
@click.option(
    "--workspace", "workspace_slug", help="Workspace slug (default: all, unknown clients too)"
)
@click.option("--client-id", help="Only this clientId (or 'unknown')")
@click.option("--since", help=_SINCE_HELP)
@click.option("--until", help=_UNTIL_HELP)
@click.option("--page", default="1", help="Page, from 1")
@click.option("--limit", default="20", help="Rows per page, at most 100")
@click.option("--json", "as_page", is_flag=True, help=_JSON_HELP)
@with_settings
def failures(
    settings: Settings,
    workspace_slug: str | None,
    client_id: str | None,
    since: str | None,
    until: str | None,
    page: str,
    limit: str,
    as_page: bool,
) -> None:
    """Print failed token requests per client id, reason and hour, newest hour first, one
    JSON object per line (with the account's workspace; null for unknown client ids)."""
    from centrali.services.audit import FailureFilter, list_token_failures
    from centrali.services.validation import PageRequest

    paging = PageRequest.parse(page, limit)
    filters = FailureFilter.parse(client_id=client_id, since=since, until=until)
    db = open_existing_store(settings)
    try:
        rows, total = list_token_failures(
            db, workspace_slug=workspace_slug, page=paging, filters=filters
        )
    finally:
        db.dispose()
    _echo_page([{**r.as_dict(), "workspace": r.workspace} for r in rows], paging, total, as_page)

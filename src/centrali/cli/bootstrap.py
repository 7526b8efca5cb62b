"""``centrali bootstrap``: a workspace and its first admin, idempotently."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from centrali.cli.base import open_store, with_settings
from centrali.cli.user import password_stdin_option, read_password_stdin

if TYPE_CHECKING:
    from centrali.config import Settings


@click.command()
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug")
@click.option("--admin", "admin_email", required=True, help="Admin email")
@password_stdin_option
@with_settings
def bootstrap(
    settings: Settings, workspace_slug: str, admin_email: str, password_stdin: bool
) -> None:
    """Create WORKSPACE and ADMIN (in workspace-admins) unless they exist; with
    --password-stdin, also set the admin's password (for signing in to the console).
    Everything is checked first, then written in one transaction."""
    from centrali.services.users import bootstrap_admin
    from centrali.services.validation import check_slug, normalize_email

    # Bad input fails before the store is opened (let alone created).
    check_slug(workspace_slug)
    normalize_email(admin_email)
    password = read_password_stdin() if password_stdin else None
    db = open_store(settings)
    try:
        view = bootstrap_admin(
            db, workspace_slug=workspace_slug, email=admin_email, password=password
        )
    finally:
        db.dispose()
    click.echo(f"workspace {workspace_slug}: admin {view.email} ({view.subject})")

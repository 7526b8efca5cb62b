"""``centrali bootstrap``: a workspace and its first admin, idempotently."""

from __future__ import annotations

import click

from centrali.cli.base import cli, open_store, with_settings
from centrali.cli.user import password_stdin_option, read_password_stdin
from centrali.config import Settings
from centrali.services.errors import ConflictError
from centrali.services.permissions import ADMIN_GROUP
from centrali.services.users import add_member, create_user, set_password
from centrali.services.workspaces import create_workspace


@cli.command()
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug")
@click.option("--admin", "admin_email", required=True, help="Admin email")
@password_stdin_option
@with_settings
def bootstrap(
    settings: Settings, workspace_slug: str, admin_email: str, password_stdin: bool
) -> None:
    """Create WORKSPACE and ADMIN (in workspace-admins) unless they exist; with
    --password-stdin, also set the admin's password (for signing in to the console)."""
    password = read_password_stdin() if password_stdin else None
    db = open_store(settings)
    try:
        create_workspace(db, slug=workspace_slug)
    except ConflictError:
        pass
    try:
        view = create_user(
            db,
            email=admin_email,
            workspace_slug=workspace_slug,
            groups=[ADMIN_GROUP],
            password=password,
        )
    except ConflictError:
        view = add_member(
            db, email=admin_email, workspace_slug=workspace_slug, groups=[ADMIN_GROUP]
        )
        if password is not None:
            set_password(db, email=admin_email, password=password)
    click.echo(f"workspace {workspace_slug}: admin {view.email} ({view.subject})")

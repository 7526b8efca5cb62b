"""``centrali user``."""

from __future__ import annotations

import time

import click

from centrali.cli.base import cli, open_store, with_settings
from centrali.config import Settings
from centrali.services.issuer import served_issuer
from centrali.services.keys import load_key_set
from centrali.services.users import create_user, get_member, issue_user_token


@cli.group()
def user() -> None:
    """Manage users."""


@user.command("create")
@click.argument("email")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug")
@click.option("--group", "groups", multiple=True, help="Group to join (repeatable)")
@with_settings
def create(settings: Settings, email: str, workspace_slug: str, groups: tuple[str, ...]) -> None:
    """Create a user, member of WORKSPACE, in the given groups."""
    view = create_user(
        open_store(settings), email=email, workspace_slug=workspace_slug, groups=groups
    )
    click.echo(view.subject)


@user.command("token")
@click.argument("email")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug")
@with_settings
def token(settings: Settings, email: str, workspace_slug: str) -> None:
    """Print a user access token (a JWT, nothing else) for EMAIL in WORKSPACE."""
    db = open_store(settings)
    member = get_member(db, email=email, workspace_slug=workspace_slug)
    issuer, audience = served_issuer(db, settings)
    issued = issue_user_token(
        member,
        keys=load_key_set(db, settings.signing_alg),
        issuer=issuer,
        audience=audience,
        ttl=settings.token_ttl,
        now=time.time(),
    )
    click.echo(issued.token)

"""``centrali user``."""

from __future__ import annotations

import sys
import time

import click

from centrali.cli.base import cli, open_store, with_settings
from centrali.config import Settings
from centrali.services.issuer import served_issuer
from centrali.services.keys import KeyPolicy, load_key_set
from centrali.services.users import create_user, get_member, issue_user_token, set_password


@cli.group()
def user() -> None:
    """Manage users."""


def read_password_stdin() -> str:
    """The password on standard input (its one line; a trailing newline is not part of
    it), never from a flag: flags end up in shell history and ``ps``."""
    text = sys.stdin.read()
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if not text:
        raise click.UsageError("--password-stdin: no password on standard input")
    if "\n" in text:
        raise click.UsageError("--password-stdin: the password must be one line")
    return text


password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read a password to sign in with from standard input (argon2id-hashed)",
)


@user.command("create")
@click.argument("email")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug")
@click.option("--group", "groups", multiple=True, help="Group to join (repeatable)")
@password_stdin_option
@with_settings
def create(
    settings: Settings,
    email: str,
    workspace_slug: str,
    groups: tuple[str, ...],
    password_stdin: bool,
) -> None:
    """Create a user, member of WORKSPACE, in the given groups."""
    password = read_password_stdin() if password_stdin else None
    view = create_user(
        open_store(settings),
        email=email,
        workspace_slug=workspace_slug,
        groups=groups,
        password=password,
    )
    click.echo(view.subject)


@user.command("set-password")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    required=True,
    help="Read the new password from standard input (required: never a flag)",
)
@with_settings
def set_password_command(settings: Settings, email: str, password_stdin: bool) -> None:
    """Set the password EMAIL signs in with; ends their sign-ins and refresh tokens."""
    if not password_stdin:
        raise click.UsageError("pass --password-stdin and the password on standard input")
    subject = set_password(open_store(settings), email=email, password=read_password_stdin())
    click.echo(subject)


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
        keys=load_key_set(db, settings.signing_alg, KeyPolicy.from_settings(settings)),
        issuer=issuer,
        audience=audience,
        ttl=settings.token_ttl,
        now=time.time(),
    )
    click.echo(issued.token)

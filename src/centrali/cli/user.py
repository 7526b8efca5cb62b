"""``centrali user``."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click

from centrali.cli.base import open_existing_store, open_store, store_name, with_settings

if TYPE_CHECKING:
    from centrali.config import Settings


@click.group()
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
    from centrali.services.users import create_user

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
    from centrali.services.users import set_password

    if not password_stdin:
        raise click.UsageError("pass --password-stdin and the password on standard input")
    subject = set_password(open_store(settings), email=email, password=read_password_stdin())
    click.echo(subject)


@user.command("token")
@click.argument("email")
@click.option("--workspace", "workspace_slug", required=True, help="Workspace slug")
@with_settings
def token(settings: Settings, email: str, workspace_slug: str) -> None:
    """Print a user access token (a JWT, nothing else) for EMAIL in WORKSPACE, signed for
    the store's issuer (the first one served, or --issuer / CENTRALI_ISSUER); stderr says
    which. Reads the store and writes nothing to it."""
    from centrali.cli.fast_token import mint

    minted = mint(settings, email, workspace_slug, time.time())
    if minted is not None:  # a SQLite store, read without SQLAlchemy (cli.fast_token)
        click.echo(minted.token)
        also = "" if minted.audience == minted.issuer else f", audience {minted.audience}"
        click.echo(f"centrali: signed for issuer {minted.issuer} ({minted.source}{also})", err=True)
        return
    from centrali.services.issuer import token_issuer
    from centrali.services.keys import KeyPolicy, load_key_set
    from centrali.services.users import get_member, issue_user_token

    policy = KeyPolicy.from_settings(settings)
    db = open_existing_store(settings)
    try:
        try:  # first: a master key that does not open the keys is a setting error
            keys = load_key_set(db, settings.signing_alg, policy)
        except RuntimeError as exc:  # no key of that algorithm: never served with it
            raise click.ClickException(f"{exc}: {store_name(db.url)}") from None
        member = get_member(db, email=email, workspace_slug=workspace_slug)
        issuer, audience, source = token_issuer(db, settings)
    finally:
        db.dispose()
    issued = issue_user_token(
        member,
        keys=keys,
        issuer=issuer,
        audience=audience,
        ttl=settings.token_ttl,
        now=time.time(),
    )
    click.echo(issued.token)
    also = "" if audience == issuer else f", audience {audience}"
    click.echo(f"centrali: signed for issuer {issuer} ({source}{also})", err=True)

"""``centrali client``: OpenID Connect clients other than service accounts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from centrali.cli.base import open_store, with_settings

if TYPE_CHECKING:
    from centrali.config import Settings


@click.group()
def client() -> None:
    """Manage OpenID Connect clients for human sign-in."""


@client.command("create-public")
@click.argument("client_id")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="Redirect URI, matched exactly (repeatable)",
)
@click.option(
    "--post-logout-redirect-uri",
    "post_logout_redirect_uris",
    multiple=True,
    help="Where the client may send the browser after logout, matched exactly (repeatable)",
)
@click.option("--name", help="Shown on the sign-in page (default: CLIENT_ID)")
@with_settings
def create_public(
    settings: Settings,
    client_id: str,
    redirect_uris: tuple[str, ...],
    post_logout_redirect_uris: tuple[str, ...],
    name: str | None,
) -> None:
    """Register a public client (no secret; authorization code + PKCE S256)."""
    from centrali.services.oidc import register_public_client

    registered = register_public_client(
        open_store(settings),
        client_id=client_id,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout_redirect_uris,
        name=name,
    )
    click.echo(registered.client_id)

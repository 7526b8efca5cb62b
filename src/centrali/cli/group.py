"""``centrali group``: groups, their permissions, their members."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from centrali.cli.base import cli_actor, open_existing_store, open_store, with_settings
from centrali.services.permissions import PERMISSIONS

if TYPE_CHECKING:
    from centrali.config import Settings
    from centrali.services import groups as svc

_workspace = click.option("--workspace", "workspace_slug", required=True, help="Workspace slug")


def _show(view: svc.GroupView) -> str:
    default = " (default)" if view.is_default else ""
    return f"{view.name}\t{','.join(view.permissions) or '-'}{default}"


@click.group(help=f"Manage groups and their permissions ({', '.join(PERMISSIONS)}).")
def group() -> None:
    pass


@group.command("list")
@_workspace
@with_settings
def list_(settings: Settings, workspace_slug: str) -> None:
    """List groups: name, permissions."""
    from centrali.services import groups as svc

    for view in svc.list_groups(open_existing_store(settings), workspace_slug=workspace_slug):
        click.echo(_show(view))


@group.command("create")
@click.argument("name")
@_workspace
@click.option("--permission", "permissions", multiple=True, help="Permission (repeatable)")
@click.option("--default", "is_default", is_flag=True, help="New service accounts join it")
@with_settings
def create(
    settings: Settings,
    name: str,
    workspace_slug: str,
    permissions: tuple[str, ...],
    is_default: bool,
) -> None:
    """Create a group."""
    from centrali.services import groups as svc

    view = svc.create_group(
        open_store(settings),
        workspace_slug=workspace_slug,
        actor=cli_actor(),
        name=name,
        permissions=permissions,
        is_default=is_default,
    )
    click.echo(_show(view))


@group.command("grant")
@click.argument("name")
@click.argument("permission")
@_workspace
@with_settings
def grant(settings: Settings, name: str, permission: str, workspace_slug: str) -> None:
    """Give group NAME a PERMISSION."""
    from centrali.services import groups as svc

    view = svc.set_permission(
        open_store(settings),
        workspace_slug=workspace_slug,
        actor=cli_actor(),
        name=name,
        permission=permission,
        granted=True,
    )
    click.echo(_show(view))


@group.command("revoke")
@click.argument("name")
@click.argument("permission")
@_workspace
@with_settings
def revoke(settings: Settings, name: str, permission: str, workspace_slug: str) -> None:
    """Take a PERMISSION from group NAME."""
    from centrali.services import groups as svc

    view = svc.set_permission(
        open_store(settings),
        workspace_slug=workspace_slug,
        actor=cli_actor(),
        name=name,
        permission=permission,
        granted=False,
    )
    click.echo(_show(view))


@group.command("add-member")
@click.argument("name")
@click.argument("email")
@_workspace
@with_settings
def add_member(settings: Settings, name: str, email: str, workspace_slug: str) -> None:
    """Put user EMAIL (a member of the workspace) into group NAME."""
    from centrali.services import groups as svc

    svc.set_membership(
        open_store(settings),
        workspace_slug=workspace_slug,
        actor=cli_actor(),
        name=name,
        email=email,
        member=True,
    )
    click.echo(f"{email} is in {name}")


@group.command("remove-member")
@click.argument("name")
@click.argument("email")
@_workspace
@with_settings
def remove_member(settings: Settings, name: str, email: str, workspace_slug: str) -> None:
    """Take user EMAIL out of group NAME."""
    from centrali.services import groups as svc

    svc.set_membership(
        open_store(settings),
        workspace_slug=workspace_slug,
        actor=cli_actor(),
        name=name,
        email=email,
        member=False,
    )
    click.echo(f"{email} is not in {name}")

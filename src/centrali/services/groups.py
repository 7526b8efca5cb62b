"""Groups of a workspace, their permissions, and which users are in them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from centrali.services import audit
from centrali.services.context import Actor, utcnow
from centrali.services.errors import ConflictError, InvalidBodyError, NotFoundError
from centrali.services.permissions import PERMISSIONS
from centrali.services.validation import GROUP_NAME_RE, normalize_email
from centrali.services.workspaces import require_workspace
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import Group, GroupPermission, MembershipGroup, Workspace


@dataclass(frozen=True, slots=True)
class GroupView:
    name: str
    permissions: tuple[str, ...]
    is_default: bool


def _check_permission(permission: str) -> str:
    if permission not in PERMISSIONS:
        raise InvalidBodyError(
            f"unknown permission {permission!r} (one of {', '.join(PERMISSIONS)})",
            field="permission",
        )
    return permission


def _require_group(session: Session, workspace: Workspace, name: str) -> Group:
    found = repo.get_groups_by_name(session, workspace_id=workspace.id, names=[name])
    if name not in found:
        raise NotFoundError(f"group {name!r} not found in workspace {workspace.slug!r}")
    return found[name]


def _permissions(session: Session, group_id: int) -> tuple[str, ...]:
    stmt = select(GroupPermission.permission).where(GroupPermission.group_id == group_id)
    return tuple(sorted(session.scalars(stmt)))


def list_groups(db: Database, *, workspace_slug: str) -> list[GroupView]:
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        return [
            GroupView(g.name, _permissions(session, g.id), g.is_default)
            for g in repo.list_groups(session, workspace_id=workspace.id)
        ]


def create_group(
    db: Database,
    *,
    workspace_slug: str,
    actor: Actor,
    name: str,
    permissions: tuple[str, ...] = (),
    is_default: bool = False,
) -> GroupView:
    if not GROUP_NAME_RE.match(name):
        raise InvalidBodyError(
            "group name: 1-64 lowercase letters, digits, '-', '_' or '.'", field="name"
        )
    perms = tuple(sorted({_check_permission(p) for p in permissions}))
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        if repo.get_groups_by_name(session, workspace_id=workspace.id, names=[name]):
            raise ConflictError(f"group {name!r} already exists")
        group = Group(
            workspace_id=workspace.id, name=name, is_default=is_default, created_at=utcnow()
        )
        session.add(group)
        session.flush()
        session.add_all(GroupPermission(group_id=group.id, permission=p) for p in perms)
        audit.record(
            session,
            workspace_id=workspace.id,
            action="group.created",
            actor=actor,
            target=name,
            details={"permissions": list(perms), "default": is_default},
        )
        return GroupView(name, perms, is_default)


def set_permission(
    db: Database, *, workspace_slug: str, actor: Actor, name: str, permission: str, granted: bool
) -> GroupView:
    """Grant or revoke one permission of a group (idempotent)."""
    _check_permission(permission)
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        group = _require_group(session, workspace, name)
        have = set(_permissions(session, group.id))
        if granted and permission not in have:
            session.add(GroupPermission(group_id=group.id, permission=permission))
        if not granted and permission in have:
            session.execute(
                delete(GroupPermission).where(
                    GroupPermission.group_id == group.id,
                    GroupPermission.permission == permission,
                )
            )
        audit.record(
            session,
            workspace_id=workspace.id,
            action="group.granted" if granted else "group.revoked",
            actor=actor,
            target=name,
            details={"permission": permission},
        )
        session.flush()
        return GroupView(name, _permissions(session, group.id), group.is_default)


def set_membership(
    db: Database, *, workspace_slug: str, actor: Actor, name: str, email: str, member: bool
) -> None:
    """Put a workspace member into a group, or take them out (idempotent)."""
    email = normalize_email(email)
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        group = _require_group(session, workspace, name)
        user = repo.get_user_by_email(session, email=email)
        membership = (
            None
            if user is None
            else repo.get_membership(session, workspace_id=workspace.id, user_id=user.id)
        )
        if membership is None:
            raise NotFoundError(f"user {email!r} is not a member of workspace {workspace.slug!r}")
        current = set(repo.membership_group_names(session, membership_id=membership.id))
        if member and name not in current:
            session.add(MembershipGroup(membership_id=membership.id, group_id=group.id))
        if not member and name in current:
            session.execute(
                delete(MembershipGroup).where(
                    MembershipGroup.membership_id == membership.id,
                    MembershipGroup.group_id == group.id,
                )
            )
        audit.record(
            session,
            workspace_id=workspace.id,
            action="group.member_added" if member else "group.member_removed",
            actor=actor,
            target=name,
            details={"email": email},
        )

"""Workspaces and their built-in groups."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from centrali.services.context import utcnow
from centrali.services.errors import ConflictError, NotFoundError
from centrali.services.permissions import BUILTIN_GROUPS
from centrali.services.validation import check_name, check_slug
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import Group, GroupPermission, Workspace


def create_workspace(db: Database, *, slug: str, name: str | None = None) -> Workspace:
    """A new workspace with the groups ``workspace-admins``, ``developers``, ``api-users``."""
    check_slug(slug)
    name = check_name(name if name is not None else slug)
    try:
        with db.write() as session:
            if repo.get_workspace(session, slug=slug) is not None:
                raise ConflictError(f"workspace {slug!r} already exists")
            return insert_workspace(session, slug=slug, name=name)
    except IntegrityError as exc:
        raise ConflictError(f"workspace {slug!r} already exists") from exc


def insert_workspace(session: Session, *, slug: str, name: str) -> Workspace:
    """The workspace and its built-in groups, in the caller's transaction."""
    now = utcnow()
    workspace = Workspace(slug=slug, name=name, created_at=now)
    session.add(workspace)
    session.flush()
    for builtin in BUILTIN_GROUPS:
        group = Group(
            workspace_id=workspace.id,
            name=builtin.name,
            is_default=builtin.is_default,
            created_at=now,
        )
        session.add(group)
        session.flush()
        session.add_all(
            GroupPermission(group_id=group.id, permission=p) for p in builtin.permissions
        )
    return workspace


def require_workspace(session: Session, slug: str) -> Workspace:
    workspace = repo.get_workspace(session, slug=slug)
    if workspace is None:
        raise NotFoundError("Workspace not found")
    return workspace

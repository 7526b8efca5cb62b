"""Service accounts: create, read, change, rotate, revoke, activate, delete; each audited.

Every change is one transaction holding both the change and its audit row. A deleted
account keeps its row (status ``deleted``, secret hash wiped) so its clientId is never
reused and its audit trail still resolves; to the API it no longer exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from centrali.oauth.credentials import generate_client_id, generate_client_secret, hash_secret
from centrali.oauth.discovery import SUPPORTED_SCOPES
from centrali.services import audit
from centrali.services.context import Actor, isoformat
from centrali.services.errors import InvalidBodyError, NotFoundError
from centrali.services.validation import (
    PageRequest,
    check_description,
    check_name,
    parse_path_id,
)
from centrali.services.workspaces import require_workspace
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import Group, ServiceAccount

SUPPORTED_GRANT_TYPES = ("client_credentials",)
DEFAULT_GRANT_TYPES = ("client_credentials",)
DEFAULT_SCOPE = "openid"
MAX_GROUPS = 50


@dataclass(frozen=True, slots=True)
class ServiceAccountView:
    """An account as the API shows it; ``client_secret`` only right after create/rotate."""

    id: int
    client_id: str
    name: str
    description: str | None
    workspace: str
    grant_types: tuple[str, ...]
    scope: str
    groups: tuple[str, ...]
    status: str
    created_at: str
    created_by: str
    updated_at: str
    client_secret: str | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "clientId": self.client_id}
        if self.client_secret is not None:
            body["clientSecret"] = self.client_secret
        body.update(
            {
                "name": self.name,
                "description": self.description,
                "workspace": self.workspace,
                "grant_types": list(self.grant_types),
                "scope": self.scope,
                "groups": list(self.groups),
                "status": self.status,
                "createdAt": self.created_at,
                "createdBy": self.created_by,
                "updatedAt": self.updated_at,
            }
        )
        return body

    def rotation_dict(self) -> dict[str, Any]:
        """The guide's rotate answer: id, clientId, clientSecret, name, workspace, updatedAt."""
        return {
            "id": self.id,
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "name": self.name,
            "workspace": self.workspace,
            "updatedAt": self.updated_at,
        }


def _view(
    account: ServiceAccount, workspace_slug: str, groups: Sequence[str]
) -> ServiceAccountView:
    return ServiceAccountView(
        id=account.id,
        client_id=account.client_id,
        name=account.name,
        description=account.description,
        workspace=workspace_slug,
        grant_types=tuple(account.grant_types),
        scope=account.scope,
        groups=tuple(sorted(groups)),
        status=account.status,
        created_at=isoformat(account.created_at),
        created_by=account.created_by,
        updated_at=isoformat(account.updated_at),
    )


def parse_account_id(raw: str) -> int:
    return parse_path_id(raw, "Service account not found")


def _check_grant_types(grant_types: Sequence[str] | None) -> tuple[str, ...]:
    if grant_types is None:
        return DEFAULT_GRANT_TYPES
    if not grant_types:
        raise InvalidBodyError("grant_types must not be empty", field="grant_types")
    for g in grant_types:
        if g not in SUPPORTED_GRANT_TYPES:
            raise InvalidBodyError(f"unsupported grant type: {g[:64]!r}", field="grant_types")
    return tuple(dict.fromkeys(grant_types))


def _check_scope(scope: str | None) -> str:
    if scope is None:
        return DEFAULT_SCOPE
    scopes = scope.split()
    if not scopes:
        raise InvalidBodyError("scope must not be empty", field="scope")
    for s in scopes:
        if s not in SUPPORTED_SCOPES:
            raise InvalidBodyError(f"unsupported scope: {s[:64]!r}", field="scope")
    return " ".join(dict.fromkeys(scopes))


def _resolve_groups(session: Session, workspace_id: int, names: Sequence[str]) -> list[Group]:
    if len(names) > MAX_GROUPS:
        raise InvalidBodyError(f"at most {MAX_GROUPS} groups", field="groups")
    wanted = list(dict.fromkeys(names))
    found = repo.get_groups_by_name(session, workspace_id=workspace_id, names=wanted)
    for name in wanted:
        if name not in found:
            raise InvalidBodyError(f"unknown group: {name[:64]!r}", field="groups")
    return [found[n] for n in wanted]


def _cutoff(actor: Actor) -> int:
    """Tokens issued up to and including this second die (see ClientRecord)."""
    return math.floor(actor.at.timestamp()) + 1


def create(
    db: Database,
    *,
    workspace_slug: str,
    actor: Actor,
    name: str,
    description: str | None = None,
    grant_types: Sequence[str] | None = None,
    scope: str | None = None,
    groups: Sequence[str] | None = None,
) -> ServiceAccountView:
    """A new active account; the answer is the only place its secret ever appears."""
    name = check_name(name)
    description = check_description(description)
    checked_grants = _check_grant_types(grant_types)
    checked_scope = _check_scope(scope)
    secret = generate_client_secret()
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        if groups is None:
            chosen: list[Group] = list(repo.default_groups(session, workspace_id=workspace.id))
        else:
            chosen = _resolve_groups(session, workspace.id, groups)
        account = ServiceAccount(
            workspace_id=workspace.id,
            client_id=generate_client_id(),
            secret_hash=hash_secret(secret),
            name=name,
            description=description,
            grant_types=list(checked_grants),
            scope=checked_scope,
            status="active",
            tokens_valid_after=0,
            created_at=actor.at,
            created_by=actor.subject,
            updated_at=actor.at,
        )
        session.add(account)
        session.flush()
        repo.set_account_groups(session, account_id=account.id, groups=chosen)
        repo.count_live_accounts(session, workspace_id=workspace.id, delta=1)
        audit.record(
            session,
            workspace_id=workspace.id,
            action="service_account.created",
            actor=actor,
            target=account.client_id,
            details={"id": account.id, "name": name, "groups": [g.name for g in chosen]},
        )
        view = _view(account, workspace.slug, [g.name for g in chosen])
    return replace(view, client_secret=secret)


def list_accounts(
    db: Database, *, workspace_slug: str, page: PageRequest, after: int | None = None
) -> tuple[list[ServiceAccountView], int]:
    """A page by number, or (``after``: the last id of the previous page) by keyset, which
    costs the same at any depth."""
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        rows = repo.list_service_accounts(
            session, workspace_id=workspace.id, offset=page.offset, limit=page.limit, after=after
        )
        groups = repo.account_group_names(session, account_ids=[r.id for r in rows])
        views = [_view(r, workspace.slug, groups[r.id]) for r in rows]
        return views, workspace.service_account_count


def get(db: Database, *, workspace_slug: str, account_id: int) -> ServiceAccountView:
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        account = _require_account(session, workspace.id, account_id)
        names = repo.account_group_names(session, account_ids=[account.id])[account.id]
        return _view(account, workspace.slug, names)


def _require_account(
    session: Session, workspace_id: int, account_id: int, *, for_update: bool = False
) -> ServiceAccount:
    account = repo.get_service_account(
        session, workspace_id=workspace_id, account_id=account_id, for_update=for_update
    )
    if account is None:
        raise NotFoundError("Service account not found")
    return account


def _change(
    db: Database,
    *,
    workspace_slug: str,
    account_id: int,
    actor: Actor,
    action: str,
    apply: Any,
    secret: str | None = None,
) -> ServiceAccountView:
    """Load the account for update, apply a change, audit it, all in one transaction."""
    with db.write() as session:
        workspace = require_workspace(session, workspace_slug)
        account = _require_account(session, workspace.id, account_id, for_update=True)
        details: dict[str, Any] = {"id": account.id}
        details.update(apply(session, workspace, account) or {})
        account.updated_at = actor.at
        audit.record(
            session,
            workspace_id=workspace.id,
            action=action,
            actor=actor,
            target=account.client_id,
            details=details,
        )
        session.flush()
        names = repo.account_group_names(session, account_ids=[account.id])[account.id]
        view = _view(account, workspace.slug, names)
    return replace(view, client_secret=secret) if secret is not None else view


def rename(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor, name: str
) -> ServiceAccountView:
    name = check_name(name)

    def apply(_s: Session, _w: object, account: ServiceAccount) -> dict[str, Any]:
        old, account.name = account.name, name
        return {"from": old, "to": name}

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.renamed",
        apply=apply,
    )


def describe(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor, description: str | None
) -> ServiceAccountView:
    description = check_description(description)

    def apply(_s: Session, _w: object, account: ServiceAccount) -> None:
        account.description = description

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.described",
        apply=apply,
    )


def set_groups(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor, groups: Sequence[str]
) -> ServiceAccountView:
    def apply(session: Session, workspace: Any, account: ServiceAccount) -> dict[str, Any]:
        chosen = _resolve_groups(session, workspace.id, groups)
        old = repo.account_group_names(session, account_ids=[account.id])[account.id]
        repo.set_account_groups(session, account_id=account.id, groups=chosen)
        return {"from": old, "to": sorted(g.name for g in chosen)}

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.groups_changed",
        apply=apply,
    )


def rotate(
    db: Database,
    *,
    workspace_slug: str,
    account_id: int,
    actor: Actor,
    revoke_tokens: bool = False,
) -> ServiceAccountView:
    """A new secret; the old one fails from the commit on. Issued tokens live on unless
    ``revoke_tokens``."""
    secret = generate_client_secret()

    def apply(_s: Session, _w: object, account: ServiceAccount) -> dict[str, Any]:
        account.secret_hash = hash_secret(secret)
        if revoke_tokens:
            account.tokens_valid_after = _cutoff(actor)
        return {"revokeTokens": revoke_tokens}

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.rotated",
        apply=apply,
        secret=secret,
    )


def revoke(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor
) -> ServiceAccountView:
    """Disable the account and kill every token issued to it so far."""

    def apply(_s: Session, _w: object, account: ServiceAccount) -> None:
        account.status = "revoked"
        account.tokens_valid_after = _cutoff(actor)

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.revoked",
        apply=apply,
    )


def activate(
    db: Database, *, workspace_slug: str, account_id: int, actor: Actor
) -> ServiceAccountView:
    """Enable the account again; tokens killed by an earlier revoke stay dead."""

    def apply(_s: Session, _w: object, account: ServiceAccount) -> None:
        account.status = "active"

    return _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.activated",
        apply=apply,
    )


def delete(db: Database, *, workspace_slug: str, account_id: int, actor: Actor) -> None:
    def apply(session: Session, workspace: Any, account: ServiceAccount) -> None:
        repo.count_live_accounts(session, workspace_id=workspace.id, delta=-1)
        account.status = "deleted"
        account.secret_hash = None
        account.tokens_valid_after = _cutoff(actor)

    _change(
        db,
        workspace_slug=workspace_slug,
        account_id=account_id,
        actor=actor,
        action="service_account.deleted",
        apply=apply,
    )

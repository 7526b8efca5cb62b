"""The audit log: one row per management action, written in the action's transaction.

Never put a secret, a secret hash or a token into ``details``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from centrali.services.context import Actor, isoformat
from centrali.services.errors import NotFoundError
from centrali.services.validation import PageRequest
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import AuditEvent

_FORBIDDEN_DETAIL_KEYS = frozenset(
    {"secret", "client_secret", "clientSecret", "secret_hash", "token"}
)


def record(
    session: Session,
    *,
    workspace_id: int,
    action: str,
    actor: Actor,
    target: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    if details and _FORBIDDEN_DETAIL_KEYS & details.keys():
        raise ValueError("audit details must not carry secrets")
    repo.add_audit_event(
        session,
        workspace_id=workspace_id,
        action=action,
        actor=actor.subject,
        target=target,
        source_ip=actor.source_ip,
        details=details,
        now=actor.at,
    )


@dataclass(frozen=True, slots=True)
class AuditEventView:
    id: int
    action: str
    actor: str
    target: str | None
    source_ip: str | None
    created_at: str
    details: dict[str, Any]

    @classmethod
    def of(cls, row: AuditEvent) -> AuditEventView:
        return cls(
            id=row.id,
            action=row.action,
            actor=row.actor,
            target=row.target,
            source_ip=row.source_ip,
            created_at=isoformat(row.created_at),
            details=dict(row.details or {}),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "actor": self.actor,
            "target": self.target,
            "sourceIp": self.source_ip,
            "createdAt": self.created_at,
            "details": self.details,
        }


def list_events(
    db: Database, *, workspace_slug: str, page: PageRequest
) -> tuple[list[AuditEventView], int]:
    with db.read() as session:
        workspace = repo.get_workspace(session, slug=workspace_slug)
        if workspace is None:
            raise NotFoundError("Workspace not found")
        rows, total = repo.list_audit_events(
            session, workspace_id=workspace.id, offset=page.offset, limit=page.limit
        )
        return [AuditEventView.of(r) for r in rows], total

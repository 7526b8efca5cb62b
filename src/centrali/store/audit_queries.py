"""Queries of the audit log and the failed-token counters. Like the repositories they take a
Session, never commit, and return rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Table, case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from centrali.store.tables import AuditEvent, ServiceAccount, TokenFailureCount, Workspace

# Ids per IN (...) list: well below SQLite's bound-parameter limit on any version.
_IN_CHUNK = 500


# --- audit events ----------------------------------------------------------------------------


def list_audit_events(
    session: Session,
    *,
    workspace_id: int,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int,
    limit: int,
) -> tuple[Sequence[AuditEvent], int]:
    """One page of a workspace's events, newest (highest id) first, and how many match.

    ``since`` is inclusive, ``until`` exclusive. The page's ids come from the
    ``(workspace_id, action|actor|target, id)`` indexes walked backwards, and the count is a
    ``count(*)`` over the same conditions (an index-only scan where one index covers them);
    a short last page needs no count at all.
    """
    conditions: list[ColumnElement[bool]] = [AuditEvent.workspace_id == workspace_id]
    if action is not None:
        conditions.append(AuditEvent.action == action)
    if actor is not None:
        conditions.append(AuditEvent.actor == actor)
    if target is not None:
        conditions.append(AuditEvent.target == target)
    if since is not None:
        conditions.append(AuditEvent.created_at >= since)
    if until is not None:
        conditions.append(AuditEvent.created_at < until)
    page_ids = (
        select(AuditEvent.id)
        .where(*conditions)
        .order_by(AuditEvent.id.desc())
        .offset(offset)
        .limit(limit)
    )
    rows = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.id.in_(page_ids.scalar_subquery()))
        .order_by(AuditEvent.id.desc())
    ).all()
    if 0 < len(rows) < limit or (not rows and offset == 0):
        return rows, offset + len(rows)
    total = session.scalar(select(func.count()).select_from(AuditEvent).where(*conditions))
    return rows, int(total or 0)


# --- failed token requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailureCount:
    """One row to add to ``token_failure_counts``."""

    client_id: str
    reason: str
    window_start: datetime
    workspace_id: int | None
    count: int
    last_seen_at: datetime


def account_workspace_ids(session: Session, *, client_ids: Sequence[str]) -> dict[str, int]:
    """The workspace of each client id that names an account (deleted ones included)."""
    found: dict[str, int] = {}
    for start in range(0, len(client_ids), _IN_CHUNK):
        chunk = client_ids[start : start + _IN_CHUNK]
        stmt = select(ServiceAccount.client_id, ServiceAccount.workspace_id).where(
            ServiceAccount.client_id.in_(chunk)
        )
        for client_id, workspace_id in session.execute(stmt):
            found[client_id] = workspace_id
    return found


def add_token_failure_counts(session: Session, *, rows: Sequence[FailureCount]) -> None:
    """Add ``rows`` to the counters: insert, or on the same (client id, reason, window) add
    the counts and keep the later ``last_seen_at``. Each key at most once in ``rows``."""
    if not rows:
        return
    table = cast(Table, TokenFailureCount.__table__)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["client_id", "reason", "window_start"],
        set_={
            "count": table.c.count + excluded.count,
            "last_seen_at": case(
                (excluded.last_seen_at > table.c.last_seen_at, excluded.last_seen_at),
                else_=table.c.last_seen_at,
            ),
            "workspace_id": func.coalesce(excluded.workspace_id, table.c.workspace_id),
        },
    )
    # In key order, so that two servers flushing at once lock rows in the same order.
    ordered = sorted(rows, key=lambda r: (r.client_id, r.reason, r.window_start))
    session.execute(stmt, [asdict(r) for r in ordered])


@dataclass(frozen=True, slots=True)
class FailureCountRow:
    """A counter as listed, with the slug of its workspace (None for unknown client ids)."""

    client_id: str
    reason: str
    window_start: datetime
    count: int
    last_seen_at: datetime
    workspace: str | None


def prune_token_failure_counts(session: Session, *, before: datetime) -> int:
    """Drop the hour windows that started before ``before``; returns how many went."""
    result = session.execute(
        delete(TokenFailureCount).where(TokenFailureCount.window_start < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def list_token_failures(
    session: Session,
    *,
    workspace_id: int | None,
    client_id: str | None = None,
    window_from: datetime | None = None,
    window_before: datetime | None = None,
    offset: int,
    limit: int,
) -> tuple[list[FailureCountRow], int]:
    """One page of counters, newest window first, and how many match. ``workspace_id``
    None: every row, those of unknown client ids (no workspace) included."""
    conditions: list[ColumnElement[bool]] = []
    if workspace_id is not None:
        conditions.append(TokenFailureCount.workspace_id == workspace_id)
    if client_id is not None:
        conditions.append(TokenFailureCount.client_id == client_id)
    if window_from is not None:
        conditions.append(TokenFailureCount.window_start >= window_from)
    if window_before is not None:
        conditions.append(TokenFailureCount.window_start < window_before)
    stmt = (
        select(
            TokenFailureCount.client_id,
            TokenFailureCount.reason,
            TokenFailureCount.window_start,
            TokenFailureCount.count,
            TokenFailureCount.last_seen_at,
            Workspace.slug,
        )
        .outerjoin(Workspace, Workspace.id == TokenFailureCount.workspace_id)
        .where(*conditions)
        .order_by(
            TokenFailureCount.window_start.desc(),
            TokenFailureCount.client_id,
            TokenFailureCount.reason,
        )
        .offset(offset)
        .limit(limit)
    )
    rows = [FailureCountRow(*_row) for _row in session.execute(stmt)]
    if 0 < len(rows) < limit or (not rows and offset == 0):
        return rows, offset + len(rows)
    total = session.scalar(select(func.count()).select_from(TokenFailureCount).where(*conditions))
    return rows, int(total or 0)

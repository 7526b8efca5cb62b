"""The audit log: one row per management action, written in the action's transaction; and
reading it back, with the counters of failed token requests.

Never put a secret, a secret hash or a token into ``details``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from centrali.services.context import Actor, isoformat
from centrali.services.errors import InvalidBodyError
from centrali.services.validation import PageRequest
from centrali.services.workspaces import require_workspace
from centrali.store import audit_queries
from centrali.store import repositories as repo
from centrali.store.db import Database
from centrali.store.tables import AuditEvent

_FORBIDDEN_DETAIL_KEYS = frozenset(
    {"secret", "client_secret", "clientSecret", "secret_hash", "token"}
)


# What a secret, a stored hash or a JWT looks like, wherever it sits in a string.
_SECRET_SHAPES = re.compile(
    r"sk_[0-9a-fA-F]{16,}|sha256\$[0-9a-fA-F]{16,}|eyJ[\w-]+\.[\w-]+\.[\w-]+"
)


def _redact(value: Any) -> Any:
    """``value`` with anything shaped like a secret, hash or token cut out: a user may paste
    one into a name, and the log must not keep it."""
    if isinstance(value, str):
        return _SECRET_SHAPES.sub("[redacted]", value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


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
        details=_redact(details) if details else details,
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


# --- reading -----------------------------------------------------------------------------

_INSTANT_MAX = 64
# A "+HH:MM" offset whose "+" a query string turned into a space.
_LOST_PLUS = re.compile(r"(?<=\d) (?=\d{2}(?::?\d{2})?$)")


def parse_instant(raw: str | None, name: str) -> datetime | None:
    """An ISO 8601 date and time with a timezone (``2026-01-31T12:00:00Z``), in UTC; 400
    naming ``name`` for anything else, a time without a timezone included."""
    if raw is None:
        return None
    value = raw.strip()
    if "T" in value:
        value = _LOST_PLUS.sub("+", value)
    try:
        if not 0 < len(value) <= _INSTANT_MAX:
            raise ValueError(value)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidBodyError(
            f"{name} must be an ISO 8601 date and time with a timezone, e.g. 2026-01-31T12:00:00Z",
            field=name,
        ) from None
    if parsed.utcoffset() is None:
        raise InvalidBodyError(
            f"{name} must include a timezone (Z or +HH:MM), e.g. 2026-01-31T12:00:00Z",
            field=name,
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidBodyError(f"{name} is out of range", field=name) from None


def _parse_text(raw: str | None, name: str, max_length: int) -> str | None:
    if raw is None:
        return None
    if not 0 < len(raw) <= max_length or not raw.isprintable():
        raise InvalidBodyError(f"{name} must be 1-{max_length} printable characters", field=name)
    return raw


def _check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until < since:
        raise InvalidBodyError("until must not be before since", field="until")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which events to list: each given field must match exactly; ``since`` inclusive,
    ``until`` exclusive."""

    action: str | None = None
    actor: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        action: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> AuditFilter:
        """From query strings or CLI flags; 400 naming the first bad one."""
        parsed = cls(
            action=_parse_text(action, "action", 64),
            actor=_parse_text(actor, "actor", 320),
            target=_parse_text(target, "target", 128),
            since=parse_instant(since, "since"),
            until=parse_instant(until, "until"),
        )
        _check_range(parsed.since, parsed.until)
        return parsed


def _actor_subject(session: Session, actor: str | None) -> str | None:
    """``actor`` as recorded: a user's email stands for their subject; anything else (a
    subject, ``cli:…``) is matched as it is."""
    if actor is None or "@" not in actor:
        return actor
    user = repo.get_user_by_email(session, email=actor.strip().lower())
    return actor if user is None else user.subject


def list_events(
    db: Database,
    *,
    workspace_slug: str,
    page: PageRequest,
    filters: AuditFilter | None = None,
) -> tuple[list[AuditEventView], int]:
    """One page of the workspace's events, newest first, and how many match ``filters``."""
    f = filters or AuditFilter()
    with db.read() as session:
        workspace = require_workspace(session, workspace_slug)
        rows, total = audit_queries.list_audit_events(
            session,
            workspace_id=workspace.id,
            action=f.action,
            actor=_actor_subject(session, f.actor),
            target=f.target,
            since=f.since,
            until=f.until,
            offset=page.offset,
            limit=page.limit,
        )
        return [AuditEventView.of(r) for r in rows], total


@dataclass(frozen=True, slots=True)
class FailureFilter:
    """Which failed-token counters to list: one client id, and hour windows overlapping
    [``since``, ``until``)."""

    client_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(
        cls, *, client_id: str | None = None, since: str | None = None, until: str | None = None
    ) -> FailureFilter:
        parsed = cls(
            client_id=_parse_text(client_id, "clientId", 128),
            since=parse_instant(since, "since"),
            until=parse_instant(until, "until"),
        )
        _check_range(parsed.since, parsed.until)
        return parsed


@dataclass(frozen=True, slots=True)
class TokenFailureView:
    """Failed token requests of one client id for one reason in one hour (UTC)."""

    client_id: str
    reason: str
    window_start: str
    count: int
    last_seen_at: str
    workspace: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "reason": self.reason,
            "windowStart": self.window_start,
            "count": self.count,
            "lastSeenAt": self.last_seen_at,
        }


def list_token_failures(
    db: Database,
    *,
    workspace_slug: str | None,
    page: PageRequest,
    filters: FailureFilter | None = None,
) -> tuple[list[TokenFailureView], int]:
    """One page of the counters, newest window first. ``workspace_slug`` None: every
    workspace's, and those of client ids that match no account (client id "unknown")."""
    f = filters or FailureFilter()
    # Windows start on whole hours: [start, start + 1h) overlaps [since, until) when start is
    # at or after the hour holding since, and before until.
    window_from = None if f.since is None else f.since.replace(minute=0, second=0, microsecond=0)
    with db.read() as session:
        workspace_id = (
            None if workspace_slug is None else require_workspace(session, workspace_slug).id
        )
        rows, total = audit_queries.list_token_failures(
            session,
            workspace_id=workspace_id,
            client_id=f.client_id,
            window_from=window_from,
            window_before=f.until,
            offset=page.offset,
            limit=page.limit,
        )
    views = [
        TokenFailureView(
            client_id=r.client_id,
            reason=r.reason,
            window_start=isoformat(r.window_start),
            count=int(r.count),
            last_seen_at=isoformat(r.last_seen_at),
            workspace=r.workspace,
        )
        for r in rows
    ]
    return views, total

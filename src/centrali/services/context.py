"""Who is acting, from where, at what time: handed to every use case."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller of the workspace API."""

    subject: str
    workspace: str
    is_service_account: bool
    groups: tuple[str, ...]
    permissions: frozenset[str]
    client_id: str = ""
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """What the audit log records about the caller."""

    subject: str
    source_ip: str | None = None
    at: datetime = field(default_factory=utcnow)


def isoformat(value: datetime) -> str:
    """ISO 8601 UTC with a ``Z``, to the second, as in the guide."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

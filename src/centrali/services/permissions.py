"""Permissions and the built-in groups every new workspace gets."""

from __future__ import annotations

from dataclasses import dataclass

STRUCTURES_READ = "structures:read"
STRUCTURES_WRITE = "structures:write"
RECORDS_READ = "records:read"
RECORDS_WRITE = "records:write"
MANAGE_SERVICE_ACCOUNTS = "service-accounts:manage"

PERMISSIONS = (
    STRUCTURES_READ,
    STRUCTURES_WRITE,
    RECORDS_READ,
    RECORDS_WRITE,
    MANAGE_SERVICE_ACCOUNTS,
)

ADMIN_GROUP = "workspace-admins"


@dataclass(frozen=True)
class BuiltinGroup:
    name: str
    permissions: tuple[str, ...]
    is_default: bool


BUILTIN_GROUPS = (
    BuiltinGroup(ADMIN_GROUP, PERMISSIONS, is_default=False),
    BuiltinGroup(
        "developers",
        (STRUCTURES_READ, STRUCTURES_WRITE, RECORDS_READ, RECORDS_WRITE),
        is_default=False,
    ),
    # The default group of new service accounts: the guide's examples read structures and
    # write records without naming a group.
    BuiltinGroup("api-users", (STRUCTURES_READ, RECORDS_READ, RECORDS_WRITE), is_default=True),
)

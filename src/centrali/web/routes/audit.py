"""``/workspace/{slug}/api/v1/audit-events``: the audit log, and the counts of failed token
requests, for the workspace's service-account managers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from centrali.services import audit, auth
from centrali.services.audit import AuditFilter, FailureFilter
from centrali.services.context import Principal
from centrali.services.errors import ForbiddenError, InvalidBodyError
from centrali.services.permissions import MANAGE_SERVICE_ACCOUNTS
from centrali.services.validation import PageRequest
from centrali.web.deps import PrincipalDep
from centrali.web.openapi_errors import API_ERRORS, operation_id
from centrali.web.responses import AuditEvent, AuditEventPage, TokenFailure, TokenFailurePage
from centrali.web.runtime import get_runtime

router = APIRouter(
    prefix="/workspace/{workspace_slug}/api/v1/audit-events",
    tags=["audit"],
    responses=API_ERRORS,
    generate_unique_id_function=operation_id,
)

_EVENT_PARAMS = frozenset({"action", "actor", "target", "since", "until", "page", "limit"})
_FAILURE_PARAMS = frozenset({"clientId", "since", "until", "page", "limit"})


async def audit_reader(principal: PrincipalDep) -> Principal:
    """A user of this workspace holding ``service-accounts:manage``; service-account tokens
    are refused (403), as on the management API."""
    if principal.is_service_account:
        raise ForbiddenError("Forbidden: service accounts cannot read the audit log")
    auth.require_permission(principal, MANAGE_SERVICE_ACCOUNTS)
    return principal


AuditReaderDep = Annotated[Principal, Depends(audit_reader)]


def _check_query(request: Request, allowed: frozenset[str]) -> None:
    """400 for a parameter this route does not know, or one given twice."""
    seen: set[str] = set()
    for name, _value in request.query_params.multi_items():
        if name not in allowed:
            shown = name[:64]
            raise InvalidBodyError(f"unknown query parameter {shown!r}", field=shown)
        if name in seen:
            raise InvalidBodyError(f"{name} given more than once", field=name)
        seen.add(name)


@router.get("")
def list_audit_events(
    request: Request,
    workspace_slug: str,
    reader: AuditReaderDep,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: str | None = None,
    until: str | None = None,
    page: str | None = None,
    limit: str | None = None,
) -> AuditEventPage:
    """The workspace's audit events, newest first; ``since`` inclusive, ``until`` exclusive
    (ISO 8601 with a timezone)."""
    _check_query(request, _EVENT_PARAMS)
    paging = PageRequest.parse(page, limit)
    filters = AuditFilter.parse(action=action, actor=actor, target=target, since=since, until=until)
    views, total = audit.list_events(
        get_runtime(request).db, workspace_slug=workspace_slug, page=paging, filters=filters
    )
    return AuditEventPage(
        data=[AuditEvent.of(v) for v in views], page=paging.page, limit=paging.limit, total=total
    )


@router.get("/token-failures")
def list_token_failures(
    request: Request,
    workspace_slug: str,
    reader: AuditReaderDep,
    client_id: Annotated[str | None, Query(alias="clientId")] = None,
    since: str | None = None,
    until: str | None = None,
    page: str | None = None,
    limit: str | None = None,
) -> TokenFailurePage:
    """Failed token requests of the workspace's accounts per client id, reason and hour,
    newest hour first; the hours overlapping [``since``, ``until``)."""
    _check_query(request, _FAILURE_PARAMS)
    paging = PageRequest.parse(page, limit)
    filters = FailureFilter.parse(client_id=client_id, since=since, until=until)
    views, total = audit.list_token_failures(
        get_runtime(request).db, workspace_slug=workspace_slug, page=paging, filters=filters
    )
    return TokenFailurePage(
        data=[TokenFailure.of(v) for v in views], page=paging.page, limit=paging.limit, total=total
    )

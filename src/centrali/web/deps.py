"""Request dependencies: the authenticated principal and the audit actor."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from centrali.services import auth
from centrali.services.context import Actor, Principal
from centrali.services.permissions import MANAGE_SERVICE_ACCOUNTS
from centrali.web.runtime import get_runtime


def current_principal(request: Request, workspace_slug: str) -> Principal:
    """Every workspace-scoped route: token checks, then the account behind the token."""
    runtime = get_runtime(request)
    return auth.authenticate(
        runtime.db,
        authorization=request.headers.get("authorization"),
        workspace_slug=workspace_slug,
        policy=runtime.policy,
        now=runtime.clock.now(),
    )


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def service_account_manager(request: Request, principal: PrincipalDep) -> Actor:
    """A user of this workspace holding ``service-accounts:manage``; returns the audit actor."""
    auth.require_user(principal)
    auth.require_permission(principal, MANAGE_SERVICE_ACCOUNTS)
    return Actor(
        subject=principal.subject, source_ip=request.client.host if request.client else None
    )


ManagerDep = Annotated[Actor, Depends(service_account_manager)]

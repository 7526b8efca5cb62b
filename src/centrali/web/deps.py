"""Request dependencies: the authenticated principal, permission checks, the audit actor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from centrali.services import auth
from centrali.services.context import Actor, Principal
from centrali.services.permissions import (
    MANAGE_SERVICE_ACCOUNTS,
    RECORDS_READ,
    RECORDS_WRITE,
    STRUCTURES_READ,
    STRUCTURES_WRITE,
)
from centrali.web.runtime import get_runtime


async def current_principal(request: Request, workspace_slug: str) -> Principal:
    """Every workspace-scoped route: token checks, then the account behind the token.
    On the event loop: a signature check, then for a service account one statement shared
    with the other requests of the moment (web.batching, on its own thread); a user's
    statement runs in the thread pool. The event loop never waits for the store."""
    runtime = get_runtime(request)
    token = auth.check_token(
        authorization=request.headers.get("authorization"),
        workspace_slug=workspace_slug,
        policy=runtime.policy,
        now=runtime.clock.now(),
    )
    if not token.is_service_account:
        return await run_in_threadpool(auth.user_principal, runtime.db, token, workspace_slug)
    found = await runtime.grant_lookups.find(auth.service_account_key(token))
    return auth.service_account_principal(token, workspace_slug, found)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def _actor(request: Request, principal: Principal) -> Actor:
    source_ip = request.client.host if request.client else None
    return Actor(subject=principal.subject, source_ip=source_ip)


# The permission checks only read the principal: `async def` keeps them on the event loop
# (a sync dependency would cost a thread-pool hop each).
async def service_account_manager(request: Request, principal: PrincipalDep) -> Actor:
    """A user of this workspace holding ``service-accounts:manage``; returns the audit actor."""
    auth.require_user(principal)
    auth.require_permission(principal, MANAGE_SERVICE_ACCOUNTS)
    return _actor(request, principal)


ManagerDep = Annotated[Actor, Depends(service_account_manager)]


def permitted(permission: str) -> Callable[[Request, Principal], Awaitable[Actor]]:
    """A dependency: any principal of the workspace (user or service account) holding
    ``permission``."""

    async def dependency(request: Request, principal: PrincipalDep) -> Actor:
        auth.require_permission(principal, permission)
        return _actor(request, principal)

    return dependency


StructuresRead = Annotated[Actor, Depends(permitted(STRUCTURES_READ))]
StructuresWrite = Annotated[Actor, Depends(permitted(STRUCTURES_WRITE))]
RecordsRead = Annotated[Actor, Depends(permitted(RECORDS_READ))]
RecordsWrite = Annotated[Actor, Depends(permitted(RECORDS_WRITE))]

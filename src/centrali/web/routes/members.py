"""``/workspace/{slug}/api/v1/members`` and ``…/groups``: read-only lists for the
workspace's service-account managers, so that the console can show who did something (an
email, not a user subject) and offer the workspace's groups as choices."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from centrali.services import groups as groups_service
from centrali.services import users
from centrali.web.deps import ManagerDep
from centrali.web.openapi_errors import API_ERRORS
from centrali.web.runtime import get_runtime

router = APIRouter(prefix="/workspace/{workspace_slug}/api/v1", responses=API_ERRORS)


class Member(BaseModel):
    subject: str = Field(description="The user's subject: the actor of their audit events")
    email: str


class MemberList(BaseModel):
    data: list[Member]


class GroupOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str
    permissions: list[str]
    is_default: bool = Field(
        alias="isDefault", description="New service accounts join it when given no groups"
    )


class GroupList(BaseModel):
    data: list[GroupOut]


@router.get("/members", tags=["members"])
def list_members(request: Request, workspace_slug: str, actor: ManagerDep) -> MemberList:
    """The workspace's members (user subject and email), by email."""
    views = users.list_members(get_runtime(request).db, workspace_slug=workspace_slug)
    return MemberList(data=[Member(subject=v.subject, email=v.email) for v in views])


@router.get("/groups", tags=["groups"])
def list_groups(request: Request, workspace_slug: str, actor: ManagerDep) -> GroupList:
    """The workspace's groups (name, permissions, default), by name: the names a service
    account's ``groups`` may hold."""
    views = groups_service.list_groups(get_runtime(request).db, workspace_slug=workspace_slug)
    return GroupList(
        data=[
            GroupOut(name=v.name, permissions=list(v.permissions), is_default=v.is_default)
            for v in views
        ]
    )

"""``/workspace/{slug}/api/v1/structures``: record types of a workspace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from centrali.services import structures as svc
from centrali.services.validation import PageRequest
from centrali.web.deps import StructuresRead, StructuresWrite
from centrali.web.openapi_errors import API_ERRORS
from centrali.web.runtime import get_runtime
from centrali.web.schemas import StructureCreate, StructureUpdate

router = APIRouter(
    prefix="/workspace/{workspace_slug}/api/v1/structures",
    tags=["structures"],
    responses=API_ERRORS,
)


@router.get("")
def list_structures(
    request: Request,
    workspace_slug: str,
    actor: StructuresRead,
    page: str | None = None,
    limit: str | None = None,
) -> dict[str, Any]:
    paging = PageRequest.parse(page, limit)
    views, total = svc.list_structures(
        get_runtime(request).db, workspace_slug=workspace_slug, page=paging
    )
    return paging.body([v.as_dict() for v in views], total)


@router.post("", status_code=201)
def create_structure(
    request: Request, workspace_slug: str, body: StructureCreate, actor: StructuresWrite
) -> dict[str, Any]:
    return svc.create_structure(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        actor=actor,
        slug=body.slug,
        name=body.name,
        description=body.description,
        fields=[f.model_dump() for f in body.fields],
    ).as_dict()


@router.get("/{slug}")
def get_structure(
    request: Request, workspace_slug: str, slug: str, actor: StructuresRead
) -> dict[str, Any]:
    return svc.get_structure(
        get_runtime(request).db, workspace_slug=workspace_slug, slug=slug
    ).as_dict()


@router.put("/{slug}")
def update_structure(
    request: Request, workspace_slug: str, slug: str, body: StructureUpdate, actor: StructuresWrite
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "name" in body.model_fields_set:
        changes["name"] = body.name
    if "description" in body.model_fields_set:
        changes["description"] = body.description
    if body.fields is not None:
        changes["fields"] = [f.model_dump() for f in body.fields]
    return svc.update_structure(
        get_runtime(request).db, workspace_slug=workspace_slug, actor=actor, slug=slug, **changes
    ).as_dict()


@router.delete("/{slug}", status_code=204)
def delete_structure(
    request: Request,
    workspace_slug: str,
    slug: str,
    actor: StructuresWrite,
    force: bool = False,
) -> Response:
    svc.delete_structure(
        get_runtime(request).db, workspace_slug=workspace_slug, slug=slug, force=force
    )
    return Response(status_code=204)

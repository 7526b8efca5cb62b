"""``/workspace/{slug}/api/v1/structures``: record types of a workspace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from centrali.services import structures as svc
from centrali.services.validation import PageRequest
from centrali.web.deps import StructuresRead, StructuresWrite
from centrali.web.openapi_errors import API_ERRORS, operation_id
from centrali.web.responses import Structure, StructurePage
from centrali.web.runtime import get_runtime
from centrali.web.schemas import StructureCreate, StructureUpdate

router = APIRouter(
    prefix="/workspace/{workspace_slug}/api/v1/structures",
    tags=["structures"],
    responses=API_ERRORS,
    generate_unique_id_function=operation_id,
)


@router.get("")
def list_structures(
    request: Request,
    workspace_slug: str,
    actor: StructuresRead,
    page: str | None = None,
    limit: str | None = None,
) -> StructurePage:
    paging = PageRequest.parse(page, limit)
    views, total = svc.list_structures(
        get_runtime(request).db, workspace_slug=workspace_slug, page=paging
    )
    return StructurePage(
        data=[Structure.of(v) for v in views], page=paging.page, limit=paging.limit, total=total
    )


@router.post("", status_code=201)
def create_structure(
    request: Request, workspace_slug: str, body: StructureCreate, actor: StructuresWrite
) -> Structure:
    view = svc.create_structure(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        actor=actor,
        slug=body.slug,
        name=body.name,
        description=body.description,
        fields=[f.model_dump() for f in body.fields],
    )
    return Structure.of(view)


@router.get("/{slug}")
def get_structure(
    request: Request, workspace_slug: str, slug: str, actor: StructuresRead
) -> Structure:
    return Structure.of(
        svc.get_structure(get_runtime(request).db, workspace_slug=workspace_slug, slug=slug)
    )


@router.put("/{slug}")
def update_structure(
    request: Request, workspace_slug: str, slug: str, body: StructureUpdate, actor: StructuresWrite
) -> Structure:
    changes: dict[str, Any] = {}
    if "name" in body.model_fields_set:
        changes["name"] = body.name
    if "description" in body.model_fields_set:
        changes["description"] = body.description
    if body.fields is not None:
        changes["fields"] = [f.model_dump() for f in body.fields]
    view = svc.update_structure(
        get_runtime(request).db, workspace_slug=workspace_slug, actor=actor, slug=slug, **changes
    )
    return Structure.of(view)


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

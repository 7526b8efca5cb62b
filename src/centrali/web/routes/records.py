"""``/workspace/{slug}/api/v1/records``: records of the workspace's structures."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from centrali.services import structures as svc
from centrali.services.structures import parse_record_id
from centrali.services.validation import PageRequest
from centrali.web.deps import RecordsRead, RecordsWrite
from centrali.web.openapi_errors import API_ERRORS, operation_id
from centrali.web.responses import Record, RecordPage
from centrali.web.runtime import get_runtime
from centrali.web.schemas import RecordCreate, RecordUpdate

router = APIRouter(
    prefix="/workspace/{workspace_slug}/api/v1/records",
    tags=["records"],
    responses=API_ERRORS,
    generate_unique_id_function=operation_id,
)


@router.post("", status_code=201)
def create_record(
    request: Request, workspace_slug: str, body: RecordCreate, actor: RecordsWrite
) -> Record:
    view = svc.create_record(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        actor=actor,
        record_slug=body.record_slug,
        data=body.data,
    )
    return Record.of(view)


@router.get("")
def list_records(
    request: Request,
    workspace_slug: str,
    actor: RecordsRead,
    recordSlug: str | None = None,
    page: str | None = None,
    limit: str | None = None,
) -> RecordPage:
    paging = PageRequest.parse(page, limit)
    views, total = svc.list_records(
        get_runtime(request).db, workspace_slug=workspace_slug, record_slug=recordSlug, page=paging
    )
    return RecordPage(
        data=[Record.of(v) for v in views], page=paging.page, limit=paging.limit, total=total
    )


@router.get("/{record_id}")
async def get_record(
    request: Request, workspace_slug: str, record_id: str, actor: RecordsRead
) -> Record:
    # The API's hot read: on the event loop like the token endpoint's lookup (a thread-pool
    # hop would cost more than the query), in one statement with the other reads of this
    # loop turn (web.batching).
    key = (workspace_slug, parse_record_id(record_id))
    return Record.of(svc.record_view(await get_runtime(request).record_reads.find(key)))


@router.put("/{record_id}")
def update_record(
    request: Request, workspace_slug: str, record_id: str, body: RecordUpdate, actor: RecordsWrite
) -> Record:
    view = svc.update_record(
        get_runtime(request).db,
        workspace_slug=workspace_slug,
        actor=actor,
        record_id=parse_record_id(record_id),
        data=body.data,
    )
    return Record.of(view)


@router.delete("/{record_id}", status_code=204)
def delete_record(
    request: Request, workspace_slug: str, record_id: str, actor: RecordsWrite
) -> Response:
    svc.delete_record(
        get_runtime(request).db, workspace_slug=workspace_slug, record_id=parse_record_id(record_id)
    )
    return Response(status_code=204)

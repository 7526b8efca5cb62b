"""Operations endpoints: liveness, readiness and Prometheus metrics (no authentication;
they reveal no account, key or secret)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse, Response

from centrali.services.context import utcnow
from centrali.services.service_accounts import count_expiring_credentials
from centrali.web import metrics
from centrali.web.openapi_errors import operation_id
from centrali.web.responses import Liveness
from centrali.web.runtime import get_runtime

router = APIRouter(tags=["operations"], generate_unique_id_function=operation_id)

_STATUS = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
}


@router.get("/healthz")
def healthz() -> Liveness:
    """Liveness: 200 while the process answers."""
    return Liveness(status="ok")


@router.get(
    "/readyz",
    responses={
        200: {"description": "Ready", "content": {"application/json": {"schema": _STATUS}}},
        503: {"description": "Not ready", "content": {"application/json": {"schema": _STATUS}}},
    },
)
def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when the store answers and a signing key is loaded, else 503."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None or runtime.keys is None:
        return _not_ready("signing key not loaded")
    try:
        with get_runtime(request).db.autocommit_engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        metrics.STORE_ERRORS.labels("readyz").inc()
        return _not_ready("store unreachable")
    return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse(
        {"status": "unavailable", "reason": reason},
        status_code=503,
        headers={"Cache-Control": "no-store", "Retry-After": "1"},
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def prometheus_metrics(request: Request) -> Response:
    """Prometheus text exposition: tokens issued and refused, latencies, store errors, and
    live credentials expiring within 7 and 30 days (``centrali_credentials_expiring``)."""
    expiring = None
    try:
        expiring = count_expiring_credentials(get_runtime(request).db, now=utcnow())
    except SQLAlchemyError:  # the rest of the metrics are still worth a scrape
        metrics.STORE_ERRORS.labels("metrics").inc()
    body, content_type = metrics.render(expiring)
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

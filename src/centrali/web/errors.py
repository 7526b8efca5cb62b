"""One handler per error family; routers raise, they never build error JSON."""

from __future__ import annotations

import logging

from fastapi import FastAPI, params
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from centrali.services.errors import ApiError
from centrali.services.validation import MAX_JSON_DEPTH
from centrali.web import metrics
from centrali.web.body_limit import too_large_body, too_slow_body

log = logging.getLogger("centrali.web")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request body", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "Malformed JSON body", None
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or None
    if first.get("type") == "missing" and not loc:
        return "A JSON body is required", None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    return (f"{field}: {message}" if field else message), field


def api_error_response(exc: ApiError) -> Response:
    """The answer to a refusal of the workspace API (also web.record_reads' answer)."""
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers())


async def _on_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


def _not_json(request: Request, exc: RequestValidationError) -> str | None:
    """The Content-Type of a body FastAPI did not read as JSON (it reads JSON when the type
    is ``application/json``, ``application/*+json`` or absent), or None. Such a body reaches
    validation as raw bytes; the client needs the content type named, not pydantic's
    "Input should be a valid dictionary"."""
    content_type = request.headers.get("content-type")
    if not content_type:
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        return None
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    if body_field is None or isinstance(body_field.field_info, params.Form):
        return None  # not a JSON route: a form route's errors are its fields'
    if not any(tuple(error.get("loc", ()))[:1] == ("body",) for error in exc.errors()):
        return None
    return (kind or content_type)[:100]


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    sent = _not_json(request, exc)
    if sent is not None:
        message = f"The body must be JSON sent with Content-Type: application/json, not {sent}"
        body = {"error": "unsupported_media_type", "message": message}
        return JSONResponse(body, status_code=415)
    message, field = _validation_message(exc)
    body = {"error": "invalid_request", "message": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=400)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 413:
        return JSONResponse(too_large_body(request.url.path), status_code=413, headers=NO_STORE)
    if exc.status_code == 408:
        return JSONResponse(too_slow_body(request.url.path), status_code=408, headers=NO_STORE)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        # FastAPI's JSON parse of a body nested past the interpreter's recursion limit
        # (hundreds of levels): the same 400 as a body past MAX_JSON_DEPTH.
        message = f"JSON body nested too deeply (at most {MAX_JSON_DEPTH} levels)"
        return JSONResponse({"error": "invalid_request", "message": message}, status_code=400)
    codes = {404: "not_found", 405: "method_not_allowed"}
    error = codes.get(exc.status_code, "http_error")
    message = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
    return JSONResponse(
        {"error": error, "message": message}, status_code=exc.status_code, headers=exc.headers
    )


# What the store raises when it does not answer (connection refused or lost, pool exhausted).
STORE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError)


async def _on_store_unavailable(_request: Request, exc: Exception) -> Response:
    return store_unavailable_response(exc)


def store_unavailable_response(exc: Exception) -> Response:
    """The store did not answer: 503 with Retry-After, so clients back off and retry; never
    a 500 (also web.record_reads' answer)."""
    metrics.STORE_ERRORS.labels("api").inc()
    log.warning("store unavailable: %s", type(exc).__name__)
    return JSONResponse(
        {"error": "service_unavailable", "message": "The store is not answering; try again"},
        status_code=503,
        headers={**NO_STORE, "Retry-After": "1"},
    )


async def _on_unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(
        {"error": "server_error", "message": "Internal server error"}, status_code=500
    )


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    for store_error in STORE_ERRORS:
        app.add_exception_handler(store_error, _on_store_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)

"""The error answers of the workspace API, as OpenAPI response objects for the routers, and
the routers' operation ids.

Every workspace route may answer these; FastAPI's default 422 is never sent (validation
errors are 400 here) and is removed from the document by ``web.app``.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute


def operation_id(route: APIRoute) -> str:
    """A route's operationId: its function's name (``create_service_account``), which
    generated clients take as the name of their function, instead of FastAPI's default of
    name, path and method run together."""
    return route.name


API_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}},
    }


API_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("invalid_request: a bad body or parameter, naming the field"),
    401: _error("unauthorized, token_expired or token_revoked"),
    403: _error("forbidden: another workspace or a missing permission"),
    404: _error("not_found"),
    405: _error("method_not_allowed"),
    408: _error("request_timeout: the body came too slowly"),
    409: _error("conflict"),
    413: _error("payload_too_large"),
    415: _error("unsupported_media_type: a body sent as anything but application/json"),
    503: _error("service_unavailable: the store did not answer (Retry-After)"),
}

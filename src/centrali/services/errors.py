"""Errors of the workspace and management APIs, answered as ``{"error", "message"}``.

ApiError
├── InvalidBodyError        400 invalid_request
├── UnauthorizedError       401 unauthorized       "Unauthorized"
│   ├── TokenExpiredApiError  401 token_expired    "Token expired"
│   └── TokenRevokedError     401 token_revoked    "Token revoked"
├── ForbiddenError          403 forbidden          "Forbidden: …"
├── NotFoundError           404 not_found
└── ConflictError           409 conflict
"""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    status_code: ClassVar[int] = 500
    error: ClassVar[str] = "server_error"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or self.default_message
        self.field = field
        super().__init__(self.message)

    def body(self) -> dict[str, str]:
        body = {"error": self.error, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body

    def headers(self) -> dict[str, str]:
        return {}


class InvalidBodyError(ApiError):
    status_code = 400
    error = "invalid_request"
    default_message = "Invalid request"


class UnauthorizedError(ApiError):
    status_code = 401
    error = "unauthorized"
    default_message = "Unauthorized"

    def headers(self) -> dict[str, str]:
        # RFC 6750 §3: a 401 from a protected resource names the Bearer scheme.
        return {"WWW-Authenticate": 'Bearer realm="centrali"'}


class TokenExpiredApiError(UnauthorizedError):
    error = "token_expired"
    default_message = "Token expired"

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": 'Bearer realm="centrali", error="invalid_token", '
            'error_description="Token expired"'
        }


class TokenRevokedError(UnauthorizedError):
    error = "token_revoked"
    default_message = "Token revoked"

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": 'Bearer realm="centrali", error="invalid_token", '
            'error_description="Token revoked"'
        }


class ForbiddenError(ApiError):
    status_code = 403
    error = "forbidden"
    default_message = "Forbidden"


class NotFoundError(ApiError):
    status_code = 404
    error = "not_found"
    default_message = "Not found"


class ConflictError(ApiError):
    status_code = 409
    error = "conflict"
    default_message = "Conflict"

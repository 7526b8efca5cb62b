"""Errors of the workspace and management APIs, answered as ``{"error", "message"}``.

ApiError
├── InvalidBodyError        400 invalid_request
├── UnauthorizedError       401 unauthorized       "Unauthorized: <why>"
│   ├── TokenExpiredApiError  401 token_expired    "Token expired"
│   └── TokenRevokedError     401 token_revoked    "Token revoked"
├── ForbiddenError          403 forbidden          "Forbidden: …"
├── NotFoundError           404 not_found
└── ConflictError           409 conflict

Every 401 and 403 names the Bearer scheme (RFC 6750 §3): ``WWW-Authenticate: Bearer
realm="centrali"``, with ``error="invalid_token"`` and an ``error_description`` when a token
was sent and refused, with no error at all when none was (or another scheme was used, §3.1),
and with ``error="insufficient_scope"`` on a 403 (the token does not grant the request).
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


REALM = "centrali"


def bearer_challenge(error: str | None = None, description: str | None = None) -> str:
    """An RFC 6750 §3 challenge; ``description`` is cut to the characters §3 allows."""
    challenge = f'Bearer realm="{REALM}"'
    if error is not None:
        challenge += f', error="{error}"'
        if description:
            allowed = "".join(c for c in description if " " <= c <= "~" and c not in '"\\')
            challenge += f', error_description="{allowed}"'
    return challenge


class UnauthorizedError(ApiError):
    """No acceptable access token. ``reason`` says why (the message is
    ``Unauthorized: <reason>``); ``token_sent``: a Bearer token was presented and refused
    (``error="invalid_token"``), else the challenge names no error (RFC 6750 §3.1)."""

    status_code = 401
    error = "unauthorized"
    default_message = "Unauthorized"

    def __init__(self, reason: str | None = None, *, token_sent: bool = True) -> None:
        super().__init__(f"{self.default_message}: {reason}" if reason else None)
        self.reason = reason
        self.token_sent = token_sent

    def headers(self) -> dict[str, str]:
        if not self.token_sent:
            return {"WWW-Authenticate": bearer_challenge()}
        return {"WWW-Authenticate": bearer_challenge("invalid_token", self.reason or "invalid")}


class TokenExpiredApiError(UnauthorizedError):
    error = "token_expired"
    default_message = "Token expired"

    def __init__(self) -> None:
        super().__init__()
        self.reason = self.default_message


class TokenRevokedError(UnauthorizedError):
    error = "token_revoked"
    default_message = "Token revoked"

    def __init__(self) -> None:
        super().__init__()
        self.reason = self.default_message


class ForbiddenError(ApiError):
    """The token is good but does not grant the request: a permission it lacks, another
    workspace's, a service account where a user is needed (RFC 6750 §3.1
    ``insufficient_scope``)."""

    status_code = 403
    error = "forbidden"
    default_message = "Forbidden"

    def headers(self) -> dict[str, str]:
        why = self.message.removeprefix("Forbidden: ")
        return {"WWW-Authenticate": bearer_challenge("insufficient_scope", why)}


class NotFoundError(ApiError):
    status_code = 404
    error = "not_found"
    default_message = "Not found"


class ConflictError(ApiError):
    status_code = 409
    error = "conflict"
    default_message = "Conflict"

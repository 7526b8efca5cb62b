"""OAuth 2.0 error responses (RFC 6749 §5.2; RFC 6750 §3.1 for resource errors).

``description`` goes on the wire; ``detail`` is for the log only and never sent.
"""

from __future__ import annotations

from typing import ClassVar


class OAuthError(Exception):
    """Base of every protocol error the token endpoint can answer."""

    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 400
    description: str = "The request could not be processed"

    def __init__(self, description: str | None = None, *, detail: str | None = None) -> None:
        if description is not None:
            self.description = description
        self.detail = detail
        super().__init__(self.description)

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequestError(OAuthError):
    error = "invalid_request"


class InvalidClientError(OAuthError):
    """401; always the same text, whatever was wrong (unknown, wrong secret, revoked)."""

    error = "invalid_client"
    status_code = 401
    description = "Invalid client credentials"

    def __init__(self, *, detail: str | None = None, basic: bool = False) -> None:
        super().__init__(None, detail=detail)
        self.basic = basic

    def headers(self) -> dict[str, str]:
        # RFC 6749 §5.2: a failed HTTP Basic attempt is answered with a Basic challenge.
        return {"WWW-Authenticate": 'Basic realm="centrali"'} if self.basic else {}


class InvalidGrantError(OAuthError):
    error = "invalid_grant"


class UnauthorizedClientError(OAuthError):
    error = "unauthorized_client"
    description = "The client is not allowed to use this grant type"


class UnsupportedGrantTypeError(OAuthError):
    error = "unsupported_grant_type"
    description = "The grant type is not supported"


class InvalidScopeError(OAuthError):
    error = "invalid_scope"
    description = "The requested scope is not allowed for this client"


class TemporarilyUnavailableError(OAuthError):
    error = "temporarily_unavailable"
    status_code = 503
    description = "The server cannot issue a token right now; try again"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}

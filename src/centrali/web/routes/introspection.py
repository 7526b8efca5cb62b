"""``POST /oidc/introspect`` (RFC 7662) and ``POST /oidc/revoke`` (RFC 7009).

Both read the raw form as the token endpoint does (a non-form body is ``invalid_request``, not
FastAPI's 422) and authenticate the client the same way, on the event loop with the token
endpoint's ClientStore: one indexed lookup on a connection that thread already holds. The
token's state and the revocation write then run in the threadpool on pooled connections.
Every answer is ``no-store``; errors are RFC 6749 §5.2 JSON.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from centrali.oauth import introspection
from centrali.oauth.client_auth import NONE, authenticate_client, authenticate_public_client
from centrali.oauth.errors import (
    InvalidClientError,
    InvalidRequestError,
    OAuthError,
    TemporarilyUnavailableError,
)
from centrali.oauth.limits import NOTHING_TAKEN
from centrali.oauth.ports import ClientRecord
from centrali.oauth.token_endpoint import FORM_CONTENT_TYPE, parse_form
from centrali.oauth.user_ports import PublicClient
from centrali.services.oidc import OidcStore
from centrali.store.client_store import StoreUnavailableError
from centrali.store.revocation import SqlTokenStateStore
from centrali.web.runtime import Runtime, get_runtime

log = logging.getLogger("centrali.web")
T = TypeVar("T")

router = APIRouter(tags=["oidc"])

INTROSPECT_PATH = "/oidc/introspect"
REVOKE_PATH = "/oidc/revoke"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# --- OpenAPI: the form the routes read themselves, and every answer they give ---------------

_FORM_BODY = {
    "required": True,
    "content": {
        FORM_CONTENT_TYPE: {
            "schema": {
                "type": "object",
                "required": ["token"],
                # Other parameters are ignored, but each may appear once (RFC 6749 §3.2).
                "additionalProperties": {"type": "string"},
                "maxProperties": 32,
                "properties": {
                    "token": {"type": "string", "minLength": 1},
                    "token_type_hint": {
                        "type": "string",
                        "description": "access_token or refresh_token; any other is ignored",
                    },
                    "client_id": {"type": "string", "description": "client_secret_post"},
                    "client_secret": {"type": "string", "description": "client_secret_post"},
                },
            }
        }
    },
}
_OAUTH_ERROR = {
    "type": "object",
    "required": ["error", "error_description"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_NO_STORE_HEADERS = {
    "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
    "Pragma": {"schema": {"type": "string", "enum": ["no-cache"]}},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _NO_STORE_HEADERS,
        "content": {"application/json": {"schema": _OAUTH_ERROR}},
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("invalid_request: non-form body, missing token, repeated parameter, both methods"),
    401: _error("invalid_client: wrong, unknown, revoked or deleted client, or none"),
    408: _error("invalid_request: body too slow"),
    413: _error("invalid_request: body too large"),
    429: _error("slow_down: too many failed authentications from this address (Retry-After)"),
    503: _error("temporarily_unavailable: the store did not answer"),
}
_INTROSPECTION = {
    "type": "object",
    "required": ["active"],
    "description": "active: false alone, or active: true with the token's claims",
    "properties": {
        "active": {"type": "boolean"},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "scope": {"type": "string"},
        "client_id": {"type": "string"},
        "sub": {"type": "string"},
        "iss": {"type": "string"},
        "aud": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "iat": {"type": "integer"},
        "exp": {"type": "integer"},
        "jti": {"type": "string"},
        "workspace": {"type": "string"},
        "isServiceAccount": {"type": "string", "enum": ["true", "false"]},
        "groups": {"type": "array", "items": {"type": "string"}},
    },
}


# --- routes -------------------------------------------------------------------------------


@router.post(
    INTROSPECT_PATH,
    summary="Introspect",
    description="Token introspection (RFC 7662), for a client of the token's workspace.",
    operation_id="introspect",
    response_class=JSONResponse,
    openapi_extra={"requestBody": _FORM_BODY},
    responses={
        200: {
            "description": "Whether the token is active, and if so its claims",
            "headers": _NO_STORE_HEADERS,
            "content": {"application/json": {"schema": _INTROSPECTION}},
        },
        **_ERRORS,
    },
)
async def introspect(request: Request) -> Response:
    runtime = get_runtime(request)
    try:
        token_request, caller = await _authenticated(request, runtime)
        answer = await _in_threadpool(
            introspection.introspect,
            token_request,
            caller,
            tokens=SqlTokenStateStore(runtime.db),
            config=runtime.issuer_config,
            now=runtime.clock.now(),
        )
    except OAuthError as exc:
        return _refuse(exc, INTROSPECT_PATH)
    return JSONResponse(answer.body(), headers=NO_STORE)


@router.post(
    REVOKE_PATH,
    summary="Revoke",
    description=(
        "Token revocation (RFC 7009) by the client the token was issued to; an invalid or "
        "expired token is answered 200 as well, a token of another client 400 "
        "unauthorized_client."
    ),
    operation_id="revoke",
    response_class=Response,
    openapi_extra={"requestBody": _FORM_BODY},
    responses={
        200: {
            "description": "Revoked, or nothing to revoke; empty body",
            "headers": _NO_STORE_HEADERS,
        },
        400: _error(
            "invalid_request (as for introspection), or unauthorized_client: "
            "the token was issued to another client"
        ),
        **{code: answer for code, answer in _ERRORS.items() if code != 400},
    },
)
async def revoke(request: Request) -> Response:
    runtime = get_runtime(request)
    try:
        token_request, caller = await _authenticated(request, runtime, allow_public=True)
        await _in_threadpool(
            introspection.revoke,
            token_request,
            caller,
            tokens=SqlTokenStateStore(runtime.db),
            config=runtime.issuer_config,
            now=runtime.clock.now(),
            refresh_tokens=OidcStore(runtime.db, runtime.settings.issuer),
        )
    except OAuthError as exc:
        return _refuse(exc, REVOKE_PATH)
    return Response(status_code=200, headers=NO_STORE)


async def _authenticated(
    request: Request, runtime: Runtime, *, allow_public: bool = False
) -> tuple[introspection.TokenActionRequest, ClientRecord | PublicClient]:
    """Form read, ``token`` present, client authenticated, in that order. ``allow_public``:
    a registered public client may name itself by ``client_id`` alone (revocation)."""
    try:
        body = await request.body()
    except ClientDisconnect as exc:
        raise InvalidRequestError("Incomplete request body") from exc
    form = parse_form(request.headers.get("content-type"), body)
    token_request = introspection.read_token_request(
        form, request.headers.get("authorization"), allow_none=allow_public
    )
    if token_request.credentials.method == NONE:
        store = OidcStore(runtime.db, runtime.settings.issuer)
        public = await _in_threadpool(authenticate_public_client, token_request.credentials, store)
        return token_request, public
    # The token endpoint's abuse limits hold here too: a client_id cannot be guessed at
    # through these endpoints instead (429 before any secret is checked).
    limiter = runtime.limiter
    ip = request.client.host if request.client else "unknown"
    now = time.time()
    admission = NOTHING_TAKEN
    if limiter is not None:
        admission = await limiter.admit(ip, token_request.credentials.client_id, now)
    failed = False
    try:
        caller = authenticate_client(token_request.credentials, runtime.clients)
    except InvalidClientError:
        failed = True
        raise
    except StoreUnavailableError as exc:
        raise TemporarilyUnavailableError(detail=f"store: {exc}") from exc
    finally:
        if limiter is not None:
            # Nothing is issued here: an authenticated call gives every token back.
            await limiter.settle(admission, "auth_failed" if failed else "other", now)
    return token_request, caller


async def _in_threadpool(func: Callable[..., T], /, *args: object, **kwargs: object) -> T:
    """``func`` off the event loop; a store that does not answer is a 503."""
    try:
        return await run_in_threadpool(func, *args, **kwargs)
    except StoreUnavailableError as exc:
        raise TemporarilyUnavailableError(detail=f"store: {exc}") from exc


def _refuse(exc: OAuthError, path: str) -> Response:
    log.debug("%s refused: %s (%s)", path, exc.error, exc.detail or exc.description)
    return JSONResponse(
        exc.body(), status_code=exc.status_code, headers={**NO_STORE, **exc.headers()}
    )

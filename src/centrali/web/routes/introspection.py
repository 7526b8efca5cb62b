"""``POST /oidc/introspect`` (RFC 7662) and ``POST /oidc/revoke`` (RFC 7009).

Both read the raw form as the token endpoint does (a non-form body is ``invalid_request``, not
FastAPI's 422) and authenticate the client with the same pipeline (``oauth.client_auth``:
abuse limits, batched lookup, failure counts, last use). The token's state and the
revocation write then run in the threadpool on pooled connections. Every answer is
``no-store``; errors are RFC 6749 §5.2 JSON.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from centrali.oauth import introspection
from centrali.oauth.client_auth import Authenticated, ClientAuthRequest
from centrali.oauth.errors import InvalidRequestError
from centrali.oauth.token_endpoint import FORM_CONTENT_TYPE, parse_form
from centrali.store.revocation import SqlTokenStateStore
from centrali.web.runtime import Runtime, get_runtime
from centrali.web.token_asgi import as_oauth_error

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
                    "client_assertion_type": {
                        "type": "string",
                        "description": "private_key_jwt (RFC 7523 §2.2)",
                    },
                    "client_assertion": {"type": "string", "description": "private_key_jwt"},
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
        "accountEpoch": {
            "type": "integer",
            "description": "a service account's token epoch when the token was issued",
        },
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

    async def answer(token_request: introspection.TokenActionRequest, caller: Authenticated) -> Any:
        return await run_in_threadpool(
            introspection.introspect,
            token_request,
            caller.confidential,
            tokens=SqlTokenStateStore(runtime.db),
            config=runtime.issuer_config,
            now=runtime.clock.now(),
        )

    try:
        result = await _authenticated(request, runtime, answer)
    except Exception as exc:
        return _refuse(exc, INTROSPECT_PATH)
    return JSONResponse(result.body(), headers=NO_STORE)


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

    async def answer(
        token_request: introspection.TokenActionRequest, caller: Authenticated
    ) -> None:
        await run_in_threadpool(
            introspection.revoke,
            token_request,
            caller.client,
            tokens=SqlTokenStateStore(runtime.db),
            config=runtime.issuer_config,
            now=runtime.clock.now(),
            refresh_tokens=runtime.oidc_store,
        )

    try:
        await _authenticated(request, runtime, answer, allow_public=True)
    except Exception as exc:
        return _refuse(exc, REVOKE_PATH)
    return Response(status_code=200, headers=NO_STORE)


async def _authenticated(
    request: Request,
    runtime: Runtime,
    then: Callable[[introspection.TokenActionRequest, Authenticated], Awaitable[T]],
    *,
    allow_public: bool = False,
) -> T:
    """Form read, ``token`` present, client authenticated (the token endpoint's pipeline,
    limits and failure counts included), then ``then``, in that order. ``allow_public``: a
    registered public client may name itself by ``client_id`` alone (revocation)."""
    try:
        body = await request.body()
    except ClientDisconnect as exc:
        raise InvalidRequestError("Incomplete request body") from exc
    form = parse_form(request.headers.get("content-type"), body)
    token_request = introspection.read_token_request(form)
    auth_request = ClientAuthRequest(
        form=form,
        authorization=request.headers.get("authorization"),
        ip=request.client.host if request.client else "unknown",
        allow_none=allow_public,
        issues=False,
    )

    async def work(caller: Authenticated) -> T:
        return await then(token_request, caller)

    return await runtime.authenticator.authenticate(auth_request, time.time(), work)


def _refuse(exc: Exception, path: str) -> Response:
    refusal = as_oauth_error(exc, path.rsplit("/", 1)[-1])
    if refusal is None:
        raise exc
    log.debug("%s refused: %s (%s)", path, refusal.error, refusal.detail or refusal.description)
    return JSONResponse(
        refusal.body(), status_code=refusal.status_code, headers={**NO_STORE, **refusal.headers()}
    )

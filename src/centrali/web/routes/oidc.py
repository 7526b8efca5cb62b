"""Auth server endpoints: discovery, JWKS, token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from centrali.oauth.discovery import discovery_document
from centrali.oauth.errors import OAuthError
from centrali.oauth.token_endpoint import TokenRequest, handle_token_request, parse_form
from centrali.web.errors import NO_STORE, oauth_error_response
from centrali.web.runtime import Runtime, get_runtime

router = APIRouter(tags=["oidc"])


@router.get("/.well-known/openid-configuration")
def openid_configuration(request: Request) -> dict[str, Any]:
    """OpenID Connect discovery."""
    return discovery_document(get_runtime(request).settings.issuer)


@router.get("/oidc/jwks")
def jwks(request: Request) -> JSONResponse:
    """The public signing keys (RFC 7517)."""
    return JSONResponse(
        get_runtime(request).keys.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
        media_type="application/jwk-set+json",
    )


def _issue(runtime: Runtime, token_request: TokenRequest) -> dict[str, Any]:
    response = handle_token_request(
        token_request,
        clients=runtime.clients,
        config=runtime.issuer_config,
        clock=runtime.clock,
    )
    return response.body()


@router.post("/oidc/token")
async def token(request: Request) -> Response:
    """OAuth 2.0 token endpoint (client_credentials)."""
    runtime = get_runtime(request)
    try:
        form = parse_form(request.headers.get("content-type"), await request.body())
        token_request = TokenRequest(form=form, authorization=request.headers.get("authorization"))
        body = await run_in_threadpool(_issue, runtime, token_request)
    except OAuthError as exc:
        return oauth_error_response(exc)
    return JSONResponse(body, headers=NO_STORE)

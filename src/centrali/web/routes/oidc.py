"""Auth server endpoints: discovery and JWKS (the token endpoint is web.token_asgi)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from centrali.oauth.discovery import discovery_document
from centrali.web.runtime import get_runtime

router = APIRouter(tags=["oidc"])


@router.get("/.well-known/openid-configuration")
def openid_configuration(request: Request) -> dict[str, Any]:
    """OpenID Connect discovery."""
    settings = get_runtime(request).settings
    return discovery_document(settings.issuer, settings.signing_alg)


@router.get("/oidc/jwks")
def jwks(request: Request) -> JSONResponse:
    """The public signing keys (RFC 7517)."""
    return JSONResponse(
        get_runtime(request).keys.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
        media_type="application/jwk-set+json",
    )

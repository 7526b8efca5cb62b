"""Auth server endpoints: discovery and JWKS (the token endpoint is web.token_asgi)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from centrali.oauth.discovery import discovery_document
from centrali.web.runtime import get_runtime

router = APIRouter(tags=["oidc"])


# Discovery changes only with the configuration: cacheable, briefly (like the JWKS).
DISCOVERY_CACHE = "public, max-age=300"


@router.get("/.well-known/openid-configuration")
def openid_configuration(request: Request, response: Response) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 metadata."""
    settings = get_runtime(request).settings
    response.headers["Cache-Control"] = DISCOVERY_CACHE
    return discovery_document(settings.issuer, settings.signing_alg)


@router.get("/.well-known/oauth-authorization-server")
def oauth_authorization_server(request: Request, response: Response) -> dict[str, Any]:
    """RFC 8414 authorization server metadata: the same document, for clients that look
    here (e.g. oauth4webapi with ``algorithm: 'oauth2'``)."""
    return openid_configuration(request, response)


@router.get(
    "/oidc/jwks",
    response_class=JSONResponse,
    responses={
        200: {
            "description": "The JWK Set",
            "content": {
                "application/jwk-set+json": {
                    "schema": {
                        "type": "object",
                        "required": ["keys"],
                        "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
                    }
                }
            },
        }
    },
)
def jwks(request: Request) -> JSONResponse:
    """The public signing keys (RFC 7517): pending, active, and superseded keys whose tokens
    may still be alive.

    Verifiers may cache this for ``max-age`` (300 s). A rotated-in key is published for the
    lead time (``CENTRALI_KEY_LEAD_TIME``, default 900 s) before it signs; as that exceeds
    the max-age plus the workers' reread interval (``CENTRALI_KEY_REFRESH_SECONDS``, 10 s),
    every cached copy names the new kid before the first token it signs, and the old key
    stays until its last token has expired: a caching verifier never meets an unknown kid.
    """
    return JSONResponse(
        get_runtime(request).keys.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
        media_type="application/jwk-set+json",
    )

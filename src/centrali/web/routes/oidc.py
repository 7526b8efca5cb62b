"""Auth server endpoints: discovery and JWKS (the token endpoint is web.token_asgi)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from centrali.oauth.discovery import discovery_document
from centrali.web.openapi_errors import operation_id
from centrali.web.responses import ProviderMetadata
from centrali.web.runtime import get_runtime

router = APIRouter(tags=["oidc"], generate_unique_id_function=operation_id)


# Discovery changes only with the configuration: cacheable, briefly (like the JWKS).
DISCOVERY_CACHE = "public, max-age=300"


@router.get("/.well-known/openid-configuration")
def openid_configuration(request: Request, response: Response) -> ProviderMetadata:
    """OpenID Connect Discovery 1.0 metadata."""
    settings = get_runtime(request).settings
    response.headers["Cache-Control"] = DISCOVERY_CACHE
    return ProviderMetadata.model_validate(
        discovery_document(settings.issuer, settings.signing_alg)
    )


@router.get("/.well-known/oauth-authorization-server")
def oauth_authorization_server(request: Request, response: Response) -> ProviderMetadata:
    """RFC 8414 authorization server metadata: the same document, for clients that look
    here (e.g. oauth4webapi with ``algorithm: 'oauth2'``)."""
    return openid_configuration(request, response)


class JWKSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"


# The public members of the keys published (RFC 7517 §4, RFC 7518 §6): RSA, EC or OKP.
_JWK = {
    "type": "object",
    "required": ["kty", "kid", "use", "alg"],
    "properties": {
        "kty": {"type": "string", "enum": ["RSA", "EC", "OKP"]},
        "kid": {"type": "string"},
        "use": {"type": "string", "enum": ["sig"]},
        "alg": {"type": "string"},
        "n": {"type": "string"},
        "e": {"type": "string"},
        "crv": {"type": "string"},
        "x": {"type": "string"},
        "y": {"type": "string"},
    },
}


@router.get(
    "/oidc/jwks",
    response_class=JWKSetResponse,
    responses={
        200: {
            "description": "The JWK Set",
            "content": {
                JWKSetResponse.media_type: {
                    "schema": {
                        "type": "object",
                        "required": ["keys"],
                        "properties": {"keys": {"type": "array", "items": _JWK}},
                    }
                }
            },
        }
    },
)
def jwks(request: Request) -> JWKSetResponse:
    """The public signing keys (RFC 7517): pending, active, and superseded keys whose tokens
    may still be alive.

    Verifiers may cache this for ``max-age`` (300 s). A rotated-in key is published for the
    lead time (``CENTRALI_KEY_LEAD_TIME``, default 900 s) before it signs; as that exceeds
    the max-age plus the workers' reread interval (``CENTRALI_KEY_REFRESH_SECONDS``, 10 s),
    every cached copy names the new kid before the first token it signs, and the old key
    stays until its last token has expired: a caching verifier never meets an unknown kid.
    """
    return JWKSetResponse(
        get_runtime(request).keys.jwks(), headers={"Cache-Control": "public, max-age=300"}
    )

"""OpenID Connect Discovery 1.0 §3 / RFC 8414 §2 metadata document."""

from __future__ import annotations

from typing import Any

from centrali.oauth.client_auth import AUTH_METHODS
from centrali.oauth.grants import GRANTS
from centrali.oauth.keys import SIGNING_ALG

SUPPORTED_SCOPES = ("openid", "profile", "email")


def discovery_document(issuer: str, signing_alg: str = SIGNING_ALG) -> dict[str, Any]:
    """The metadata of an issuer whose endpoints live under ``issuer``."""
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oidc/token",
        "jwks_uri": f"{issuer}/oidc/jwks",
        "grant_types_supported": sorted(GRANTS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [signing_alg],
        "scopes_supported": list(SUPPORTED_SCOPES),
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "iat",
            "exp",
            "jti",
            "client_id",
            "scope",
            "workspace",
            "isServiceAccount",
            "groups",
        ],
    }

"""OpenID Connect Discovery 1.0 §3 / RFC 8414 §2 metadata document, with the introspection
(RFC 7662) and revocation (RFC 7009) endpoints, and the provider for users (authorization
code + PKCE, userinfo, RP-initiated logout; RFC 9207 ``iss`` in authorization answers)."""

from __future__ import annotations

from typing import Any

from centrali.oauth.client_assertions import KEY_ALGORITHMS
from centrali.oauth.client_auth import AUTH_METHODS, TOKEN_AUTH_METHODS
from centrali.oauth.grants import GRANTS
from centrali.oauth.keys import SIGNING_ALG
from centrali.oauth.pkce import METHODS as PKCE_METHODS

SUPPORTED_SCOPES = ("openid", "profile", "email")
# What discovery advertises: ``profile`` is accepted (clients that ask for
# ``openid profile email`` by default keep working) but not advertised, as no profile claim
# (``name``, ``preferred_username``, ``updated_at``…) is kept for a user; OpenID Connect
# Discovery 1.0 §3 lets a provider leave a supported scope out of ``scopes_supported``.
ADVERTISED_SCOPES = ("openid", "email")


def discovery_document(issuer: str, signing_alg: str = SIGNING_ALG) -> dict[str, Any]:
    """The metadata of an issuer whose endpoints live under ``issuer``."""
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oidc/token",
        "jwks_uri": f"{issuer}/oidc/jwks",
        "grant_types_supported": sorted(GRANTS),
        "token_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS),
        # private_key_jwt assertions (RFC 7523 §2.2; RFC 8414 §2).
        "token_endpoint_auth_signing_alg_values_supported": list(KEY_ALGORITHMS),
        "authorization_endpoint": f"{issuer}/oidc/authorize",
        "userinfo_endpoint": f"{issuer}/oidc/userinfo",
        "end_session_endpoint": f"{issuer}/oidc/logout",
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": list(PKCE_METHODS),
        "authorization_response_iss_parameter_supported": True,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "introspection_endpoint": f"{issuer}/oidc/introspect",
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(KEY_ALGORITHMS),
        "revocation_endpoint": f"{issuer}/oidc/revoke",
        # Public clients revoke their own refresh (and access) tokens with client_id alone.
        "revocation_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": list(KEY_ALGORITHMS),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [signing_alg],
        "scopes_supported": list(ADVERTISED_SCOPES),
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
            "auth_time",
            "nonce",
            "email",
            "sid",
            "at_hash",
        ],
    }

"""Verify Centrali access tokens in your own service (RFC 9068 / RFC 8725 rules).

    verifier = TokenVerifier("http://127.0.0.1:8000")
    @app.get("/orders")
    def orders(token: VerifiedToken = Depends(require_token(verifier, workspace="acme-corp"))): ...

The verifier discovers the JWKS from the issuer, caches it, and refetches it when a token
names an unknown ``kid`` (at most once per ``min_refetch_interval``), so a key rotation is
picked up without a restart. It checks what the Centrali API checks: RS256 only, our keys
only, ``typ: at+jwt``, ``iss``, ``aud``, ``exp``, the ``workspace`` and ``isServiceAccount``
claims, and the workspace. Revocation of an account cannot be seen offline: ask the
server (introspection) where that matters.
"""

# No `from __future__ import annotations` here: FastAPI must see the real `Request` class
# on the dependency that require_token builds.
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from centrali.oauth.tokens import (
    InvalidTokenError,
    TokenError,
    TokenExpiredError,
    UnknownKeyError,
    VerifiedToken,
    verify_with_public_keys,
)

__all__ = [
    "InvalidTokenError",
    "TokenError",
    "TokenExpiredError",
    "TokenVerifier",
    "VerifiedToken",
    "WrongWorkspaceError",
    "require_token",
]


class WrongWorkspaceError(TokenError):
    """A genuine token, but for another workspace."""


class TokenVerifier:
    """Thread-safe verifier of one issuer's access tokens."""

    def __init__(
        self,
        issuer: str,
        audience: str | None = None,
        jwks_url: str | None = None,
        *,
        http_client: httpx.Client | None = None,
        cache_seconds: float = 300.0,
        min_refetch_interval: float = 30.0,
        leeway: int = 0,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience or self.issuer
        self._jwks_url = jwks_url
        self._http = http_client or httpx.Client(timeout=5.0)
        self._cache_seconds = cache_seconds
        self._min_refetch = min_refetch_interval
        self._leeway = leeway
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def jwks_url(self) -> str:
        if self._jwks_url is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            response = self._http.get(url)
            response.raise_for_status()
            self._jwks_url = str(response.json()["jwks_uri"])
        return self._jwks_url

    def _refresh(self, *, force: bool) -> None:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < (self._min_refetch if force else self._cache_seconds):
                return
            response = self._http.get(self.jwks_url())
            response.raise_for_status()
            keys: dict[str, Any] = {}
            for jwk in response.json().get("keys", []):
                kid = jwk.get("kid")
                if (
                    isinstance(kid, str)
                    and jwk.get("kty") == "RSA"
                    and jwk.get("use", "sig") == "sig"
                ):
                    keys[kid] = jwt.PyJWK(jwk, algorithm="RS256").key
            self._keys = keys
            self._fetched_at = time.monotonic()

    def verify(self, token: str, *, workspace: str | None = None) -> VerifiedToken:
        """The token's checked claims, or InvalidTokenError / TokenExpiredError /
        WrongWorkspaceError."""
        try:
            self._refresh(force=False)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            if not self._keys:
                raise InvalidTokenError("cannot fetch the issuer's keys") from exc
        try:
            verified = self._verify(token)
        except UnknownKeyError:
            try:
                self._refresh(force=True)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                raise InvalidTokenError("cannot fetch the issuer's keys") from exc
            verified = self._verify(token)
        if workspace is not None and verified.workspace != workspace:
            raise WrongWorkspaceError("token belongs to another workspace")
        return verified

    def _verify(self, token: str) -> VerifiedToken:
        return verify_with_public_keys(
            token,
            self._keys,
            issuer=self.issuer,
            audience=self.audience,
            now=time.time(),
            leeway=self._leeway,
        )


def require_token(
    verifier: "TokenVerifier", *, workspace: str | None = None
) -> Callable[..., VerifiedToken]:
    """A FastAPI dependency: the request's verified bearer token, or an HTTPException 401/403
    whose ``detail`` is Centrali's error body (``{"error", "message"}``)."""
    from fastapi import HTTPException, Request

    def dependency(request: Request) -> VerifiedToken:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="centrali"'}
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401, {"error": "unauthorized", "message": "Unauthorized"}, challenge
            )
        try:
            return verifier.verify(token.strip(), workspace=workspace)
        except TokenExpiredError:
            body = {"error": "token_expired", "message": "Token expired"}
            raise HTTPException(401, body, challenge) from None
        except WrongWorkspaceError:
            body = {
                "error": "forbidden",
                "message": "Forbidden: token belongs to another workspace",
            }
            raise HTTPException(403, body) from None
        except TokenError:
            raise HTTPException(
                401, {"error": "unauthorized", "message": "Unauthorized"}, challenge
            ) from None

    return dependency

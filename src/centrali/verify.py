"""Verify Centrali access tokens in your own service (RFC 9068 / RFC 8725 rules).

    verifier = TokenVerifier("http://127.0.0.1:8000")
    @app.get("/orders")
    def orders(token: VerifiedToken = Depends(require_token(verifier, workspace="acme-corp"))): ...

The verifier discovers the JWKS from the issuer, caches it, and refetches it when a token
names an unknown ``kid`` (at most once per ``min_refetch_interval``), so a key rotation is
picked up without a restart. It checks what the Centrali API checks: the issuer's keys only,
each with the one algorithm its type allows (RSA: RS256, EC P-256: ES256, OKP Ed25519:
EdDSA; never ``none`` or HMAC), ``typ: at+jwt``, ``iss``, ``aud``, ``exp``, the
``workspace`` and ``isServiceAccount`` claims, and the workspace. ``require_token`` needs the
workspace (or an explicit ``any_workspace=True``), so a service never takes another
workspace's tokens by omission. Revocation of an account cannot be seen offline: ask the
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

from centrali.oauth.keys import alg_for_key
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


# The keys a JWKS may hold for us, by (kty, crv), and the one algorithm each verifies
# (RFC 7518 §3.3, §3.4; RFC 8037 §3.1). Anything else in the set is ignored.
_JWK_ALGS: dict[tuple[str, str | None], str] = {
    ("RSA", None): "RS256",
    ("EC", "P-256"): "ES256",
    ("OKP", "Ed25519"): "EdDSA",
}


def _verification_key(jwk: Any) -> tuple[str, Any] | None:
    """``(kid, public key)`` of a JWK we may verify with, or None: a signature key (``use``
    absent or ``sig``) of a type in _JWK_ALGS, whose ``alg``, if given, is its type's one
    algorithm, with no private members. The key's algorithm is then fixed by its type
    (``signing.verification_key``), whatever a token's header says."""
    if not isinstance(jwk, dict):
        return None
    kid, kty, crv = jwk.get("kid"), jwk.get("kty"), jwk.get("crv")
    if not isinstance(kid, str) or not isinstance(kty, str):
        return None
    alg = _JWK_ALGS.get((kty, crv if kty != "RSA" else None))
    if alg is None or jwk.get("use", "sig") != "sig" or jwk.get("alg", alg) != alg:
        return None
    if "d" in jwk:  # a private key has no business in a JWKS: refuse to use it
        return None
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
        if alg_for_key(key) != alg:
            return None
        if alg == "RS256" and key.key_size < 2048:  # RFC 7518 §3.3
            return None
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    return kid, key


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
                found = _verification_key(jwk)
                if found is not None:
                    keys[found[0]] = found[1]
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
    verifier: "TokenVerifier", *, workspace: str | None = None, any_workspace: bool = False
) -> Callable[..., VerifiedToken]:
    """A FastAPI dependency: the request's verified bearer token, or an HTTPException 401/403
    whose ``detail`` is Centrali's error body (``{"error", "message"}``).

    ``workspace`` is the one workspace whose tokens are accepted (another's get 403). It is
    required: a service that really accepts every workspace's tokens says so with
    ``any_workspace=True`` (and then checks ``token.workspace`` itself). Passing neither, or
    both, is a TypeError when the dependency is made, not a hole found in production."""
    if any_workspace:
        if workspace is not None:
            raise TypeError("require_token: give workspace or any_workspace=True, not both")
    elif not isinstance(workspace, str) or not workspace:
        raise TypeError(
            "require_token: workspace is required (the workspace whose tokens are accepted); "
            "pass any_workspace=True to accept tokens of every workspace"
        )
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

"""bench/ceiling.py, the bench's bare sign-only app: its tokens must be real RS256 JWTs of
our claims, verified with the JWKS it publishes, or its figure bounds nothing."""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@pytest.fixture
def ceiling(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    monkeypatch.setenv("BENCH_CEILING_KEY", pem.decode())
    sys.modules.pop("bench.ceiling", None)
    module = importlib.import_module("bench.ceiling")
    yield module
    sys.modules.pop("bench.ceiling", None)


def test_ceiling_signs_tokens_the_jwks_verifies(ceiling) -> None:  # type: ignore[no-untyped-def]
    async def ask() -> tuple[dict[str, Any], httpx.Response]:
        transport = httpx.ASGITransport(app=ceiling.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9") as http:
            jwks = (await http.get("/oidc/jwks")).json()
            form = {"grant_type": "client_credentials", "client_id": "ci_x", "client_secret": "s"}
            return jwks, await http.post("/oidc/token", data=form)

    jwks, answer = asyncio.run(ask())
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 25200
    token = body["access_token"]
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": "ceiling", "typ": "at+jwt"}
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="http://127.0.0.1:9")
    assert claims["sub"] == "ci_x" and claims["iss"] == "http://127.0.0.1:9"
    assert claims["exp"] - claims["iat"] == 25200
    assert {"workspace", "isServiceAccount", "groups", "jti"} <= claims.keys()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
            key,
            algorithms=["RS256"],
            audience="http://127.0.0.1:9",
        )

"""``centrali.verify`` (issue 3, part 5) against the real app in-process: the verifier
discovers the JWKS of the app through the Starlette TestClient, accepts the tokens its token
endpoint issues, and refuses what the workspace API refuses."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from centrali.config import Settings
from centrali.oauth.keys import KeySet, SigningKey, generate_private_key_pem, load_signing_key
from centrali.oauth.tokens import TokenSubject, issue_access_token
from centrali.store.db import Database
from centrali.verify import (
    InvalidTokenError,
    TokenExpiredError,
    TokenVerifier,
    VerifiedToken,
    WrongWorkspaceError,
    require_token,
)
from centrali.web.app import create_app
from tests.factories import Factory, bearer

WS = "acme-corp"
OTHER_WS = "globex"
UNAUTHORIZED = {"error": "unauthorized", "message": "Unauthorized"}


class Recorder:
    """The TestClient with a log of the paths the verifier fetched."""

    def __init__(self, client: TestClient) -> None:
        self._client = client
        self.paths: list[str] = []

    def get(self, url: str, **kwargs: Any) -> Any:
        self.paths.append(httpx.URL(url).path)
        return self._client.get(url, **kwargs)


@pytest.fixture
def recorder(client: TestClient) -> Recorder:
    return Recorder(client)


@pytest.fixture
def verifier(recorder: Recorder, settings: Settings) -> TokenVerifier:
    return TokenVerifier(settings.issuer, http_client=recorder)  # type: ignore[arg-type]


@pytest.fixture
def admin(factory: Factory) -> str:
    factory.workspace(WS)
    return factory.admin(WS)


@pytest.fixture
def account(factory: Factory, admin: str) -> dict[str, Any]:
    return factory.service_account(admin, WS, name="Verified Service")


@pytest.fixture
def sa_token(factory: Factory, account: dict[str, Any]) -> str:
    return factory.sa_token(account)


# --- forging tokens from what the server publishes -----------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def published_public_pem(client: TestClient, kid: str) -> bytes:
    jwks = client.get("/oidc/jwks").json()
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == kid]
    key = jwt.PyJWK(jwk).key
    pem: bytes = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


def alg_none(client: TestClient, genuine: str) -> str:
    header, payload, _ = genuine.split(".")
    forged_header = {**unb64(header), "alg": "none"}
    return f"{b64(json.dumps(forged_header).encode())}.{payload}."


def hs256_with_public_key(client: TestClient, genuine: str) -> str:
    header, payload, _ = genuine.split(".")
    fields = unb64(header)
    forged_header = b64(json.dumps({**fields, "alg": "HS256"}).encode())
    signing_input = f"{forged_header}.{payload}"
    secret = published_public_pem(client, fields["kid"])
    return (
        f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
    )


def tampered(client: TestClient, genuine: str) -> str:
    header, payload, signature = genuine.split(".")
    claims = {**unb64(payload), "groups": ["workspace-admins"]}
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


@functools.cache
def stranger() -> SigningKey:
    """A key the server has never seen (generated once: RSA generation is slow)."""
    return load_signing_key(generate_private_key_pem())


def stranger_signed(client: TestClient, genuine: str) -> str:
    claims = unb64(genuine.split(".")[1])
    header = {"kid": unb64(genuine.split(".")[0])["kid"], "typ": "at+jwt"}
    return jwt.encode(claims, stranger().private_key, algorithm="RS256", headers=header)


# --- good tokens ---------------------------------------------------------------------------


def test_verifies_a_service_account_token_from_the_token_endpoint(
    verifier: TokenVerifier, sa_token: str, account: dict[str, Any], settings: Settings
) -> None:
    verified = verifier.verify(sa_token, workspace=WS)
    assert verified.subject == account["clientId"]
    assert verified.client_id == account["clientId"]
    assert verified.workspace == WS
    assert verified.is_service_account is True
    assert verified.groups == ("api-users",)
    assert verified.expires_at - verified.issued_at == settings.token_ttl
    assert verified.claims["iss"] == settings.issuer


def test_verifies_a_user_token(verifier: TokenVerifier, admin: str) -> None:
    verified = verifier.verify(admin, workspace=WS)
    assert verified.is_service_account is False
    assert "workspace-admins" in verified.groups


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_verifies_tokens_of_a_server_signing_with_es256_or_eddsa(
    settings: Settings, db: Database, account: dict[str, Any], admin: str, alg: str
) -> None:
    # CENTRALI_SIGNING_ALG=ES256|EdDSA on the same store: its tokens verify, and so do the
    # user tokens of the RSA key that stays published beside the new one.
    changed = Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        issuer=settings.issuer,
        signing_alg=alg,
    )
    with TestClient(create_app(changed, db=db), base_url=settings.issuer) as fast:
        form = {
            "grant_type": "client_credentials",
            "client_id": account["clientId"],
            "client_secret": account["clientSecret"],
        }
        r = fast.post("/oidc/token", data=form)
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        assert jwt.get_unverified_header(token)["alg"] == alg
        verifier = TokenVerifier(settings.issuer, http_client=Recorder(fast))  # type: ignore[arg-type]
        verified = verifier.verify(token, workspace=WS)
        assert (verified.client_id, verified.is_service_account) == (account["clientId"], True)
        assert verifier.verify(admin, workspace=WS).is_service_account is False
        app = FastAPI()
        caller = require_token(verifier, workspace=WS)

        @app.get("/orders")
        def list_orders(token: VerifiedToken = Depends(caller)) -> dict[str, Any]:  # noqa: B008
            return {"caller": token.subject}

        r = TestClient(app).get("/orders", headers=bearer(token))
        assert (r.status_code, r.json()) == (200, {"caller": account["clientId"]})


def test_discovers_the_jwks_and_fetches_it_once(
    verifier: TokenVerifier, recorder: Recorder, sa_token: str, admin: str
) -> None:
    for token in (sa_token, admin, sa_token):
        verifier.verify(token)
    assert recorder.paths == ["/.well-known/openid-configuration", "/oidc/jwks"]


def test_unknown_kid_refetches_the_jwks_once_then_refuses(
    recorder: Recorder, settings: Settings, sa_token: str
) -> None:
    verifier = TokenVerifier(
        settings.issuer,
        http_client=recorder,  # type: ignore[arg-type]
        min_refetch_interval=0,
    )
    verifier.verify(sa_token)
    claims = unb64(sa_token.split(".")[1])
    token = jwt.encode(
        claims,
        stranger().private_key,
        algorithm="RS256",
        headers={"kid": stranger().kid, "typ": "at+jwt"},
    )
    with pytest.raises(InvalidTokenError):
        verifier.verify(token)
    assert recorder.paths.count("/oidc/jwks") == 2


# --- refusals, the same as the API's -------------------------------------------------------


def test_expired_token_raises_token_expired_error(
    verifier: TokenVerifier, factory: Factory, admin: str
) -> None:
    token = factory.user_token(WS, now=time.time() - 3600, ttl=60)
    with pytest.raises(TokenExpiredError):
        verifier.verify(token, workspace=WS)


def test_other_workspace_raises_wrong_workspace_error(
    verifier: TokenVerifier, factory: Factory, admin: str
) -> None:
    factory.workspace(OTHER_WS)
    other = factory.sa_token(factory.service_account(factory.admin(OTHER_WS), OTHER_WS))
    with pytest.raises(WrongWorkspaceError):
        verifier.verify(other, workspace=WS)
    assert verifier.verify(other, workspace=OTHER_WS).workspace == OTHER_WS


def test_token_of_another_issuer_is_refused(
    verifier: TokenVerifier, factory: Factory, admin: str
) -> None:
    # Signed by a key the server does not publish, for a look-alike issuer.
    who = TokenSubject("ci_x", "ci_x", WS, True, (), "openid")
    token = issue_access_token(
        who,
        keys=KeySet.of(stranger()),
        issuer="http://evil.test",
        audience="http://testserver",
        ttl=60,
        now=time.time(),
    ).token
    with pytest.raises(InvalidTokenError):
        verifier.verify(token, workspace=WS)


FORGERIES = [
    pytest.param(alg_none, id="alg-none"),
    pytest.param(hs256_with_public_key, id="hs256-keyed-with-public-key"),
    pytest.param(tampered, id="tampered-payload"),
    pytest.param(stranger_signed, id="stranger-key-with-our-kid"),
]


@pytest.mark.parametrize("forge", FORGERIES)
def test_forged_tokens_are_refused_by_the_verifier_and_the_api(
    verifier: TokenVerifier,
    client: TestClient,
    sa_token: str,
    forge: Callable[[TestClient, str], str],
) -> None:
    forged = forge(client, sa_token)
    with pytest.raises(InvalidTokenError):
        verifier.verify(forged, workspace=WS)
    r = client.get(f"/workspace/{WS}/api/v1/structures", headers=bearer(forged))
    # The code is fixed; the message says why (RFC 6750 §3: "Unauthorized: <reason>").
    assert r.status_code == 401
    assert r.json()["error"] == UNAUTHORIZED["error"]
    assert r.json()["message"].startswith("Unauthorized: ")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_verifier_and_api_agree_on_good_expired_and_foreign_tokens(
    verifier: TokenVerifier, client: TestClient, factory: Factory, sa_token: str
) -> None:
    factory.workspace(OTHER_WS)
    cases = {
        "good": (sa_token, 200, None),
        "expired": (factory.user_token(WS, now=time.time() - 7200, ttl=60), 401, TokenExpiredError),
        "other-workspace": (factory.admin(OTHER_WS), 403, WrongWorkspaceError),
    }
    for name, (token, status, error) in cases.items():
        r = client.get(f"/workspace/{WS}/api/v1/structures", headers=bearer(token))
        assert r.status_code == status, (name, r.text)
        if error is None:
            assert verifier.verify(token, workspace=WS).workspace == WS
        else:
            with pytest.raises(error):
                verifier.verify(token, workspace=WS)


# --- require_token in a third-party app ----------------------------------------------------


@pytest.fixture
def orders(verifier: TokenVerifier) -> TestClient:
    """A tiny third-party service protecting GET /orders with Centrali tokens."""
    app = FastAPI()
    caller = require_token(verifier, workspace=WS)

    @app.get("/orders")
    def list_orders(token: VerifiedToken = Depends(caller)) -> dict[str, Any]:  # noqa: B008
        return {"caller": token.subject, "orders": []}

    return TestClient(app)


def error_body(response: Any) -> Any:
    """The Centrali error body, unwrapped from FastAPI's ``{"detail": ...}`` if need be."""
    body = response.json()
    return body.get("detail", body) if isinstance(body, dict) else body


def test_require_token_200_with_a_good_token(
    orders: TestClient, sa_token: str, account: dict[str, Any]
) -> None:
    r = orders.get("/orders", headers=bearer(sa_token))
    assert r.status_code == 200, r.text
    assert r.json() == {"caller": account["clientId"], "orders": []}


def test_require_token_401_without_a_token(orders: TestClient) -> None:
    r = orders.get("/orders")
    assert r.status_code == 401, r.text
    assert error_body(r) == UNAUTHORIZED
    assert r.headers["www-authenticate"].lower().startswith("bearer")


def test_require_token_401_with_a_forged_token(
    orders: TestClient, client: TestClient, sa_token: str
) -> None:
    r = orders.get("/orders", headers=bearer(alg_none(client, sa_token)))
    assert r.status_code == 401, r.text
    assert error_body(r) == UNAUTHORIZED


def test_require_token_401_token_expired(orders: TestClient, factory: Factory, admin: str) -> None:
    token = factory.user_token(WS, now=time.time() - 3600, ttl=60)
    r = orders.get("/orders", headers=bearer(token))
    assert r.status_code == 401, r.text
    assert error_body(r) == {"error": "token_expired", "message": "Token expired"}


def test_require_token_403_for_another_workspace(
    orders: TestClient, factory: Factory, admin: str
) -> None:
    factory.workspace(OTHER_WS)
    other = factory.sa_token(factory.service_account(factory.admin(OTHER_WS), OTHER_WS))
    r = orders.get("/orders", headers=bearer(other))
    assert r.status_code == 403, r.text
    body = error_body(r)
    assert body["error"] == "forbidden"
    assert body["message"].startswith("Forbidden: ")

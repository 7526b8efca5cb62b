"""Service accounts with no secret get tokens over HTTP: private_key_jwt (RFC 7523 §2.2), by
hand and through authlib as an independent client, and federated workload tokens from a fake
issuer on 127.0.0.1 (key rotation at the issuer, an issuer that hangs or breaks); assertion
ids are single-use across two servers on one store."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from centrali.config import Settings
from centrali.store.db import Database
from centrali.web.app import create_app
from centrali.web.runtime import Runtime
from tests.conftest import ISSUER
from tests.factories import Factory, bearer
from tests.fake_issuer import FakeIssuer

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_URL = f"{ISSUER}/oidc/token"
ACCOUNTS = "/workspace/acme-corp/api/v1/service-accounts"
STRUCTURES = "/workspace/acme-corp/api/v1/structures"
CI_SUBJECT = "repo:acme/api:ref:refs/heads/main"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The fake issuer serves plain HTTP on 127.0.0.1."""
    return Settings(
        database_url=database_url, data_dir=tmp_path, issuer=ISSUER, federation_allow_http=True
    )


@pytest.fixture
def issuer() -> Iterator[FakeIssuer]:
    with FakeIssuer().serving() as fake:
        yield fake


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def public_jwk(private: Any) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
    return dict(json.loads(algorithm.to_jwk(private.public_key())))


def keyless_account(factory: Factory, admin: str, **credential: Any) -> dict[str, Any]:
    """An account whose only credential, once its secret is deleted, is ``credential``: a key
    (``jwk=``) or a federated credential (``federated=``)."""
    account = factory.service_account(admin, name="No secret")
    base = f"{ACCOUNTS}/{account['id']}"
    if "jwk" in credential:
        r = factory.client.post(
            f"{base}/keys", json={"jwk": credential["jwk"]}, headers=bearer(admin)
        )
    else:
        r = factory.client.post(
            f"{base}/federated-credentials", json=credential["federated"], headers=bearer(admin)
        )
    assert r.status_code == 201, r.text
    account["credential"] = r.json()
    r = factory.client.delete(f"{base}/secrets/{account['secretId']}", headers=bearer(admin))
    assert r.status_code == 204, r.text
    del account["clientSecret"]
    return account


def assertion(client_id: str, key: Any, alg: str, kid: str | None, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def assertion_form(token: str, client_id: str | None = None) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": token,
    }
    if client_id is not None:
        form["client_id"] = client_id
    return form


def assert_token_works(factory: Factory, answer: Any, client_id: str) -> str:
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == client_id
    assert factory.client.get(STRUCTURES, headers=bearer(token)).status_code == 200
    return token


# --- private_key_jwt -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
def test_an_account_without_a_secret_gets_tokens_with_its_key(factory: Factory, kind: str) -> None:
    factory.workspace()
    admin = factory.admin()
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    account = keyless_account(factory, admin, jwk=public_jwk(key))
    kid = account["credential"]["kid"]
    client_id = account["clientId"]
    answer = factory.client.post(
        TOKEN_URL, data=assertion_form(assertion(client_id, key, kind, kid))
    )
    assert_token_works(factory, answer, client_id)
    # client_id in the form is optional, and then must match
    answer = factory.client.post(
        TOKEN_URL, data=assertion_form(assertion(client_id, key, kind, None), client_id)
    )
    assert_token_works(factory, answer, client_id)
    # the same assertion again is a replay
    again = assertion(client_id, key, kind, kid)
    assert factory.client.post(TOKEN_URL, data=assertion_form(again)).status_code == 200
    refused = factory.client.post(TOKEN_URL, data=assertion_form(again))
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "invalid_client",
        "error_description": "Invalid client credentials",
    }
    # a secret is no way in any more
    r = factory.token_response(client_id, "sk_" + "0" * 64)
    assert r.status_code == 401


def test_authlib_private_key_jwt_assertion_gets_a_token(factory: Factory) -> None:
    """An assertion made by authlib (the one its PrivateKeyJWT client auth sends), as an
    independent client's."""
    from authlib.oauth2.rfc7523 import private_key_jwt_sign
    from joserfc.jwk import RSAKey

    factory.workspace()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = keyless_account(factory, factory.admin(), jwk=public_jwk(key))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # authlib dates its assertions an hour ahead; an assertion may live 600 s at most here.
    signed = private_key_jwt_sign(
        RSAKey.import_key(pem),
        account["clientId"],
        TOKEN_URL,
        alg="RS256",
        claims={"exp": int(time.time()) + 300},
    )
    signed = signed.decode() if isinstance(signed, bytes) else signed
    answer = factory.client.post(TOKEN_URL, data=assertion_form(signed, account["clientId"]))
    assert_token_works(factory, answer, account["clientId"])


def test_a_jti_is_single_use_across_two_servers_on_one_store(
    factory: Factory, settings: Settings, db: Database
) -> None:
    factory.workspace()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = keyless_account(factory, factory.admin(), jwk=public_jwk(key))
    token = assertion(account["clientId"], key, "RS256", account["credential"]["kid"])
    other_db = Database(settings.database_url)
    try:
        with TestClient(create_app(settings, db=other_db), base_url=ISSUER) as other:
            assert factory.client.post(TOKEN_URL, data=assertion_form(token)).status_code == 200
            replayed = other.post(TOKEN_URL, data=assertion_form(token))
            assert replayed.status_code == 401, replayed.text
    finally:
        other_db.dispose()


# --- federated workloads ---------------------------------------------------------------------


def federated_account(factory: Factory, issuer: FakeIssuer) -> dict[str, Any]:
    factory.workspace()
    return keyless_account(
        factory,
        factory.admin(),
        federated={"name": "CI deploys", "issuer": issuer.url, "subject": CI_SUBJECT},
    )


def test_a_workload_token_gets_a_token_with_no_stored_secret(
    factory: Factory, issuer: FakeIssuer
) -> None:
    account = federated_account(factory, issuer)
    assert account["credential"]["audience"] == ISSUER  # the default audience
    client_id = account["clientId"]
    workload = issuer.token(CI_SUBJECT, ISSUER)
    for _ in range(2):  # the workload reuses its token
        answer = factory.client.post(TOKEN_URL, data=assertion_form(workload, client_id))
        assert_token_works(factory, answer, client_id)
    # another subject of the same issuer is not trusted
    stranger = issuer.token("repo:acme/api:pull_request", ISSUER)
    assert (
        factory.client.post(TOKEN_URL, data=assertion_form(stranger, client_id)).status_code == 401
    )
    # nor a token for another audience
    elsewhere = issuer.token(CI_SUBJECT, "https://other.example")
    assert (
        factory.client.post(TOKEN_URL, data=assertion_form(elsewhere, client_id)).status_code == 401
    )


def test_a_key_rotation_at_the_issuer_is_picked_up(
    factory: Factory, client: TestClient, issuer: FakeIssuer
) -> None:
    account = federated_account(factory, issuer)
    client_id = account["clientId"]
    first = issuer.token(CI_SUBJECT, ISSUER)
    assert client.post(TOKEN_URL, data=assertion_form(first, client_id)).status_code == 200
    issuer.rotate()  # the old key is gone, a new one signs
    runtime_of(client).issuer_keys.refetch_interval = 0.0  # not a minute in a test
    second = issuer.token(CI_SUBJECT, ISSUER)
    answer = client.post(TOKEN_URL, data=assertion_form(second, client_id))
    assert answer.status_code == 200, answer.text
    # a token signed by the retired key no longer verifies
    assert client.post(TOKEN_URL, data=assertion_form(first, client_id)).status_code == 401


def test_a_broken_issuer_is_503_with_retry_after(
    factory: Factory, client: TestClient, issuer: FakeIssuer
) -> None:
    account = federated_account(factory, issuer)
    issuer.mode = "broken"
    answer = client.post(
        TOKEN_URL, data=assertion_form(issuer.token(CI_SUBJECT, ISSUER), account["clientId"])
    )
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "temporarily_unavailable"
    assert 1 <= int(answer.headers["retry-after"]) <= 10


def test_a_hanging_issuer_holds_only_its_own_requests(
    factory: Factory, client: TestClient, issuer: FakeIssuer
) -> None:
    """While the issuer does not answer, its workload waits (then gets 503) and every other
    client keeps getting tokens at once."""
    account = federated_account(factory, issuer)
    others = [factory.service_account(factory.admin(), name=f"Busy {i}") for i in range(3)]
    runtime_of(client).issuer_keys.timeout = 2.0
    issuer.mode = "hang"
    issuer.hang_seconds = 5.0
    workload = issuer.token(CI_SUBJECT, ISSUER)

    async def race() -> tuple[int, float, list[float]]:
        transport = httpx.ASGITransport(app=client.app, client=("192.0.2.10", 4000))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            started = time.monotonic()
            stuck = asyncio.ensure_future(
                http.post("/oidc/token", data=assertion_form(workload, account["clientId"]))
            )
            await asyncio.sleep(0.2)
            latencies = []
            for _ in range(5):
                for other in others:
                    t0 = time.monotonic()
                    r = await http.post(
                        "/oidc/token",
                        data={
                            "grant_type": "client_credentials",
                            "client_id": other["clientId"],
                            "client_secret": other["clientSecret"],
                        },
                    )
                    assert r.status_code == 200, r.text
                    latencies.append(time.monotonic() - t0)
            answer = await stuck
            return answer.status_code, time.monotonic() - started, latencies

    assert client.portal is not None
    status, waited, latencies = client.portal.call(race)
    assert status == 503
    assert 1.5 <= waited < 4.5  # the fetch timed out (2 s), it did not wait for the issuer
    assert max(latencies) < 0.5, latencies


def test_introspection_accepts_private_key_jwt(factory: Factory) -> None:
    factory.workspace()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = keyless_account(factory, factory.admin(), jwk=public_jwk(key))
    kid, client_id = account["credential"]["kid"], account["clientId"]
    token = factory.client.post(
        TOKEN_URL, data=assertion_form(assertion(client_id, key, "RS256", kid))
    ).json()["access_token"]
    form = {**assertion_form(assertion(client_id, key, "RS256", kid)), "token": token}
    del form["grant_type"]
    r = factory.client.post(f"{ISSUER}/oidc/introspect", data=form)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True

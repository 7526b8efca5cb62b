"""The Python client (issue 3, part 4) against the real app in-process: the Starlette
TestClient is handed to ``CentraliClient`` as its HTTP client, so every token request and API
call goes through the real token endpoint, token checks and store. With a secret, with a
private key (private_key_jwt) and with a federated workload token from a fake issuer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from centrali.client import (
    CentraliAPIError,
    CentraliAuthError,
    CentraliClient,
    CentraliCredentialError,
)
from centrali.config import Settings
from tests.conftest import ISSUER
from tests.factories import Factory, bearer
from tests.fake_issuer import FakeIssuer

WS = "acme-corp"
API = f"/workspace/{WS}/api/v1"
PRODUCTS = {
    "slug": "products",
    "name": "Products",
    "fields": [
        {"name": "name", "type": "string", "required": True},
        {"name": "price", "type": "number", "required": True},
        {"name": "inStock", "type": "boolean"},
    ],
}
LAPTOP = {"name": "Laptop Pro", "price": 1299.99}


@pytest.fixture
def admin(factory: Factory) -> str:
    """An admin's token in a workspace that has the ``products`` structure."""
    factory.workspace(WS)
    token = factory.admin(WS)
    r = factory.client.post(f"{API}/structures", json=PRODUCTS, headers=bearer(token))
    assert r.status_code == 201, r.text
    return token


@pytest.fixture
def account(factory: Factory, admin: str) -> dict[str, Any]:
    """A service account with the default groups (``api-users``), secret included."""
    created = factory.service_account(admin, WS, name="Client SDK")
    assert created["groups"] == ["api-users"]
    return created


def sdk_for(client: TestClient, client_id: str, client_secret: str) -> CentraliClient:
    return CentraliClient(
        client_id,
        client_secret,
        WS,
        base_url="http://testserver",
        http_client=client,  # type: ignore[arg-type]  # an httpx-compatible client
    )


@pytest.fixture
def sdk(client: TestClient, account: dict[str, Any]) -> Iterator[CentraliClient]:
    with sdk_for(client, account["clientId"], account["clientSecret"]) as centrali:
        yield centrali


def rotate(client: TestClient, admin: str, account: dict[str, Any], body: Any) -> dict[str, Any]:
    r = client.post(
        f"{API}/service-accounts/{account['id']}/rotate", json=body, headers=bearer(admin)
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def test_token_url_defaults_to_the_servers_token_endpoint(sdk: CentraliClient) -> None:
    assert sdk.token_url == "http://testserver/oidc/token"


def test_get_access_token_returns_a_cached_service_account_token(
    sdk: CentraliClient, client: TestClient, account: dict[str, Any]
) -> None:
    token = sdk.get_access_token()
    assert token.count(".") == 2
    assert sdk.get_access_token() == token  # each issued token has its own jti: same = cached
    r = client.get(f"{API}/structures", headers=bearer(token))
    assert r.status_code == 200, r.text


def test_guide_flow_with_make_request(sdk: CentraliClient, account: dict[str, Any]) -> None:
    response = sdk.make_request("GET", "/structures")
    assert response.status_code == 200, response.text
    structures = response.json()
    assert [s["slug"] for s in structures["data"]] == ["products"]

    response = sdk.make_request("POST", "/records", json={"recordSlug": "products", "data": LAPTOP})
    assert response.status_code == 201, response.text
    record = response.json()
    assert isinstance(record["id"], int) and not isinstance(record["id"], bool)
    assert record["recordSlug"] == "products"
    assert record["data"] == LAPTOP
    assert record["createdBy"] == account["clientId"]


def test_conveniences_list_structures_and_manage_records(
    sdk: CentraliClient, account: dict[str, Any]
) -> None:
    listed = sdk.list_structures()
    assert [s["slug"] for s in listed["data"]] == ["products"]
    assert listed["total"] == 1
    assert sdk.get_structure("products")["slug"] == "products"

    record = sdk.create_record("products", {**LAPTOP, "inStock": True})
    assert record["createdBy"] == account["clientId"]
    assert sdk.get_record(record["id"])["data"] == {**LAPTOP, "inStock": True}

    updated = sdk.update_record(record["id"], {"name": "Laptop Air", "price": 999})
    assert updated["data"] == {"name": "Laptop Air", "price": 999}

    records = sdk.list_records("products")
    assert [r["id"] for r in records["data"]] == [record["id"]]
    assert records["total"] == 1

    sdk.delete_record(record["id"])
    assert sdk.list_records("products")["total"] == 0


@pytest.mark.parametrize(
    ("call", "status", "error"),
    [
        (lambda sdk: sdk.get_structure("nope"), 404, "not_found"),
        (lambda sdk: sdk.get_record(999999), 404, "not_found"),
        (lambda sdk: sdk.create_record("nope", LAPTOP), 404, "not_found"),
        (lambda sdk: sdk.create_record("products", {"name": "x"}), 400, None),
        (lambda sdk: sdk.create_structure("s", "S", [{"name": "a", "type": "string"}]), 403, None),
        (lambda sdk: sdk.delete_structure("products"), 403, "forbidden"),
    ],
    ids=[
        "unknown-structure",
        "unknown-record",
        "record-of-unknown-structure",
        "missing-required-field",
        "api-users-cannot-create-structures",
        "api-users-cannot-delete-structures",
    ],
)
def test_conveniences_raise_centrali_api_error(
    sdk: CentraliClient, call: Any, status: int, error: str | None
) -> None:
    with pytest.raises(CentraliAPIError) as caught:
        call(sdk)
    assert caught.value.status_code == status
    if error is not None:
        assert caught.value.error == error
    assert caught.value.message


def test_missing_field_error_names_the_field(sdk: CentraliClient) -> None:
    with pytest.raises(CentraliAPIError) as caught:
        sdk.create_record("products", {"name": "Laptop Pro"})
    assert caught.value.status_code == 400
    assert "price" in caught.value.message


def test_wrong_secret_raises_invalid_client(client: TestClient, account: dict[str, Any]) -> None:
    with sdk_for(client, account["clientId"], "sk_" + "0" * 64) as sdk:
        with pytest.raises(CentraliAuthError) as caught:
            sdk.make_request("GET", "/structures")
    assert caught.value.error == "invalid_client"
    assert caught.value.description == "Invalid client credentials"
    assert caught.value.status_code == 401


def test_rotation_without_revoke_tokens_keeps_the_cached_token_working(
    sdk: CentraliClient, client: TestClient, admin: str, account: dict[str, Any]
) -> None:
    token = sdk.get_access_token()
    rotate(client, admin, account, {})
    response = sdk.make_request("GET", "/structures")
    assert response.status_code == 200, response.text
    assert sdk.get_access_token() == token  # no new token was needed


def test_rotate_revoking_tokens_then_401_refetch_with_old_secret_raises_invalid_client(
    sdk: CentraliClient, client: TestClient, admin: str, account: dict[str, Any]
) -> None:
    old_token = sdk.get_access_token()
    assert sdk.make_request("GET", "/structures").status_code == 200
    rotated = rotate(client, admin, account, {"revokeTokens": True})

    # The API refuses the cached token; the client asks for a new one once, with the
    # secret it was built with, which no longer works.
    r = client.get(f"{API}/structures", headers=bearer(old_token))
    assert r.status_code == 401
    with pytest.raises(CentraliAuthError) as caught:
        sdk.make_request("GET", "/structures")
    assert caught.value.error == "invalid_client"
    assert caught.value.description == "Invalid client credentials"

    # A client built with the new secret carries on.
    with sdk_for(client, account["clientId"], rotated["clientSecret"]) as renewed:
        assert renewed.make_request("GET", "/structures").status_code == 200


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("POST", "/revoke"), ("DELETE", "")],
    ids=["revoked", "deleted"],
)
def test_revoked_or_deleted_account_next_call_raises_invalid_client(
    sdk: CentraliClient,
    client: TestClient,
    admin: str,
    account: dict[str, Any],
    method: str,
    suffix: str,
) -> None:
    assert sdk.make_request("GET", "/structures").status_code == 200
    r = client.request(
        method, f"{API}/service-accounts/{account['id']}{suffix}", headers=bearer(admin)
    )
    assert r.status_code in (200, 204), r.text
    with pytest.raises(CentraliAuthError) as caught:
        sdk.list_structures()
    assert caught.value.error == "invalid_client"


# --- private_key_jwt and federated workload tokens --------------------------------------------


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """As conftest's, and the fake issuer may serve plain HTTP on 127.0.0.1."""
    return Settings(
        database_url=database_url, data_dir=tmp_path, issuer=ISSUER, federation_allow_http=True
    )


def add_credential(
    client: TestClient, admin: str, account: dict[str, Any], path: str, body: Any
) -> dict[str, Any]:
    """Registers a key or federated credential, then deletes the account's secret: the new
    credential is its only way in."""
    base = f"{API}/service-accounts/{account['id']}"
    r = client.post(f"{base}/{path}", json=body, headers=bearer(admin))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    r = client.delete(f"{base}/secrets/{account['secretId']}", headers=bearer(admin))
    assert r.status_code == 204, r.text
    return created


def key_pair(kind: str) -> tuple[Any, dict[str, Any]]:
    """A private key and its public JWK."""
    if kind == "RS256":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(key.public_key())
    elif kind == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(key.public_key())
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(key.public_key())
    return key, json.loads(jwk)


@pytest.mark.parametrize("kind", ["RS256", "ES256", "EdDSA"])
def test_private_key_client_gets_tokens_and_uses_the_api(
    client: TestClient, admin: str, account: dict[str, Any], kind: str
) -> None:
    key, jwk = key_pair(kind)
    kid = add_credential(client, admin, account, "keys", {"jwk": jwk})["kid"]
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with CentraliClient(
        account["clientId"],
        workspace_slug=WS,
        base_url="http://testserver",
        private_key=pem,
        key_id=kid,
        http_client=client,  # type: ignore[arg-type]  # an httpx-compatible client
    ) as sdk:
        record = sdk.create_record("products", LAPTOP)
        assert record["createdBy"] == account["clientId"]
        first = sdk.get_access_token()
        sdk._tokens.invalidate()  # a second token request: a new assertion, no replay
        assert sdk.get_access_token() != first
        assert sdk.list_records("products")["total"] == 1

    # Without key_id the server finds the key by its type; a secret no longer works.
    with CentraliClient(
        account["clientId"], workspace_slug=WS, base_url="http://testserver",
        private_key=key, http_client=client,  # type: ignore[arg-type]
    ) as sdk:  # fmt: skip
        assert sdk.get_structure("products")["slug"] == "products"
    with sdk_for(client, account["clientId"], account["clientSecret"]) as old:
        with pytest.raises(CentraliAuthError) as caught:
            old.get_access_token()
    assert caught.value.error == "invalid_client"


def test_private_key_of_another_client_is_refused_with_invalid_client(
    client: TestClient, admin: str, account: dict[str, Any]
) -> None:
    _, jwk = key_pair("ES256")
    add_credential(client, admin, account, "keys", {"jwk": jwk})
    stranger, _ = key_pair("ES256")
    with CentraliClient(
        account["clientId"], workspace_slug=WS, base_url="http://testserver",
        private_key=stranger, http_client=client,  # type: ignore[arg-type]
    ) as sdk:  # fmt: skip
        with pytest.raises(CentraliAuthError) as caught:
            sdk.list_structures()
    assert (caught.value.error, caught.value.status_code) == ("invalid_client", 401)


def test_federated_client_rereads_its_token_file(
    client: TestClient, admin: str, account: dict[str, Any], tmp_path: Path
) -> None:
    subject = "system:serviceaccount:billing:billing-sync"
    with FakeIssuer().serving() as issuer:
        add_credential(
            client, admin, account, "federated-credentials",
            {"name": "billing", "issuer": issuer.url, "subject": subject, "audience": ISSUER},
        )  # fmt: skip
        token_file = tmp_path / "token"
        token_file.write_text(issuer.token(subject, ISSUER) + "\n")
        with CentraliClient(
            account["clientId"], workspace_slug=WS, base_url="http://testserver",
            federated_token_file=token_file, http_client=client,  # type: ignore[arg-type]
        ) as sdk:  # fmt: skip
            assert sdk.create_record("products", LAPTOP)["createdBy"] == account["clientId"]

            # The file now holds another workload's token: reread, and refused.
            token_file.write_text(issuer.token("system:serviceaccount:other:intruder", ISSUER))
            sdk._tokens.invalidate()
            with pytest.raises(CentraliAuthError) as caught:
                sdk.list_structures()
            assert caught.value.error == "invalid_client"

            # Rotated again, to a token of this workload: reread, and accepted.
            token_file.write_text(issuer.token(subject, ISSUER, ttl=600))
            assert sdk.list_records("products")["total"] == 1

            token_file.unlink()
            sdk._tokens.invalidate()
            with pytest.raises(CentraliCredentialError) as missing:
                sdk.list_structures()
            assert missing.value.path == str(token_file)

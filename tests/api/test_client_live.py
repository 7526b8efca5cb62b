"""The Python client (issue 3, part 4) against the real app in-process: the Starlette
TestClient is handed to ``CentraliClient`` as its HTTP client, so every token request and API
call goes through the real token endpoint, token checks and store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from centrali.client import CentraliAPIError, CentraliAuthError, CentraliClient
from tests.factories import Factory, bearer

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

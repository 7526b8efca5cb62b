"""Every JSON route answers a body sent as something else (curl's `-d` without `-H
"Content-Type: application/json"`, a form, text/plain) 415 `unsupported_media_type` with a
sentence naming the content type, never pydantic's "Input should be a valid dictionary",
and changes nothing (issue 13, newcomer item 7)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Factory, bearer

WS = "acme-corp"

# A valid body for each JSON route of the document; placeholders filled per test.
VALID_BODIES: dict[tuple[str, str], Any] = {
    ("post", "/service-accounts"): {"name": "Sent as a form"},
    ("put", "/service-accounts/{account_id}/name"): {"name": "Renamed"},
    ("put", "/service-accounts/{account_id}/description"): {"description": "Described"},
    ("put", "/service-accounts/{account_id}/groups"): {"groups": ["developers"]},
    ("post", "/service-accounts/{account_id}/rotate"): {"gracePeriodSeconds": 60},
    ("post", "/service-accounts/{account_id}/secrets"): {},
    ("post", "/service-accounts/{account_id}/keys"): {
        "jwk": {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        }
    },
    ("post", "/service-accounts/{account_id}/federated-credentials"): {
        "name": "ci",
        "issuer": "https://token.actions.githubusercontent.com",
        "subject": "repo:org/repo:ref:refs/heads/main",
    },
    ("post", "/structures"): {"slug": "notes", "name": "Notes", "fields": []},
    ("put", "/structures/{slug}"): {"name": "Products again"},
    ("post", "/records"): {"recordSlug": "products", "data": {"name": "Laptop"}},
    ("put", "/records/{record_id}"): {"data": {"name": "Desktop"}},
}
PREFIX = "/workspace/{workspace_slug}/api/v1"
NOT_JSON = [
    pytest.param("application/x-www-form-urlencoded", id="form (curl -d)"),
    pytest.param("text/plain", id="text-plain"),
    pytest.param("multipart/form-data; boundary=x", id="multipart"),
]


def json_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path below the API prefix) of every operation taking a JSON body."""
    routes = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                assert path.startswith(PREFIX), path
                routes.append((method, path.removeprefix(PREFIX)))
    return sorted(routes)


@pytest.fixture
def world(factory: Factory) -> dict[str, Any]:
    """A workspace, its admin, an account, a ``products`` structure with one record."""
    factory.workspace(WS)
    admin = factory.admin(WS)
    account = factory.service_account(admin, WS, name="Original")
    api = f"/workspace/{WS}/api/v1"
    r = factory.client.post(
        f"{api}/structures",
        json={
            "slug": "products",
            "name": "Products",
            "fields": [{"name": "name", "type": "string"}],
        },
        headers=bearer(admin),
    )
    assert r.status_code == 201, r.text
    r = factory.client.post(
        f"{api}/records",
        json={"recordSlug": "products", "data": {"name": "Phone"}},
        headers=bearer(admin),
    )
    assert r.status_code == 201, r.text
    return {
        "admin": admin,
        "account_id": account["id"],
        "slug": "products",
        "record_id": r.json()["id"],
    }


def url(path: str, world: dict[str, Any]) -> str:
    return f"/workspace/{WS}/api/v1" + path.format(
        account_id=world["account_id"], slug=world["slug"], record_id=world["record_id"]
    )


def snapshot(client: TestClient, world: dict[str, Any]) -> list[Any]:
    headers = bearer(world["admin"])
    api = f"/workspace/{WS}/api/v1"
    return [
        client.get(f"{api}/service-accounts", headers=headers).json(),
        client.get(f"{api}/service-accounts/{world['account_id']}/secrets", headers=headers).json(),
        client.get(f"{api}/structures", headers=headers).json(),
        client.get(f"{api}/records", headers=headers).json(),
    ]


def test_every_json_route_of_the_document_is_covered(client: TestClient) -> None:
    assert json_routes(client) == sorted(VALID_BODIES)


@pytest.mark.parametrize("content_type", NOT_JSON)
def test_a_json_body_sent_as_another_type_is_415_naming_it(
    factory: Factory, world: dict[str, Any], content_type: str
) -> None:
    client = factory.client
    before = snapshot(client, world)
    for (method, path), body in VALID_BODIES.items():
        headers = bearer(world["admin"]) | {"Content-Type": content_type}
        r = client.request(method, url(path, world), content=json.dumps(body), headers=headers)
        assert r.status_code == 415, (method, path, r.status_code, r.text)
        answer = r.json()
        assert answer["error"] == "unsupported_media_type", answer
        message = answer["message"]
        assert "Content-Type: application/json" in message, message
        assert content_type.split(";")[0] in message, message
        assert "valid dictionary" not in message, message
    assert snapshot(client, world) == before


def test_curl_d_without_a_content_type_header_gets_the_sentence(
    factory: Factory, world: dict[str, Any]
) -> None:
    """What `curl -d '{"name": …}'` sends: its default form content type."""
    r = factory.client.post(
        url("/service-accounts", world),
        content=b'{"name": "x"}',
        headers=bearer(world["admin"]) | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    assert r.json() == {
        "error": "unsupported_media_type",
        "message": "The body must be JSON sent with Content-Type: application/json, "
        "not application/x-www-form-urlencoded",
    }


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"],
)
def test_json_content_types_are_accepted(
    factory: Factory, world: dict[str, Any], content_type: str
) -> None:
    r = factory.client.put(
        url("/service-accounts/{account_id}/name", world),
        content=b'{"name": "Renamed"}',
        headers=bearer(world["admin"]) | {"Content-Type": content_type},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Renamed"


def test_a_bad_json_body_is_still_400_naming_the_field(
    factory: Factory, world: dict[str, Any]
) -> None:
    r = factory.client.put(
        url("/service-accounts/{account_id}/name", world),
        json={"name": 5},
        headers=bearer(world["admin"]),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert r.json()["field"] == "name"


def test_optional_bodies_may_still_be_left_out_whatever_the_content_type(
    factory: Factory, world: dict[str, Any]
) -> None:
    """rotate and add-secret take an optional body: none at all is no media-type question."""
    r = factory.client.post(
        url("/service-accounts/{account_id}/secrets", world),
        headers=bearer(world["admin"]) | {"Content-Type": "text/plain"},
    )
    assert r.status_code == 201, r.text


def test_415_is_in_the_openapi_document(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    create = document["paths"][PREFIX + "/service-accounts"]["post"]
    assert "415" in create["responses"]

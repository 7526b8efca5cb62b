"""Text that no store can hold (NUL, unpaired surrogates) and odd paths: a clear 4xx,
never a 500, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json

import pytest

from tests.factories import Factory, bearer

API = "/workspace/acme-corp/api/v1"


@pytest.fixture
def admin(factory: Factory) -> str:
    factory.workspace()
    return factory.admin()


@pytest.mark.parametrize(
    ("encoded_id", "status", "error"),
    [
        ("ci_%00abc", 401, "invalid_client"),
        ("ci_%01abc", 401, "invalid_client"),
        ("%7F%7F%7F", 401, "invalid_client"),
        ("x" * 600, 401, "invalid_client"),
        ("ci_%ED%B2%80", 400, "invalid_request"),  # an encoded surrogate is not UTF-8
        ("ci_%FF", 400, "invalid_request"),
    ],
    ids=["nul", "control", "del", "too-long", "surrogate", "not-utf8"],
)
def test_token_endpoint_odd_client_id(
    factory: Factory, encoded_id: str, status: int, error: str
) -> None:
    factory.workspace()
    r = factory.client.post(
        "/oidc/token",
        content=f"grant_type=client_credentials&client_id={encoded_id}&client_secret=sk_x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == status, r.text
    assert r.json()["error"] == error


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/structures/a%00b",
        f"{API}/structures/%ED%B2%80",
        f"{API}/records?recordSlug=a%00b",
        f"{API}/records/1%00",
        f"{API}/service-accounts/1%00",
    ],
    ids=["structure-nul", "structure-surrogate", "record-slug-nul", "record-id", "account-id"],
)
def test_odd_path_or_query_is_not_found(admin: str, factory: Factory, path: str) -> None:
    r = factory.client.get(path, headers=bearer(admin))
    assert r.status_code in (400, 404), r.text
    assert "error" in r.json()


@pytest.mark.parametrize(
    "data",
    [{"name": "a\x00b"}, {"name\x00": "x"}, {"name": "ok", "extra": ["\x00"]}],
    ids=["value-nul", "key-nul", "nested-nul"],
)
def test_record_data_with_nul_is_refused(
    admin: str, factory: Factory, data: dict[str, object]
) -> None:
    body = {"slug": "notes", "name": "Notes", "fields": [{"name": "name", "type": "json"}]}
    assert (
        factory.client.post(f"{API}/structures", json=body, headers=bearer(admin)).status_code
        == 201
    )
    r = factory.client.post(
        f"{API}/records",
        content=json.dumps({"recordSlug": "notes", "data": data}),
        headers={**bearer(admin), "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    listed = factory.client.get(f"{API}/records", headers=bearer(admin)).json()
    assert listed["total"] == 0


def test_token_endpoint_other_methods_get_405(factory: Factory) -> None:
    r = factory.client.get("/oidc/token")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.json()["error"] == "invalid_request"


def test_token_endpoint_bug_is_a_fixed_500(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory.workspace()
    account = factory.service_account(factory.admin())

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret-bearing detail that must not leak")

    monkeypatch.setattr("centrali.web.token_asgi.complete_token_request", broken)
    r = factory.token_response(account["clientId"], account["clientSecret"])
    assert r.status_code == 500
    assert r.json() == {"error": "server_error", "error_description": "Internal server error"}
    assert "secret-bearing" not in r.text


def test_token_endpoint_store_down_is_503(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from centrali.store.client_store import SqlClientStore, StoreUnavailableError

    factory.workspace()
    account = factory.service_account(factory.admin())

    def down(self: SqlClientStore, client_ids: object) -> None:
        raise StoreUnavailableError("OperationalError")

    monkeypatch.setattr(SqlClientStore, "find_clients", down)
    r = factory.token_response(account["clientId"], account["clientSecret"])
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"] == "temporarily_unavailable"

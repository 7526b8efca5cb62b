"""Text that no store can hold (NUL, unpaired surrogates) and odd paths: a clear 4xx,
never a 500, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from centrali.services.errors import InvalidBodyError
from centrali.services.structures import FieldSpec, check_record_data
from centrali.services.validation import json_too_deep
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


# --- JSON nested too deeply (issue 12, item 9) ---------------------------------------------

MAX_DEPTH = 32  # services.validation.MAX_JSON_DEPTH, restated: the contract, not the constant


def nested_data(depth: int, kind: str) -> str:
    """The JSON text of record ``data`` nesting ``depth`` levels of objects or arrays, ``data``
    itself the first: ``{"doc": …}`` around ``depth - 1`` more levels, then a 1."""
    inner = depth - 1
    if kind == "arrays":
        doc = "[" * inner + "1" + "]" * inner
    else:
        doc = '{"a":' * inner + "1" + "}" * inner
    return '{"doc":' + doc + "}"


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


@pytest.fixture
def notes(admin: str, factory: Factory) -> int:
    """A structure with one free-form field, and the id of a record of it."""
    body = {"slug": "notes", "name": "Notes", "fields": [{"name": "doc", "type": "json"}]}
    r = factory.client.post(f"{API}/structures", json=body, headers=bearer(admin))
    assert r.status_code == 201, r.text
    r = factory.client.post(
        f"{API}/records", json={"recordSlug": "notes", "data": {"doc": 1}}, headers=bearer(admin)
    )
    assert r.status_code == 201, r.text
    record_id: int = r.json()["id"]
    return record_id


def send_data(factory: Factory, admin: str, method: str, record_id: int, data: str) -> Any:
    headers = {**bearer(admin), "Content-Type": "application/json"}
    if method == "POST":
        content = '{"recordSlug":"notes","data":' + data + "}"
        return factory.client.post(f"{API}/records", content=content, headers=headers)
    content = '{"data":' + data + "}"
    return factory.client.put(f"{API}/records/{record_id}", content=content, headers=headers)


@pytest.mark.parametrize("kind", ["arrays", "objects"])
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_record_data_nested_32_levels_is_stored_and_read_back(
    admin: str, factory: Factory, notes: int, method: str, kind: str
) -> None:
    data = nested_data(MAX_DEPTH, kind)
    assert depth_of(json.loads(data)) == MAX_DEPTH
    r = send_data(factory, admin, method, notes, data)
    assert r.status_code == (201 if method == "POST" else 200), r.text
    record = r.json()
    assert record["data"] == json.loads(data)
    one = factory.client.get(f"{API}/records/{record['id']}", headers=bearer(admin))
    assert one.status_code == 200 and one.json()["data"] == json.loads(data)
    listed = factory.client.get(f"{API}/records", headers=bearer(admin))
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize("kind", ["arrays", "objects"])
@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 500, None], ids=str)
def test_record_data_nested_deeper_is_refused_and_never_stored(
    admin: str, factory: Factory, notes: int, method: str, kind: str, depth: int | None
) -> None:
    # 300 and 500 levels used to be stored, then every read of them (and every list that
    # held them) was a 500; None: as deep as fits in 64 KiB, past what the JSON parser
    # recurses.
    if depth is None:
        depth = (65_536 - 100) // (2 if kind == "arrays" else 6)
    data = nested_data(depth, kind)
    assert len(data) < 65_536 - 64
    r = send_data(factory, admin, method, notes, data)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_request"
    assert "nested too deeply" in body["message"] and "32" in body["message"]
    listed = factory.client.get(f"{API}/records", headers=bearer(admin))
    assert listed.status_code == 200
    assert [item["data"] for item in listed.json()["data"]] == [{"doc": 1}]


def test_no_path_stores_data_nested_past_the_cap() -> None:
    # The service refuses it too, whoever calls it (not only the HTTP schema).
    too_deep: dict[str, object] = {"doc": 1}
    for _ in range(MAX_DEPTH):
        too_deep = {"doc": too_deep}
    with pytest.raises(InvalidBodyError, match="nested too deeply") as caught:
        check_record_data([FieldSpec("doc", "json", False)], too_deep)
    assert caught.value.status_code == 400
    fits = too_deep["doc"]
    assert isinstance(fits, dict)
    assert check_record_data([FieldSpec("doc", "json", False)], fits) == fits
    # The depth check itself never recurses: any depth is safe to ask about.
    abyss: list[object] = []
    for _ in range(100_000):
        abyss = [abyss]
    assert json_too_deep(abyss) and not json_too_deep([[[]]], limit=3)

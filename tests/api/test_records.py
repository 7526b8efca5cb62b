"""Black-box tests of ``/workspace/{slug}/api/v1/records`` (contract: "Workspace API"; the
guide's "Using JWT Tokens in API Requests").

Who may call these routes: test_permissions.py. Cheap variations of one case run as
subtests of one test, so that each store is set up once.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.workspace_api import (
    GUIDE_RECORD,
    OTHER_WS,
    PRODUCTS,
    RECORD_NOT_FOUND,
    STRUCTURE_NOT_FOUND,
    WS,
    Env,
    assert_answer,
    assert_invalid_request,
    assert_recent,
    assert_status,
    claims_of,
    make_env,
    parse_utc,
)
from tests.factories import Factory

RECORD_KEYS = {"id", "recordSlug", "data", "createdAt", "createdBy", "updatedAt"}
LAPTOP = {"name": "Laptop Pro", "price": 1299.99, "inStock": True}


@pytest.fixture
def env(factory: Factory, client: TestClient) -> Env:
    return make_env(factory, client)


@pytest.fixture
def products(env: Env) -> Env:
    """``env`` with the structure the guide's example record fits."""
    env.create_structure(PRODUCTS)
    return env


def post_record(env: Env, slug: str, data: Any, token: str | None = None) -> Any:
    return env.call("POST", "/records", {"recordSlug": slug, "data": data}, token=token)


# --- create --------------------------------------------------------------------------------


def test_create_answers_201_with_the_record(products: Env) -> None:
    env = products
    user = env.user_token(["developers"])
    created = assert_status(post_record(env, "products", LAPTOP, token=user), 201)
    assert set(created) >= RECORD_KEYS, created
    assert isinstance(created["id"], int) and not isinstance(created["id"], bool)
    assert created["recordSlug"] == "products"
    assert created["data"] == LAPTOP
    assert_recent(created["createdAt"])
    assert_recent(created["updatedAt"])
    assert created["createdBy"] == claims_of(user)["sub"]
    assert assert_status(env.record(created["id"]), 200) == created
    assert assert_status(env.record(str(created["id"])), 200) == created

    second = env.create_record("products", {"name": "Mouse", "price": 25})
    assert second["id"] != created["id"]
    assert second["createdBy"] == claims_of(env.admin)["sub"]


def test_guide_example_creates_a_record_as_a_service_account(products: Env) -> None:
    env = products
    # No groups named: the account joins the default group and may write records.
    account = env.service_account(name="Production API Client")
    token = env.sa_token(account)
    assert claims_of(token)["sub"] == account["clientId"]

    listed = assert_status(env.call("GET", "/structures", token=token), 200)
    assert [s["slug"] for s in listed["data"]] == ["products"]

    created = assert_status(env.call("POST", "/records", GUIDE_RECORD, token=token), 201)
    assert created["recordSlug"] == "products"
    assert created["data"] == {"name": "Laptop Pro", "price": 1299.99, "inStock": True}
    assert created["createdBy"] == account["clientId"]
    assert_recent(created["createdAt"])
    r = env.call("GET", f"/records/{created['id']}", token=token)
    assert assert_status(r, 200) == created


# field type -> (values accepted, values refused)
TYPE_CASES: dict[str, tuple[list[Any], list[Any]]] = {
    "string": (["", "Laptop Pro", "ünïcødé ✓", "2025-01-15"], [5, 1.5, True, ["a"], {"a": "b"}]),
    "number": ([0, -3, 1299.99, 1e10, 2**53], ["1299.99", True, False, [1], {"v": 1}]),
    "integer": ([0, -7, 42, 2**53], [1.5, 0.5, "1", True, False, [1]]),
    "boolean": ([True, False], [1, 0, "true", "false", "yes", [True]]),
    "datetime": (
        ["2025-01-15T10:30:00Z", "2025-01-15T10:30:00+02:00", "2025-01-15T10:30:00.250Z"],
        ["yesterday", "", "2025-13-01T10:30:00Z", "2025-01-15T25:00:00Z", 1705326000, True],
    ),
    "json": ([{"a": [1, {"b": None}]}, [1, "x"], "text", 3, 2.5, True, False], []),
}


@pytest.mark.parametrize("ftype", list(TYPE_CASES), ids=str)
def test_values_are_checked_against_the_field_type(
    env: Env, ftype: str, subtests: pytest.Subtests
) -> None:
    env.create_structure(
        {"slug": "things", "name": "Things", "fields": [{"name": "value", "type": ftype}]}
    )
    accepted, refused = TYPE_CASES[ftype]
    for value in accepted:
        with subtests.test(msg=f"{ftype} accepts {value!r}"):
            created = assert_status(post_record(env, "things", {"value": value}), 201)
            if ftype == "datetime":
                assert parse_instant(created["data"]["value"]) == parse_instant(value)
            else:
                assert created["data"] == {"value": value}
                assert type(created["data"]["value"]) is type(value)
    for value in refused:
        with subtests.test(msg=f"{ftype} refuses {value!r}"):
            assert_invalid_request(post_record(env, "things", {"value": value}), "value")
    assert env.list_all("/records")["total"] == len(accepted)


def parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_non_finite_numbers_are_refused(env: Env, subtests: pytest.Subtests) -> None:
    env.create_structure(
        {"slug": "things", "name": "Things", "fields": [{"name": "value", "type": "number"}]}
    )
    for literal in ("NaN", "Infinity", "-Infinity"):
        with subtests.test(msg=literal):
            raw = f'{{"recordSlug": "things", "data": {{"value": {literal}}}}}'
            assert_invalid_request(env.send_raw("POST", "/records", raw))
    assert env.list_all("/records")["total"] == 0


def test_optional_fields_may_be_left_out_or_null(products: Env) -> None:
    env = products
    bare = env.create_record("products", {"name": "Cable", "price": 5})
    assert bare["data"] == {"name": "Cable", "price": 5}
    nulled = env.create_record("products", {"name": "Cable", "price": 5, "inStock": None})
    assert nulled["data"].get("inStock") is None
    assert set(nulled["data"]) <= {"name", "price", "inStock"}


# case -> (data, the field the message must name)
DATA_ERRORS: dict[str, tuple[dict[str, Any], str]] = {
    "missing-required": ({"name": "Laptop Pro"}, "price"),
    "null-required": ({"name": "Laptop Pro", "price": None}, "price"),
    "empty-data": ({"price": 1299.99}, "name"),
    "unknown-field": ({**LAPTOP, "colour": "silver"}, "colour"),
    "unknown-field-only": ({"colour": "silver"}, "colour"),
    "wrong-type": ({**LAPTOP, "inStock": "yes"}, "inStock"),
    "number-as-string": ({**LAPTOP, "price": "1299.99"}, "price"),
}


def test_data_that_does_not_fit_is_400_naming_the_field(
    products: Env, subtests: pytest.Subtests
) -> None:
    env = products
    for case, (data, field) in DATA_ERRORS.items():
        with subtests.test(msg=case):
            assert_invalid_request(post_record(env, "products", data), field)
    assert env.list_all("/records")["total"] == 0


BAD_BODIES: dict[str, Any] = {
    "data-a-list": {"recordSlug": "products", "data": [LAPTOP]},
    "data-a-string": {"recordSlug": "products", "data": "Laptop Pro"},
    "data-a-number": {"recordSlug": "products", "data": 1},
    "data-null": {"recordSlug": "products", "data": None},
    "data-missing": {"recordSlug": "products"},
    "recordSlug-missing": {"data": LAPTOP},
    "recordSlug-not-a-string": {"recordSlug": 7, "data": LAPTOP},
    "unknown-key": {**GUIDE_RECORD, "structure": "products"},
    "body-a-list": [GUIDE_RECORD],
}


def test_a_malformed_body_is_400(products: Env, subtests: pytest.Subtests) -> None:
    env = products
    for case, body in BAD_BODIES.items():
        with subtests.test(msg=case):
            assert_invalid_request(env.call("POST", "/records", body))
    for raw in ("", "null", json.dumps(GUIDE_RECORD)[:-1]):
        with subtests.test(msg=f"raw {raw[:20]!r}"):
            assert_invalid_request(env.send_raw("POST", "/records", raw))
    assert env.list_all("/records")["total"] == 0


def test_a_record_of_an_unknown_structure_is_404(env: Env, subtests: pytest.Subtests) -> None:
    env.create_structure(PRODUCTS)
    for slug in ("orders", "Products", "product"):
        with subtests.test(msg=slug):
            assert_answer(post_record(env, slug, {"name": "x"}), 404, STRUCTURE_NOT_FOUND)
    assert env.list_all("/records")["total"] == 0


# --- list ----------------------------------------------------------------------------------


def test_list_filters_by_structure_and_pages(products: Env, subtests: pytest.Subtests) -> None:
    env = products
    assert assert_status(env.call("GET", "/records"), 200) == {
        "data": [],
        "page": 1,
        "limit": 20,
        "total": 0,
    }
    env.create_structure(
        {"slug": "notes", "name": "Notes", "fields": [{"name": "t", "type": "string"}]}
    )
    laptops = [env.create_record("products", {"name": f"P{i}", "price": i}) for i in range(3)]
    note = env.create_record("notes", {"t": "hello"})

    everything = assert_status(env.call("GET", "/records"), 200)
    assert (everything["page"], everything["limit"], everything["total"]) == (1, 20, 4)
    assert sorted(everything["data"], key=lambda r: r["id"]) == [*laptops, note]

    only_notes = env.list_all("/records", recordSlug="notes")
    assert (only_notes["total"], only_notes["data"]) == (1, [note])

    seen: list[int] = []
    for page, size in ((1, 2), (2, 1), (3, 0)):
        with subtests.test(msg=f"products page {page}"):
            params = {"recordSlug": "products", "page": str(page), "limit": "2"}
            body = assert_status(env.call("GET", "/records", params=params), 200)
            assert (body["page"], body["limit"], body["total"]) == (page, 2, 3)
            assert len(body["data"]) == size, body
            assert all(r["recordSlug"] == "products" for r in body["data"]), body
            seen += [r["id"] for r in body["data"]]
    assert sorted(seen) == [r["id"] for r in laptops]


def test_list_paging_out_of_range_is_400(products: Env, subtests: pytest.Subtests) -> None:
    env = products
    env.create_record("products", {"name": "Cable", "price": 5})
    bad = [("page", "0"), ("page", "-1"), ("page", "abc"), ("limit", "0"), ("limit", "101")]
    bad += [("limit", "abc"), ("limit", "2.5")]
    for name, value in bad:
        with subtests.test(msg=f"{name}={value}"):
            params = {"recordSlug": "products", name: value}
            assert_invalid_request(env.call("GET", "/records", params=params))
            assert_invalid_request(env.call("GET", "/records", params={name: value}))


# --- one record ----------------------------------------------------------------------------


def test_put_replaces_the_data(products: Env) -> None:
    env = products
    created = env.create_record("products", LAPTOP)
    # Another caller edits: the record keeps its creator.
    account = env.service_account(name="Editor")
    token = env.sa_token(account)
    new_data = {"name": "Laptop Pro 2", "price": 999}
    r = env.call("PUT", f"/records/{created['id']}", {"data": new_data}, token=token)
    updated = assert_status(r, 200)
    assert updated["data"] == new_data  # inStock is gone: the data is replaced, not merged
    for key in ("id", "recordSlug", "createdAt", "createdBy"):
        assert updated[key] == created[key], key
    assert parse_utc(updated["updatedAt"]) >= parse_utc(created["updatedAt"])
    assert_recent(updated["updatedAt"])
    assert assert_status(env.record(created["id"]), 200) == updated


def test_put_data_that_does_not_fit_is_400_and_changes_nothing(
    products: Env, subtests: pytest.Subtests
) -> None:
    env = products
    created = env.create_record("products", LAPTOP)
    path = f"/records/{created['id']}"
    for case, (data, field) in DATA_ERRORS.items():
        with subtests.test(msg=case):
            assert_invalid_request(env.call("PUT", path, {"data": data}), field)
            assert assert_status(env.record(created["id"]), 200) == created
    for case, body in {"data-a-list": {"data": [LAPTOP]}, "data-missing": {}}.items():
        with subtests.test(msg=case):
            assert_invalid_request(env.call("PUT", path, body))
            assert assert_status(env.record(created["id"]), 200) == created


def test_delete_is_204_and_then_the_record_is_gone(products: Env) -> None:
    env = products
    gone = env.create_record("products", LAPTOP)
    kept = env.create_record("products", {"name": "Mouse", "price": 25})
    r = env.call("DELETE", f"/records/{gone['id']}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_answer(env.record(gone["id"]), 404, RECORD_NOT_FOUND)
    r = env.call("PUT", f"/records/{gone['id']}", {"data": LAPTOP})
    assert_answer(r, 404, RECORD_NOT_FOUND)
    assert_answer(env.call("DELETE", f"/records/{gone['id']}"), 404, RECORD_NOT_FOUND)
    assert env.list_all("/records")["data"] == [kept]
    assert assert_status(env.record(kept["id"]), 200) == kept


NOT_IDS = ["abc", "1.5", "-1", "0", "1e3", "0x1", "99999999999999999999999", "١", "9999999"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"], ids=str)
def test_an_unknown_or_non_numeric_id_is_404(
    products: Env, method: str, subtests: pytest.Subtests
) -> None:
    env = products
    record = env.create_record("products", LAPTOP)
    body = {"data": LAPTOP} if method == "PUT" else None
    for record_id in NOT_IDS:
        with subtests.test(msg=record_id):
            r = env.call(method, f"/records/{record_id}", body)
            assert_answer(r, 404, RECORD_NOT_FOUND)
    assert assert_status(env.record(record["id"]), 200) == record


def test_records_of_another_workspace_are_invisible(factory: Factory, client: TestClient) -> None:
    env = make_env(factory, client, workspaces=(WS, OTHER_WS))
    theirs_admin = env.user_token(["workspace-admins"], workspace=OTHER_WS)
    env.create_structure(PRODUCTS, token=theirs_admin, workspace=OTHER_WS)
    theirs = env.create_record("products", LAPTOP, token=theirs_admin, workspace=OTHER_WS)
    env.create_structure({"slug": "notes", "name": "Notes", "fields": []})
    mine = env.create_record("notes", {})

    path = f"/records/{theirs['id']}"
    assert_answer(env.call("GET", path), 404, RECORD_NOT_FOUND)
    assert_answer(env.call("PUT", path, {"data": {}}), 404, RECORD_NOT_FOUND)
    assert_answer(env.call("DELETE", path), 404, RECORD_NOT_FOUND)
    # Their structure does not exist here either.
    assert_answer(post_record(env, "products", LAPTOP), 404, STRUCTURE_NOT_FOUND)
    assert env.list_all("/records")["data"] == [mine]

    r = env.call("GET", path, token=theirs_admin, workspace=OTHER_WS)
    assert assert_status(r, 200) == theirs

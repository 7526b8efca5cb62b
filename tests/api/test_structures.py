"""Black-box tests of ``/workspace/{slug}/api/v1/structures`` (contract: "Workspace API").

Who may call these routes: test_permissions.py. Cheap variations of one case run as
subtests of one test, so that each store is set up once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.workspace_api import (
    OTHER_WS,
    PRODUCTS,
    RECORD_NOT_FOUND,
    STRUCTURE_NOT_FOUND,
    WS,
    Env,
    assert_answer,
    assert_conflict,
    assert_invalid_request,
    assert_recent,
    assert_status,
    claims_of,
    make_env,
)
from tests.factories import Factory

STRUCTURE_KEYS = {"id", "slug", "name", "description", "fields", "createdAt", "createdBy"}


@pytest.fixture
def env(factory: Factory, client: TestClient) -> Env:
    return make_env(factory, client)


def simple(slug: str, **extra: Any) -> dict[str, Any]:
    return {"slug": slug, "name": f"Structure {slug}", "fields": [], **extra}


# --- list ----------------------------------------------------------------------------------


def test_list_of_a_new_workspace_is_an_empty_first_page(env: Env) -> None:
    r = env.call("GET", "/structures")
    assert assert_status(r, 200) == {"data": [], "page": 1, "limit": 20, "total": 0}


def test_list_pages_cover_every_structure_once(env: Env, subtests: pytest.Subtests) -> None:
    slugs = {"alpha", "beta", "gamma"}
    for slug in sorted(slugs):
        env.create_structure(simple(slug))

    seen: list[str] = []
    for page, size in ((1, 2), (2, 1)):
        r = env.call("GET", "/structures", params={"page": str(page), "limit": "2"})
        body = assert_status(r, 200)
        assert (body["page"], body["limit"], body["total"]) == (page, 2, 3)
        assert len(body["data"]) == size, body
        seen += [item["slug"] for item in body["data"]]
    assert sorted(seen) == sorted(slugs)

    whole = env.list_all("/structures")
    assert (whole["page"], whole["limit"], whole["total"]) == (1, 100, 3)
    assert {item["slug"] for item in whole["data"]} == slugs
    assert all(STRUCTURE_KEYS <= set(item) for item in whole["data"]), whole

    past_the_end = {"page-3-limit-2": ("3", "2"), "page-2": ("2", None), "far": ("9999", "100")}
    for case, (page_no, limit) in past_the_end.items():
        with subtests.test(msg=case):
            params = {"page": page_no} | ({"limit": limit} if limit else {})
            body = assert_status(env.call("GET", "/structures", params=params), 200)
            expected = {"data": [], "page": int(page_no), "limit": int(limit or 20), "total": 3}
            assert body == expected


BAD_PAGING = {
    "page": ["0", "-1", "abc", "1.5", ""],
    "limit": ["0", "101", "-5", "abc", "1e2"],
}


@pytest.mark.parametrize("name", sorted(BAD_PAGING), ids=str)
def test_list_paging_out_of_range_is_400(env: Env, name: str, subtests: pytest.Subtests) -> None:
    env.create_structure(simple("alpha"))
    for value in BAD_PAGING[name]:
        with subtests.test(msg=f"{name}={value!r}"):
            assert_invalid_request(env.call("GET", "/structures", params={name: value}))


# --- create --------------------------------------------------------------------------------


def test_create_answers_201_with_the_structure(env: Env) -> None:
    body = {
        "slug": "products",
        "name": "Products",
        "description": "What we sell",
        "fields": [
            {"name": "name", "type": "string", "required": True},
            {"name": "price", "type": "number"},
            {"name": "count", "type": "integer", "required": False},
            {"name": "inStock", "type": "boolean"},
            {"name": "since", "type": "datetime"},
            {"name": "extra", "type": "json"},
        ],
    }
    created = assert_status(env.call("POST", "/structures", body), 201)
    assert STRUCTURE_KEYS <= set(created), created
    assert isinstance(created["id"], int) and not isinstance(created["id"], bool)
    assert created["slug"] == "products"
    assert created["name"] == "Products"
    assert created["description"] == "What we sell"
    assert created["fields"] == [
        {"name": "name", "type": "string", "required": True},
        {"name": "price", "type": "number", "required": False},
        {"name": "count", "type": "integer", "required": False},
        {"name": "inStock", "type": "boolean", "required": False},
        {"name": "since", "type": "datetime", "required": False},
        {"name": "extra", "type": "json", "required": False},
    ]
    assert_recent(created["createdAt"])
    assert created["createdBy"] == claims_of(env.admin)["sub"]
    assert assert_status(env.structure("products"), 200) == created

    # description is optional: null when not given.
    notes = env.create_structure({"slug": "notes", "name": "Notes", "fields": []})
    assert notes["description"] is None
    assert notes["fields"] == []
    assert notes["id"] != created["id"]
    listed = {item["slug"]: item for item in env.list_all("/structures")["data"]}
    assert listed == {"products": created, "notes": notes}


def test_create_with_a_taken_slug_is_409_and_keeps_the_first(env: Env) -> None:
    first = env.create_structure(PRODUCTS)
    assert_conflict(env.call("POST", "/structures", simple("products", description="second")))
    assert assert_status(env.structure("products"), 200) == first
    assert env.list_all("/structures")["total"] == 1


def test_workspaces_do_not_share_structures(factory: Factory, client: TestClient) -> None:
    env = make_env(factory, client, workspaces=(WS, OTHER_WS))
    other_admin = env.user_token(["workspace-admins"], workspace=OTHER_WS)
    mine = env.create_structure(PRODUCTS)
    # The same slug is free in another workspace, and a structure there is invisible here.
    theirs = env.create_structure(simple("products"), token=other_admin, workspace=OTHER_WS)
    env.create_structure(simple("only-theirs"), token=other_admin, workspace=OTHER_WS)
    assert theirs["id"] != mine["id"]
    assert assert_status(env.structure("products"), 200) == mine
    assert_answer(env.structure("only-theirs"), 404, STRUCTURE_NOT_FOUND)
    assert env.list_all("/structures")["data"] == [mine]
    r = env.call("GET", "/structures/products", token=other_admin, workspace=OTHER_WS)
    assert assert_status(r, 200) == theirs


def _with_field(**spec: Any) -> dict[str, Any]:
    return simple("things", fields=[{"name": "title", "type": "string"}, spec])


# aspect -> case -> (body, text the message must contain)
INVALID_CREATE: dict[str, dict[str, tuple[Any, str | None]]] = {
    "slug": {
        "uppercase": (simple("Products"), "slug"),
        "space": (simple("my things"), "slug"),
        "leading-dash": (simple("-things"), "slug"),
        "underscore": (simple("my_things"), "slug"),
        "empty": (simple(""), "slug"),
        "missing": ({"name": "Things", "fields": []}, "slug"),
        "not-a-string": (simple(42), "slug"),  # type: ignore[arg-type]
    },
    "name": {
        "empty": ({"slug": "things", "name": "", "fields": []}, "name"),
        "blank": ({"slug": "things", "name": "   ", "fields": []}, "name"),
        "missing": ({"slug": "things", "fields": []}, "name"),
        "null": ({"slug": "things", "name": None, "fields": []}, "name"),
    },
    "field-type": {
        "unknown": (_with_field(name="size", type="float"), "type"),
        "uppercase": (_with_field(name="size", type="String"), "type"),
        "missing": (_with_field(name="size"), "type"),
    },
    "field-name": {
        "duplicate": (_with_field(name="title", type="integer"), "title"),
        "starts-with-digit": (_with_field(name="1st", type="string"), "name"),
        "space": (_with_field(name="first name", type="string"), "name"),
        "dash": (_with_field(name="first-name", type="string"), "name"),
        "empty": (_with_field(name="", type="string"), "name"),
        "missing": (_with_field(type="string"), "name"),
    },
    "field-shape": {
        "required-not-boolean": (_with_field(name="n", type="integer", required="yes"), "required"),
        "unknown-key": (_with_field(name="n", type="integer", default=3), None),
        "field-not-an-object": (simple("things", fields=["title"]), "fields"),
        "fields-not-a-list": (simple("things", fields={"name": "string"}), "fields"),
    },
    "body": {
        "unknown-top-level-key": (simple("things", color="red"), None),
        "description-not-a-string": (simple("things", description=5), "description"),
        "a-list": ([simple("things")], None),
        "a-string": ("things", None),
    },
}


@pytest.mark.parametrize("aspect", list(INVALID_CREATE), ids=str)
def test_create_with_an_invalid_body_is_400_and_creates_nothing(
    env: Env, aspect: str, subtests: pytest.Subtests
) -> None:
    for case, (body, names) in INVALID_CREATE[aspect].items():
        with subtests.test(msg=f"{aspect}: {case}"):
            assert_invalid_request(env.call("POST", "/structures", body), names)
    assert env.list_all("/structures")["total"] == 0


def test_create_with_malformed_json_is_400(env: Env, subtests: pytest.Subtests) -> None:
    for raw in ("", "null", '{"slug": "things",', json.dumps(simple("things"))[:-1] + ",}"):
        with subtests.test(msg=repr(raw)):
            assert_invalid_request(env.send_raw("POST", "/structures", raw))
    assert env.list_all("/structures")["total"] == 0


# --- get -----------------------------------------------------------------------------------


def test_get_an_unknown_structure_is_404(env: Env, subtests: pytest.Subtests) -> None:
    env.create_structure(PRODUCTS)
    for slug in ("nope", "Products", "products-2", "product"):
        with subtests.test(msg=slug):
            assert_answer(env.structure(slug), 404, STRUCTURE_NOT_FOUND)


# --- update --------------------------------------------------------------------------------


def test_put_changes_name_description_and_fields(env: Env) -> None:
    created = env.create_structure(PRODUCTS)
    new_fields = [
        {"name": "name", "type": "string", "required": True},
        {"name": "sku", "type": "string", "required": True},
        {"name": "weight", "type": "number"},
    ]
    body = {"name": "Catalogue", "description": "Everything", "fields": new_fields}
    updated = assert_status(env.call("PUT", "/structures/products", body), 200)
    assert STRUCTURE_KEYS <= set(updated), updated
    assert updated["id"] == created["id"]
    assert updated["slug"] == "products"
    assert updated["name"] == "Catalogue"
    assert updated["description"] == "Everything"
    assert updated["fields"] == [
        {"name": "name", "type": "string", "required": True},
        {"name": "sku", "type": "string", "required": True},
        {"name": "weight", "type": "number", "required": False},
    ]
    assert updated["createdAt"] == created["createdAt"]
    assert updated["createdBy"] == created["createdBy"]
    assert assert_status(env.structure("products"), 200) == updated


def test_put_changes_only_what_it_is_given(env: Env) -> None:
    created = env.create_structure(PRODUCTS)
    renamed = assert_status(env.call("PUT", "/structures/products", {"name": "Goods"}), 200)
    assert renamed["name"] == "Goods"
    assert renamed["description"] == created["description"]
    assert renamed["fields"] == created["fields"]

    cleared = assert_status(env.call("PUT", "/structures/products", {"description": None}), 200)
    assert cleared["description"] is None
    assert cleared["name"] == "Goods"
    assert cleared["fields"] == created["fields"]
    assert assert_status(env.structure("products"), 200)["description"] is None

    unchanged = assert_status(env.call("PUT", "/structures/products", {}), 200)
    assert {k: unchanged[k] for k in ("name", "description", "fields")} == {
        "name": "Goods",
        "description": None,
        "fields": created["fields"],
    }


def test_put_fields_govern_records_written_afterwards(env: Env) -> None:
    env.create_structure(PRODUCTS)
    fields = [*PRODUCTS["fields"], {"name": "sku", "type": "string", "required": True}]
    assert_status(env.call("PUT", "/structures/products", {"fields": fields}), 200)
    data = {"name": "Laptop Pro", "price": 1299.99}
    r = env.call("POST", "/records", {"recordSlug": "products", "data": data})
    assert_invalid_request(r, "sku")
    env.create_record("products", {**data, "sku": "LP-1"})


INVALID_PUT: dict[str, tuple[dict[str, Any], str | None]] = {
    "empty-name": ({"name": ""}, "name"),
    "blank-name": ({"name": "  "}, "name"),
    "unknown-field-type": ({"fields": [{"name": "a", "type": "decimal"}]}, "type"),
    "duplicate-field": (
        {"fields": [{"name": "a", "type": "string"}, {"name": "a", "type": "string"}]},
        "a",
    ),
    "bad-field-name": ({"fields": [{"name": "9a", "type": "string"}]}, "name"),
    "slug-cannot-change": ({"slug": "renamed"}, None),
    "unknown-key": ({"colour": "red"}, None),
}


def test_put_with_an_invalid_body_is_400_and_changes_nothing(
    env: Env, subtests: pytest.Subtests
) -> None:
    created = env.create_structure(PRODUCTS)
    for case, (body, names) in INVALID_PUT.items():
        with subtests.test(msg=case):
            assert_invalid_request(env.call("PUT", "/structures/products", body), names)
            assert assert_status(env.structure("products"), 200) == created


def test_put_an_unknown_structure_is_404(env: Env) -> None:
    assert_answer(env.call("PUT", "/structures/nope", {"name": "Nope"}), 404, STRUCTURE_NOT_FOUND)
    assert_answer(env.structure("nope"), 404, STRUCTURE_NOT_FOUND)


# --- delete --------------------------------------------------------------------------------


def test_delete_an_empty_structure_is_204_and_then_it_is_gone(env: Env) -> None:
    env.create_structure(PRODUCTS)
    env.create_structure(simple("keep"))
    r = env.call("DELETE", "/structures/products")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_answer(env.structure("products"), 404, STRUCTURE_NOT_FOUND)
    assert [s["slug"] for s in env.list_all("/structures")["data"]] == ["keep"]
    assert_answer(env.call("DELETE", "/structures/products"), 404, STRUCTURE_NOT_FOUND)
    # The slug is free again.
    env.create_structure(PRODUCTS)


def test_delete_a_structure_with_records_is_409_and_keeps_both(env: Env) -> None:
    structure = env.create_structure(PRODUCTS)
    record = env.create_record("products", {"name": "Laptop Pro", "price": 1299.99})
    for params in (None, {"force": "false"}):
        assert_conflict(env.call("DELETE", "/structures/products", params=params))
    assert assert_status(env.structure("products"), 200) == structure
    assert assert_status(env.record(record["id"]), 200) == record


def test_delete_with_force_deletes_the_records_too(env: Env) -> None:
    env.create_structure(PRODUCTS)
    env.create_structure(simple("other", fields=[{"name": "n", "type": "integer"}]))
    gone = [env.create_record("products", {"name": f"P{i}", "price": i}) for i in range(2)]
    kept = env.create_record("other", {"n": 1})

    r = env.call("DELETE", "/structures/products", params={"force": "true"})
    assert r.status_code == 204, r.text
    assert_answer(env.structure("products"), 404, STRUCTURE_NOT_FOUND)
    for record in gone:
        assert_answer(env.record(record["id"]), 404, RECORD_NOT_FOUND)
    assert env.list_all("/records")["data"] == [kept]
    # A structure of the same slug starts empty.
    env.create_structure(PRODUCTS)
    assert env.list_all("/records", recordSlug="products")["total"] == 0


def test_delete_an_unknown_structure_is_404(env: Env) -> None:
    assert_answer(env.call("DELETE", "/structures/nope"), 404, STRUCTURE_NOT_FOUND)
    r = env.call("DELETE", "/structures/nope", params={"force": "true"})
    assert_answer(r, 404, STRUCTURE_NOT_FOUND)

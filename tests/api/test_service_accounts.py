"""Black-box tests of the service-account management API (contract: "Service-account
management"), through HTTP only, plus the token endpoint where an action must show there.

Authentication and authorization of these routes: test_management_auth.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx  # the HTTP library of Starlette's TestClient
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from centrali.services.audit import list_events
from centrali.services.validation import PageRequest
from centrali.store.db import Database
from tests.factories import Factory, bearer

WS = "acme-corp"
BASE = f"/workspace/{WS}/api/v1/service-accounts"
CLIENT_ID_RE = re.compile(r"^ci_[a-z0-9]{20}$")
SECRET_RE = re.compile(r"^sk_[0-9a-f]{64}$")
ISO_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
# The contract: "400/422 for invalid bodies".
INVALID_BODY = {400, 422}
UNSUPPORTED_TYPE = 415  # a body sent as anything but JSON
NOT_FOUND = {"error": "not_found", "message": "Service account not found"}
ACCOUNT_FIELDS = {
    "id",
    "clientId",
    "name",
    "description",
    "workspace",
    "grant_types",
    "scope",
    "groups",
    "status",
    "createdAt",
    "createdBy",
}
# The guide's rotate answer, plus the new secret's id (several secrets per account).
ROTATION_FIELDS = {"id", "clientId", "clientSecret", "secretId", "name", "workspace", "updatedAt"}
GUIDE_BODY = {
    "name": "Production API Client",
    "description": "Main service account for production API access",
    "grant_types": ["client_credentials"],
    "scope": "openid",
}


# --- helpers -------------------------------------------------------------------------------


@dataclass
class Env:
    """One workspace with an admin; requests go through a client that turns a server
    exception into the 500 answer a real client would see, so tests can assert on it."""

    factory: Factory
    api: TestClient
    db: Database
    admin: str

    @property
    def admin_sub(self) -> str:
        return subject_of(self.admin)

    def create(self, **body: Any) -> dict[str, Any]:
        return self.factory.service_account(self.admin, **body)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: str | bytes | None = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = bearer(token or self.admin)
        if raw is not None:
            headers["Content-Type"] = content_type
            return self.api.request(method, path, content=raw, headers=headers, params=params)
        if body is not None:
            return self.api.request(method, path, json=body, headers=headers, params=params)
        return self.api.request(method, path, headers=headers, params=params)

    def get(self, account_id: int | str) -> httpx.Response:
        return self.call("GET", f"{BASE}/{account_id}")

    def token(self, client_id: str, secret: str) -> httpx.Response:
        response: httpx.Response = self.factory.token_response(client_id, secret)
        return response

    def list_all(self) -> dict[str, Any]:
        r = self.call("GET", BASE, params={"limit": "100"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def audit(self) -> list[dict[str, Any]]:
        events, total = list_events(self.db, workspace_slug=WS, page=PageRequest(limit=100))
        assert total == len(events)
        return [e.as_dict() for e in events]

    def state(self) -> dict[str, Any]:
        """Everything a refused request must leave alone: the accounts and the audit log."""
        return {"accounts": self.list_all(), "audit": self.audit()}


@pytest.fixture
def api(client: TestClient) -> Iterator[TestClient]:
    # Same app and store as `client` (already started by it); 500s come back as answers.
    yield TestClient(client.app, base_url=str(client.base_url), raise_server_exceptions=False)


@pytest.fixture
def env(factory: Factory, api: TestClient, db: Database) -> Env:
    factory.workspace(WS)
    return Env(factory=factory, api=api, db=db, admin=factory.admin(WS))


def subject_of(token: str) -> str:
    sub: str = jwt.decode(token, options={"verify_signature": False})["sub"]
    return sub


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def parse_utc(value: str) -> datetime:
    assert ISO_UTC_RE.match(value), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None and parsed.utcoffset() == UTC.utcoffset(None)
    return parsed


def assert_recent(value: str, slack: float = 120.0) -> None:
    assert abs(parse_utc(value).timestamp() - time.time()) < slack, value


def assert_error(r: httpx.Response, statuses: set[int] | int, error: str | None = None) -> None:
    """A JSON ``{"error", "message"}`` answer with one of ``statuses``."""
    wanted = {statuses} if isinstance(statuses, int) else statuses
    assert r.status_code in wanted, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    if error is not None:
        assert body["error"] == error, body


def assert_not_found(r: httpx.Response) -> None:
    assert r.status_code == 404, (r.status_code, r.text)
    assert r.json() == NOT_FOUND


def assert_invalid_client(r: httpx.Response) -> None:
    assert r.status_code == 401, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == "invalid_client", body
    assert body["error_description"] == "Invalid client credentials", body


def assert_token_ok(r: httpx.Response, account: dict[str, Any]) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    claims = claims_of(body["access_token"])
    assert claims["sub"] == account["clientId"]
    assert claims["workspace"] == WS
    assert claims["isServiceAccount"] == "true"
    return claims


def without_secret(account: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in account.items() if k not in ("clientSecret", "secretId")}


def assert_no_secret_material(payload: Any, secrets: list[str]) -> None:
    """No secret value, no stored hash, and no secret-like key anywhere in ``payload``."""
    dumped = json.dumps(payload)
    for secret in secrets:
        assert secret not in dumped
    assert "sha256$" not in dumped
    assert not re.search(r'"sk_[0-9a-f]{16,}', dumped), dumped

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                # A secret's id (never the secret) is named in the answers and audit events.
                if key != "secretId":
                    assert "secret" not in key.lower() and "hash" not in key.lower(), key
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(payload)


# --- create --------------------------------------------------------------------------------


def test_create_guide_example_answers_201_with_documented_fields(env: Env) -> None:
    before = time.time()
    r = env.call("POST", BASE, GUIDE_BODY)
    assert r.status_code == 201, r.text
    body = r.json()
    assert ACCOUNT_FIELDS | {"clientSecret"} <= body.keys()
    assert type(body["id"]) is int
    assert CLIENT_ID_RE.match(body["clientId"]), body["clientId"]
    assert SECRET_RE.match(body["clientSecret"]), body["clientSecret"]
    assert body["name"] == GUIDE_BODY["name"]
    assert body["description"] == GUIDE_BODY["description"]
    assert body["workspace"] == WS
    assert body["grant_types"] == ["client_credentials"]
    assert body["scope"] == "openid"
    assert body["groups"] == ["api-users"]
    assert body["status"] == "active"
    created = parse_utc(body["createdAt"]).timestamp()
    assert before - 2 <= created <= time.time() + 2
    assert body["createdBy"] == env.admin_sub


def test_create_with_name_only_applies_documented_defaults(env: Env) -> None:
    r = env.call("POST", BASE, {"name": "Minimal"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert "description" in body and body["description"] is None
    assert body["grant_types"] == ["client_credentials"]
    assert body["scope"] == "openid"
    assert body["groups"] == ["api-users"]
    assert body["status"] == "active"


def test_create_with_explicit_null_description(env: Env) -> None:
    body = env.create(name="Null description", description=None)
    assert body["description"] is None


def test_created_secret_obtains_a_token_with_the_default_groups(env: Env) -> None:
    account = env.create(name="Token user")
    claims = assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)
    assert claims["groups"] == ["api-users"]


def test_create_with_empty_groups_gives_no_group(env: Env) -> None:
    account = env.create(name="No groups", groups=[])
    assert account["groups"] == []
    assert env.get(account["id"]).json()["groups"] == []
    claims = assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)
    assert claims["groups"] == []


def test_create_with_named_groups(env: Env) -> None:
    account = env.create(name="Devs", groups=["developers", "api-users"])
    assert sorted(account["groups"]) == ["api-users", "developers"]
    assert sorted(env.get(account["id"]).json()["groups"]) == ["api-users", "developers"]
    claims = assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)
    assert sorted(claims["groups"]) == ["api-users", "developers"]


def test_create_gives_each_account_its_own_id_client_id_and_secret(env: Env) -> None:
    accounts = [env.create(name=f"Account {i}") for i in range(5)]
    assert len({a["id"] for a in accounts}) == 5
    assert len({a["clientId"] for a in accounts}) == 5
    assert len({a["clientSecret"] for a in accounts}) == 5
    # Each secret belongs to its own client only.
    assert_invalid_client(env.token(accounts[0]["clientId"], accounts[1]["clientSecret"]))


def test_create_accepts_name_of_200_and_description_of_2000_characters(env: Env) -> None:
    name, description = "n" * 200, "d" * 2000
    account = env.create(name=name, description=description)
    got = env.get(account["id"]).json()
    assert (got["name"], got["description"]) == (name, description)


def test_create_accepts_non_ascii_text(env: Env) -> None:
    name, description = "Zürich 集成 ✓", "Beschreibung – ünïcödé 😀"
    account = env.create(name=name, description=description)
    got = env.get(account["id"]).json()
    assert (got["name"], got["description"]) == (name, description)


# --- list ----------------------------------------------------------------------------------


def test_list_of_empty_workspace(env: Env) -> None:
    r = env.call("GET", BASE)
    assert r.status_code == 200, r.text
    assert r.json() == {"data": [], "page": 1, "limit": 20, "total": 0, "nextAfter": None}


@pytest.fixture
def accounts25(env: Env) -> list[dict[str, Any]]:
    return [env.create(name=f"Account {i:02d}") for i in range(25)]


def test_list_defaults_to_page_1_of_20(env: Env, accounts25: list[dict[str, Any]]) -> None:
    r = env.call("GET", BASE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["page"], body["limit"], body["total"]) == (1, 20, 25)
    assert len(body["data"]) == 20


def test_list_pages_are_disjoint_and_cover_every_account(
    env: Env, accounts25: list[dict[str, Any]]
) -> None:
    seen: list[int] = []
    for page, size in ((1, 10), (2, 10), (3, 5)):
        r = env.call("GET", BASE, params={"page": str(page), "limit": "10"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["page"], body["limit"], body["total"]) == (page, 10, 25)
        assert len(body["data"]) == size
        seen += [item["id"] for item in body["data"]]
    assert sorted(seen) == sorted(a["id"] for a in accounts25)


def test_list_limit_100_is_allowed(env: Env, accounts25: list[dict[str, Any]]) -> None:
    r = env.call("GET", BASE, params={"limit": "100"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["page"], body["limit"], body["total"]) == (1, 100, 25)
    assert {i["id"] for i in body["data"]} == {a["id"] for a in accounts25}


@pytest.mark.parametrize(
    ("page", "limit"),
    [
        pytest.param("3", None, id="page-3-default-limit"),
        pytest.param("2", "100", id="page-2-limit-100"),
        pytest.param("4", "10", id="page-4-limit-10"),
        pytest.param("10000", "1", id="far-page"),
    ],
)
def test_list_page_past_the_end_is_200_and_empty(
    env: Env, page: str, limit: str | None, accounts25: list[dict[str, Any]]
) -> None:
    params = {"page": page} | ({"limit": limit} if limit else {})
    r = env.call("GET", BASE, params=params)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "data": [],
        "page": int(page),
        "limit": int(limit) if limit else 20,
        "total": 25,
        "nextAfter": None,
    }


def test_keyset_pages_walk_every_account_once(env: Env, accounts25: list[dict[str, Any]]) -> None:
    """``after`` + ``nextAfter``: the same accounts, in the same order, as numbered pages."""
    env.call("DELETE", f"{BASE}/{accounts25[3]['id']}")
    live = [a["id"] for a in accounts25 if a["id"] != accounts25[3]["id"]]
    seen: list[int] = []
    after = "0"
    pages = 0
    while after is not None:
        r = env.call("GET", BASE, params={"after": after, "limit": "10"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert "page" not in body
        assert (body["after"], body["limit"], body["total"]) == (int(after), 10, 24)
        seen += [item["id"] for item in body["data"]]
        after = None if body["nextAfter"] is None else str(body["nextAfter"])
        pages += 1
        assert pages < 10
    assert seen == sorted(live)
    numbered = env.call("GET", BASE, params={"page": "2", "limit": "10"}).json()
    assert (
        numbered["data"]
        == env.call("GET", BASE, params={"after": str(seen[9]), "limit": "10"}).json()["data"]
    )
    assert numbered["nextAfter"] == seen[19]


@pytest.mark.parametrize("after", ["-1", "x", "1.5", "9" * 20, ""])
def test_keyset_after_must_be_an_id(env: Env, after: str) -> None:
    r = env.call("GET", BASE, params={"after": after})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "after"


def test_keyset_after_and_page_together_are_refused(env: Env) -> None:
    r = env.call("GET", BASE, params={"after": "1", "page": "2"})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "after"


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": "101"}, id="limit-101"),
        pytest.param({"limit": "0"}, id="limit-0"),
        pytest.param({"limit": "-1"}, id="limit-negative"),
        pytest.param({"limit": "abc"}, id="limit-abc"),
        pytest.param({"limit": "2.5"}, id="limit-fraction"),
        pytest.param({"limit": "1e2"}, id="limit-exponent"),
        pytest.param({"limit": ""}, id="limit-empty"),
        pytest.param({"limit": "99999999999999999999"}, id="limit-huge"),
        pytest.param({"page": "0"}, id="page-0"),
        pytest.param({"page": "-1"}, id="page-negative"),
        pytest.param({"page": "abc"}, id="page-abc"),
        pytest.param({"page": "1.5"}, id="page-fraction"),
        pytest.param({"page": ""}, id="page-empty"),
        pytest.param({"page": "\uff11"}, id="page-fullwidth-digit"),
        pytest.param({"page": "99999999999999999999"}, id="page-huge"),
    ],
)
def test_list_rejects_bad_paging_with_400(env: Env, params: dict[str, str]) -> None:
    env.create(name="Exists")
    r = env.call("GET", BASE, params=params)
    assert_error(r, 400)


def test_list_items_never_carry_a_secret_or_hash(env: Env) -> None:
    a = env.create(name="A", description="first")
    b = env.create(name="B")
    rotated = env.call("POST", f"{BASE}/{b['id']}/rotate").json()
    r = env.call("GET", BASE)
    assert r.status_code == 200
    items = r.json()["data"]
    assert len(items) == 2
    assert_no_secret_material(r.json(), [a["clientSecret"], b["clientSecret"]])
    assert rotated["clientSecret"] not in r.text
    for item in items:
        assert "clientSecret" not in item
        assert ACCOUNT_FIELDS <= item.keys()


def test_list_items_equal_the_single_account_views(env: Env) -> None:
    created = [env.create(name=f"Item {i}", groups=["developers"]) for i in range(3)]
    items = {i["id"]: i for i in env.list_all()["data"]}
    assert items.keys() == {a["id"] for a in created}
    for account in created:
        assert items[account["id"]] == env.get(account["id"]).json()
        assert items[account["id"]] == without_secret(account)


def test_list_omits_deleted_and_keeps_revoked_accounts(env: Env) -> None:
    keep, revoked, deleted = (env.create(name=n) for n in ("Keep", "Revoked", "Deleted"))
    assert env.call("POST", f"{BASE}/{revoked['id']}/revoke").status_code == 200
    assert env.call("DELETE", f"{BASE}/{deleted['id']}").status_code == 204
    body = env.list_all()
    assert body["total"] == 2
    by_id = {i["id"]: i for i in body["data"]}
    assert by_id.keys() == {keep["id"], revoked["id"]}
    assert by_id[revoked["id"]]["status"] == "revoked"
    assert by_id[keep["id"]]["status"] == "active"


def test_list_shows_only_the_paths_workspace(env: Env) -> None:
    mine = env.create(name="Mine")
    env.factory.workspace("other-ws")
    other_admin = env.factory.admin("other-ws")
    theirs = env.factory.service_account(other_admin, workspace="other-ws", name="Theirs")
    assert [i["id"] for i in env.list_all()["data"]] == [mine["id"]]
    r = env.call("GET", "/workspace/other-ws/api/v1/service-accounts", token=other_admin)
    assert r.status_code == 200
    assert [i["clientId"] for i in r.json()["data"]] == [theirs["clientId"]]
    assert r.json()["total"] == 1


# --- get -----------------------------------------------------------------------------------


def test_get_returns_the_account_without_its_secret(env: Env) -> None:
    account = env.create(**GUIDE_BODY)
    r = env.get(account["id"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert "clientSecret" not in body
    assert body == without_secret(account)
    assert_no_secret_material(body, [account["clientSecret"]])


def test_get_unknown_id_is_404(env: Env) -> None:
    account = env.create(name="Only")
    assert_not_found(env.get(account["id"] + 1000))


@pytest.mark.parametrize(
    "raw_id",
    [
        pytest.param("abc", id="letters"),
        pytest.param("0", id="zero"),
        pytest.param("-1", id="negative"),
        pytest.param("1.0", id="decimal"),
        pytest.param("1e0", id="exponent"),
        pytest.param("0x1", id="hex"),
        pytest.param("\uff11", id="fullwidth-digit"),
        pytest.param("99999999999999999999999", id="beyond-int64"),
        pytest.param("%20", id="space"),
        pytest.param("1%00", id="nul"),
        pytest.param("null", id="null"),
    ],
)
def test_get_non_numeric_or_out_of_range_id_is_404(env: Env, raw_id: str) -> None:
    env.create(name="Exists")
    assert_not_found(env.get(raw_id))


# --- rename / describe / groups ------------------------------------------------------------


def test_rename_changes_only_the_name(env: Env) -> None:
    account = env.create(**GUIDE_BODY)
    r = env.call("PUT", f"{BASE}/{account['id']}/name", {"name": "Updated Service Account Name"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "clientSecret" not in body
    assert body["name"] == "Updated Service Account Name"
    expected = without_secret(account) | {"name": "Updated Service Account Name"}
    for key in ACCOUNT_FIELDS:
        assert body[key] == expected[key], key
    assert env.get(account["id"]).json() == body
    # The credentials are untouched.
    assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)


def test_describe_sets_and_clears_the_description(env: Env) -> None:
    account = env.create(name="Described")
    url = f"{BASE}/{account['id']}/description"
    r = env.call("PUT", url, {"description": "Updated description for this service account"})
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "Updated description for this service account"
    assert r.json()["name"] == "Described"
    assert env.get(account["id"]).json()["description"] == (
        "Updated description for this service account"
    )
    r = env.call("PUT", url, {"description": None})
    assert r.status_code == 200, r.text
    assert r.json()["description"] is None
    assert env.get(account["id"]).json()["description"] is None
    assert r.json() == env.get(account["id"]).json()


def test_set_groups_is_reflected_in_the_account_and_new_tokens(env: Env) -> None:
    account = env.create(name="Grouped")
    url = f"{BASE}/{account['id']}/groups"
    r = env.call("PUT", url, {"groups": ["developers"]})
    assert r.status_code == 200, r.text
    assert r.json()["groups"] == ["developers"]
    assert env.get(account["id"]).json()["groups"] == ["developers"]
    claims = assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)
    assert claims["groups"] == ["developers"]

    r = env.call("PUT", url, {"groups": ["developers", "api-users"]})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["groups"]) == ["api-users", "developers"]

    r = env.call("PUT", url, {"groups": []})
    assert r.status_code == 200, r.text
    assert r.json()["groups"] == []
    assert env.get(account["id"]).json()["groups"] == []
    claims = assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)
    assert claims["groups"] == []


def test_set_unknown_group_is_400_and_changes_nothing(env: Env) -> None:
    account = env.create(name="Grouped", groups=["developers"])
    before = env.state()
    r = env.call("PUT", f"{BASE}/{account['id']}/groups", {"groups": ["api-users", "nope"]})
    assert_error(r, 400)
    assert env.state() == before
    assert env.get(account["id"]).json()["groups"] == ["developers"]


# --- rotate --------------------------------------------------------------------------------


def test_rotate_answers_exactly_the_documented_fields(env: Env) -> None:
    account = env.create(name="Rotated")
    r = env.call("POST", f"{BASE}/{account['id']}/rotate")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == ROTATION_FIELDS
    assert body["id"] == account["id"]
    assert body["clientId"] == account["clientId"]
    assert body["name"] == "Rotated"
    assert body["workspace"] == WS
    assert SECRET_RE.match(body["clientSecret"])
    assert body["clientSecret"] != account["clientSecret"]
    assert_recent(body["updatedAt"])


def test_rotate_invalidates_the_old_secret_at_once(env: Env) -> None:
    account = env.create(name="Rotated")
    assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)
    new = env.call("POST", f"{BASE}/{account['id']}/rotate").json()["clientSecret"]
    assert_invalid_client(env.token(account["clientId"], account["clientSecret"]))
    assert_token_ok(env.token(account["clientId"], new), account)
    # The account itself is otherwise the same, and the new secret is not readable.
    got = env.get(account["id"])
    assert got.json()["status"] == "active"
    assert new not in got.text and new not in env.call("GET", BASE).text


def test_rotate_twice_only_the_latest_secret_works(env: Env) -> None:
    account = env.create(name="Twice")
    first = env.call("POST", f"{BASE}/{account['id']}/rotate").json()["clientSecret"]
    second = env.call("POST", f"{BASE}/{account['id']}/rotate").json()["clientSecret"]
    assert len({account["clientSecret"], first, second}) == 3
    assert_invalid_client(env.token(account["clientId"], account["clientSecret"]))
    assert_invalid_client(env.token(account["clientId"], first))
    assert_token_ok(env.token(account["clientId"], second), account)


def test_each_rotation_names_a_new_secret_id_never_reused(env: Env) -> None:
    """A secret id names one secret for good (the audit log refers to it), even after the
    secret it named was deleted by a rotation."""
    account = env.create(name="Ids")
    ids = [account["secretId"]]
    for _ in range(3):
        ids.append(env.call("POST", f"{BASE}/{account['id']}/rotate").json()["secretId"])
    assert ids == sorted(set(ids)), ids
    listed = env.call("GET", f"{BASE}/{account['id']}/secrets").json()["data"]
    assert [s["id"] for s in listed] == [ids[-1]]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"revokeTokens": True}, id="revoke-tokens-true"),
        pytest.param({"revokeTokens": False}, id="revoke-tokens-false"),
        pytest.param({}, id="empty-object"),
    ],
)
def test_rotate_accepts_a_json_body(env: Env, body: dict[str, Any]) -> None:
    account = env.create(name="Rotated")
    r = env.call("POST", f"{BASE}/{account['id']}/rotate", body)
    assert r.status_code == 200, r.text
    assert set(r.json()) == ROTATION_FIELDS
    assert_invalid_client(env.token(account["clientId"], account["clientSecret"]))
    assert_token_ok(env.token(account["clientId"], r.json()["clientSecret"]), account)


def test_rotate_with_malformed_json_is_400_and_keeps_the_secret(env: Env) -> None:
    account = env.create(name="Kept")
    before = env.state()
    r = env.call("POST", f"{BASE}/{account['id']}/rotate", raw='{"revokeTokens": tru')
    assert_error(r, INVALID_BODY)
    assert env.state() == before
    assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)


# --- revoke / activate ---------------------------------------------------------------------


def test_revoke_disables_the_account_at_the_token_endpoint(env: Env) -> None:
    account = env.create(**GUIDE_BODY)
    r = env.call("POST", f"{BASE}/{account['id']}/revoke")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "revoked"
    assert "clientSecret" not in body
    for key in ACCOUNT_FIELDS - {"status"}:
        assert body[key] == account[key], key
    assert env.get(account["id"]).json()["status"] == "revoked"
    assert_invalid_client(env.token(account["clientId"], account["clientSecret"]))


def test_activate_after_revoke_restores_the_same_secret(env: Env) -> None:
    account = env.create(name="Toggled")
    assert env.call("POST", f"{BASE}/{account['id']}/revoke").status_code == 200
    r = env.call("POST", f"{BASE}/{account['id']}/activate")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    assert "clientSecret" not in r.json()
    assert env.get(account["id"]).json()["status"] == "active"
    assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)


def test_rotate_of_revoked_account_does_not_reactivate_it(env: Env) -> None:
    account = env.create(name="Revoked")
    assert env.call("POST", f"{BASE}/{account['id']}/revoke").status_code == 200
    r = env.call("POST", f"{BASE}/{account['id']}/rotate")
    assert r.status_code == 200, r.text
    assert env.get(account["id"]).json()["status"] == "revoked"
    assert_invalid_client(env.token(account["clientId"], r.json()["clientSecret"]))


# --- delete --------------------------------------------------------------------------------


def test_delete_removes_the_account_everywhere(env: Env) -> None:
    account = env.create(name="Doomed")
    other = env.create(name="Survivor")
    r = env.call("DELETE", f"{BASE}/{account['id']}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_not_found(env.get(account["id"]))
    assert_invalid_client(env.token(account["clientId"], account["clientSecret"]))
    listed = env.list_all()
    assert listed["total"] == 1
    assert [i["id"] for i in listed["data"]] == [other["id"]]
    assert env.get(other["id"]).status_code == 200
    assert_token_ok(env.token(other["clientId"], other["clientSecret"]), other)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        pytest.param("GET", "", None, id="get"),
        pytest.param("PUT", "/name", {"name": "Back"}, id="rename"),
        pytest.param("PUT", "/description", {"description": "x"}, id="describe"),
        pytest.param("PUT", "/groups", {"groups": ["developers"]}, id="groups"),
        pytest.param("POST", "/rotate", None, id="rotate"),
        pytest.param("POST", "/revoke", None, id="revoke"),
        pytest.param("POST", "/activate", None, id="activate"),
        pytest.param("DELETE", "", None, id="delete-again"),
    ],
)
def test_actions_on_a_deleted_account_are_404(
    env: Env, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    account = env.create(name="Deleted")
    assert env.call("DELETE", f"{BASE}/{account['id']}").status_code == 204
    before = env.state()
    r = env.call(method, f"{BASE}/{account['id']}{suffix}", body)
    assert_not_found(r)
    assert env.state() == before
    # Nothing brought it back to life.
    assert_invalid_client(env.token(account["clientId"], account["clientSecret"]))


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        pytest.param("PUT", "/name", {"name": "Ghost"}, id="rename"),
        pytest.param("PUT", "/description", {"description": "x"}, id="describe"),
        pytest.param("PUT", "/groups", {"groups": []}, id="groups"),
        pytest.param("POST", "/rotate", None, id="rotate"),
        pytest.param("POST", "/revoke", None, id="revoke"),
        pytest.param("POST", "/activate", None, id="activate"),
        pytest.param("DELETE", "", None, id="delete"),
    ],
)
def test_actions_on_an_unknown_id_are_404(
    env: Env, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    account = env.create(name="Existing")
    before = env.state()
    for raw_id in (str(account["id"] + 1), "abc", "0"):
        assert_not_found(env.call(method, f"{BASE}/{raw_id}{suffix}", body))
    assert env.state() == before


# --- bad input changes nothing -------------------------------------------------------------

CREATE_BAD: list[Any] = [
    pytest.param('{"name": "x"', "application/json", id="malformed-json"),
    pytest.param('{"name": "x"} trailing', "application/json", id="json-with-trailing-garbage"),
    pytest.param("{'name': 'x'}", "application/json", id="single-quoted-json"),
    pytest.param('{"name": "x"}', "text/plain", id="json-sent-as-text-plain"),
    pytest.param("name=x", "application/x-www-form-urlencoded", id="form-body"),
    pytest.param("", "application/json", id="empty-body"),
    pytest.param("[]", "application/json", id="json-array"),
    pytest.param("null", "application/json", id="json-null"),
    pytest.param('"x"', "application/json", id="json-string"),
    pytest.param("{}", "application/json", id="missing-name"),
    pytest.param('{"name": null}', "application/json", id="name-null"),
    pytest.param('{"name": 123}', "application/json", id="name-int"),
    pytest.param('{"name": ["x"]}', "application/json", id="name-list"),
    pytest.param('{"name": true}', "application/json", id="name-bool"),
    pytest.param('{"name": ""}', "application/json", id="name-empty"),
    pytest.param('{"name": "   "}', "application/json", id="name-spaces"),
    pytest.param('{"name": " \\t\\n "}', "application/json", id="name-whitespace"),
    pytest.param(json.dumps({"name": "n" * 201}), "application/json", id="name-201-chars"),
    pytest.param(
        json.dumps({"name": "x", "description": "d" * 2001}),
        "application/json",
        id="description-2001-chars",
    ),
    pytest.param('{"name": "x", "description": 5}', "application/json", id="description-int"),
    pytest.param(
        '{"name": "x", "grant_types": ["password"]}', "application/json", id="grant-type-unknown"
    ),
    pytest.param(
        '{"name": "x", "grant_types": ["client_credentials", "implicit"]}',
        "application/json",
        id="grant-types-one-unknown",
    ),
    pytest.param(
        '{"name": "x", "grant_types": "client_credentials"}',
        "application/json",
        id="grant-types-string",
    ),
    pytest.param('{"name": "x", "grant_types": [1]}', "application/json", id="grant-types-int"),
    pytest.param('{"name": "x", "scope": "admin"}', "application/json", id="scope-unknown"),
    pytest.param(
        '{"name": "x", "scope": "openid admin"}', "application/json", id="scope-one-unknown"
    ),
    pytest.param('{"name": "x", "scope": 1}', "application/json", id="scope-int"),
    pytest.param('{"name": "x", "scope": ["openid"]}', "application/json", id="scope-list"),
    pytest.param('{"name": "x", "groups": "x"}', "application/json", id="groups-string"),
    pytest.param('{"name": "x", "groups": ["nope"]}', "application/json", id="groups-unknown"),
    pytest.param(
        '{"name": "x", "groups": ["api-users", "nope"]}',
        "application/json",
        id="groups-one-unknown",
    ),
    pytest.param('{"name": "x", "groups": [1]}', "application/json", id="groups-int-item"),
    pytest.param('{"name": "x", "groups": [null]}', "application/json", id="groups-null-item"),
    pytest.param('{"name": "x", "foo": 1}', "application/json", id="unknown-field"),
    pytest.param(
        json.dumps({"name": "x", "clientSecret": "sk_" + "0" * 64}),
        "application/json",
        id="unknown-field-client-secret",
    ),
    pytest.param('{"name": "x", "status": "revoked"}', "application/json", id="unknown-status"),
    pytest.param('{"name": "x", "id": 7}', "application/json", id="unknown-field-id"),
]


@pytest.mark.parametrize(("raw", "content_type"), CREATE_BAD)
def test_create_with_bad_body_is_refused_and_creates_nothing(
    env: Env, raw: str, content_type: str
) -> None:
    env.create(name="Existing")
    before = env.state()
    r = env.call("POST", BASE, raw=raw, content_type=content_type)
    assert_error(r, INVALID_BODY if content_type == "application/json" else UNSUPPORTED_TYPE)
    assert env.state() == before


RENAME_BAD: list[Any] = [
    pytest.param('{"name": "x"', "application/json", id="malformed-json"),
    pytest.param('{"name": "x"}', "text/plain", id="json-sent-as-text-plain"),
    pytest.param("name=x", "application/x-www-form-urlencoded", id="form-body"),
    pytest.param("", "application/json", id="empty-body"),
    pytest.param("{}", "application/json", id="missing-name"),
    pytest.param('{"name": null}', "application/json", id="name-null"),
    pytest.param('{"name": 123}', "application/json", id="name-int"),
    pytest.param('{"name": ["x"]}', "application/json", id="name-list"),
    pytest.param('{"name": ""}', "application/json", id="name-empty"),
    pytest.param('{"name": "   "}', "application/json", id="name-spaces"),
    pytest.param(json.dumps({"name": "n" * 201}), "application/json", id="name-201-chars"),
    pytest.param('{"name": "x", "foo": 1}', "application/json", id="unknown-field"),
    pytest.param(
        '{"name": "x", "description": "y"}', "application/json", id="other-field-of-account"
    ),
]


@pytest.mark.parametrize(("raw", "content_type"), RENAME_BAD)
def test_rename_with_bad_body_is_refused_and_changes_nothing(
    env: Env, raw: str, content_type: str
) -> None:
    account = env.create(name="Original", description="Kept")
    before = env.state()
    r = env.call("PUT", f"{BASE}/{account['id']}/name", raw=raw, content_type=content_type)
    assert_error(r, INVALID_BODY if content_type == "application/json" else UNSUPPORTED_TYPE)
    assert env.state() == before
    assert env.get(account["id"]).json()["name"] == "Original"


DESCRIBE_BAD: list[Any] = [
    pytest.param('{"description": "x"', "application/json", id="malformed-json"),
    pytest.param('{"description": "x"}', "text/plain", id="json-sent-as-text-plain"),
    pytest.param("", "application/json", id="empty-body"),
    pytest.param('{"description": 5}', "application/json", id="description-int"),
    pytest.param('{"description": ["x"]}', "application/json", id="description-list"),
    pytest.param(
        json.dumps({"description": "d" * 2001}), "application/json", id="description-2001-chars"
    ),
    pytest.param('{"description": "x", "foo": 1}', "application/json", id="unknown-field"),
]


@pytest.mark.parametrize(("raw", "content_type"), DESCRIBE_BAD)
def test_describe_with_bad_body_is_refused_and_changes_nothing(
    env: Env, raw: str, content_type: str
) -> None:
    account = env.create(name="Original", description="Kept")
    before = env.state()
    r = env.call("PUT", f"{BASE}/{account['id']}/description", raw=raw, content_type=content_type)
    assert_error(r, INVALID_BODY if content_type == "application/json" else UNSUPPORTED_TYPE)
    assert env.state() == before
    assert env.get(account["id"]).json()["description"] == "Kept"


GROUPS_BAD: list[Any] = [
    pytest.param('{"groups": ["developers"]', "application/json", id="malformed-json"),
    pytest.param('{"groups": ["developers"]}', "text/plain", id="json-sent-as-text-plain"),
    pytest.param("", "application/json", id="empty-body"),
    pytest.param("{}", "application/json", id="missing-groups"),
    pytest.param('{"groups": "x"}', "application/json", id="groups-string"),
    pytest.param('{"groups": "developers"}', "application/json", id="groups-string-of-real-group"),
    pytest.param('{"groups": ["nope"]}', "application/json", id="groups-unknown"),
    pytest.param('{"groups": ["developers", "nope"]}', "application/json", id="one-unknown"),
    pytest.param('{"groups": [1]}', "application/json", id="groups-int-item"),
    pytest.param('{"groups": [], "foo": 1}', "application/json", id="unknown-field"),
]


@pytest.mark.parametrize(("raw", "content_type"), GROUPS_BAD)
def test_set_groups_with_bad_body_is_refused_and_changes_nothing(
    env: Env, raw: str, content_type: str
) -> None:
    account = env.create(name="Original")
    before = env.state()
    r = env.call("PUT", f"{BASE}/{account['id']}/groups", raw=raw, content_type=content_type)
    assert_error(r, INVALID_BODY if content_type == "application/json" else UNSUPPORTED_TYPE)
    assert env.state() == before
    assert env.get(account["id"]).json()["groups"] == ["api-users"]


def _oversize_json(field: str) -> bytes:
    return json.dumps({field: "x" * (64 * 1024 + 10)}).encode()


@pytest.mark.parametrize(
    ("method", "suffix", "field"),
    [
        pytest.param("POST", "", "name", id="create"),
        pytest.param("PUT", "/{id}/name", "name", id="rename"),
        pytest.param("PUT", "/{id}/description", "description", id="describe"),
        pytest.param("PUT", "/{id}/groups", "groups", id="groups"),
        pytest.param("POST", "/{id}/rotate", "revokeTokens", id="rotate"),
    ],
)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_64_kib_is_413_json_and_changes_nothing(
    env: Env, method: str, suffix: str, field: str, chunked: bool
) -> None:
    account = env.create(name="Original")
    before = env.state()
    payload = _oversize_json(field)

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    headers = bearer(env.admin) | {"Content-Type": "application/json"}
    url = BASE + suffix.format(id=account["id"])
    content: Any = pieces() if chunked else payload
    r = env.api.request(method, url, content=content, headers=headers)
    assert_error(r, 413)
    assert env.state() == before
    assert_token_ok(env.token(account["clientId"], account["clientSecret"]), account)


# Strings a store may choke on (PostgreSQL refuses NUL in text; lone surrogates are not
# encodable as UTF-8). Accepting them or refusing them are both fine; a 500 is not.
ODD_VALUES: list[Any] = [
    pytest.param("name", '"a\\u0000b"', id="name-nul"),
    pytest.param("name", '"\\ud800"', id="name-lone-surrogate"),
    pytest.param("name", '"a\\u0007\\u001bb"', id="name-control-chars"),
    pytest.param("description", '"a\\u0000b"', id="description-nul"),
    pytest.param("description", '"\\udfff"', id="description-lone-surrogate"),
    pytest.param("groups", '["a\\u0000b"]', id="groups-nul"),
    pytest.param("groups", '["\\ud800"]', id="groups-lone-surrogate"),
    pytest.param("scope", '"openid\\u0000"', id="scope-nul"),
    pytest.param("grant_types", '["\\ud800"]', id="grant-types-lone-surrogate"),
]


@pytest.mark.parametrize(("field", "value"), ODD_VALUES)
def test_create_with_odd_strings_is_never_a_server_error(env: Env, field: str, value: str) -> None:
    before = env.state()
    raw = f'{{"name": {value}}}' if field == "name" else f'{{"name": "x", "{field}": {value}}}'
    r = env.call("POST", BASE, raw=raw)
    assert r.status_code in INVALID_BODY | {201}, (r.status_code, r.text)
    if r.status_code == 201:
        assert env.get(r.json()["id"]).json()[field] == json.loads(value)
    else:
        assert_error(r, INVALID_BODY)
        assert env.state() == before


@pytest.mark.parametrize(
    ("field", "value"), [p for p in ODD_VALUES if p.values[0] in ("name", "description", "groups")]
)
def test_update_with_odd_strings_is_never_a_server_error(env: Env, field: str, value: str) -> None:
    account = env.create(name="Original")
    before = env.state()
    r = env.call("PUT", f"{BASE}/{account['id']}/{field}", raw=f'{{"{field}": {value}}}')
    assert r.status_code in INVALID_BODY | {200}, (r.status_code, r.text)
    if r.status_code == 200:
        assert env.get(account["id"]).json()[field] == json.loads(value)
    else:
        assert_error(r, INVALID_BODY)
        assert env.state() == before


# --- audit ---------------------------------------------------------------------------------


def _assert_event(
    event: dict[str, Any], action: str, actor: str, target: str, created: float
) -> None:
    assert event["action"] == action
    assert event["actor"] == actor
    assert event["target"] == target
    assert isinstance(event["sourceIp"], str) and event["sourceIp"]
    assert abs(parse_utc(event["createdAt"]).timestamp() - created) < 120


def test_create_writes_one_audit_event(env: Env) -> None:
    assert env.audit() == []
    account = env.create(name="Audited")
    events = env.audit()
    assert len(events) == 1
    _assert_event(
        events[0], "service_account.created", env.admin_sub, account["clientId"], time.time()
    )


AUDITED_ACTIONS: list[Any] = [
    pytest.param("PUT", "/name", {"name": "Renamed"}, "service_account.renamed", id="rename"),
    pytest.param(
        "PUT", "/description", {"description": "New"}, "service_account.described", id="describe"
    ),
    pytest.param(
        "PUT",
        "/description",
        {"description": None},
        "service_account.described",
        id="describe-null",
    ),
    pytest.param(
        "PUT",
        "/groups",
        {"groups": ["developers"]},
        "service_account.groups_changed",
        id="groups",
    ),
    pytest.param("POST", "/rotate", None, "service_account.rotated", id="rotate"),
    pytest.param(
        "POST", "/rotate", {"revokeTokens": True}, "service_account.rotated", id="rotate-revoke"
    ),
    pytest.param("POST", "/revoke", None, "service_account.revoked", id="revoke"),
    pytest.param("POST", "/activate", None, "service_account.activated", id="activate"),
    pytest.param("DELETE", "", None, "service_account.deleted", id="delete"),
]


@pytest.mark.parametrize(("method", "suffix", "body", "action"), AUDITED_ACTIONS)
def test_each_action_writes_exactly_one_audit_event(
    env: Env, method: str, suffix: str, body: dict[str, Any] | None, action: str
) -> None:
    account = env.create(name="Audited", description="Before")
    if action == "service_account.activated":
        assert env.call("POST", f"{BASE}/{account['id']}/revoke").status_code == 200
    before = env.audit()
    # Another admin acts: the event names who acted, not who created the account.
    other_admin = env.factory.admin(WS)
    r = env.call(method, f"{BASE}/{account['id']}{suffix}", body, token=other_admin)
    assert r.status_code in (200, 204), r.text
    after = env.audit()
    assert len(after) == len(before) + 1
    new = [e for e in after if e not in before]
    assert len(new) == 1
    _assert_event(new[0], action, subject_of(other_admin), account["clientId"], time.time())
    assert_no_secret_material(after, [account["clientSecret"]])
    if method == "POST" and suffix == "/rotate":
        assert r.json()["clientSecret"] not in json.dumps(after)


def test_reads_and_refused_requests_write_no_audit_event(env: Env) -> None:
    account = env.create(name="Quiet")
    before = env.audit()
    env.call("GET", BASE)
    env.get(account["id"])
    env.get(account["id"] + 99)
    env.call("PUT", f"{BASE}/{account['id']}/name", {"name": ""})
    env.call("PUT", f"{BASE}/{account['id'] + 99}/name", {"name": "x"})
    env.call("POST", BASE, {"name": "x", "grant_types": ["password"]})
    env.call("POST", f"{BASE}/{account['id']}/rotate", raw="{")
    developer = env.factory.user_token(WS, ("developers",))
    env.call("POST", f"{BASE}/{account['id']}/revoke", token=developer)
    env.call("DELETE", f"{BASE}/{account['id']}", token="not-a-token")
    assert env.audit() == before


def _raw_audit_rows(db: Database) -> str:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM audit_events")).all()
    return "\n".join(repr(tuple(row)) for row in rows)


def test_audit_log_of_a_full_lifecycle_holds_no_secret_hash_or_token(env: Env) -> None:
    account = env.create(**GUIDE_BODY)
    aid = account["id"]
    secrets = [account["clientSecret"]]
    tokens = [env.admin, env.factory.sa_token(account)]
    steps: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PUT", "/name", {"name": "Renamed"}),
        ("PUT", "/description", {"description": "Changed"}),
        ("PUT", "/groups", {"groups": ["developers"]}),
        ("POST", "/rotate", None),
        ("POST", "/rotate", {"revokeTokens": True}),
        ("POST", "/revoke", None),
        ("POST", "/activate", None),
        ("DELETE", "", None),
    ]
    for method, suffix, body in steps:
        r = env.call(method, f"{BASE}/{aid}{suffix}", body)
        assert r.status_code in (200, 204), r.text
        if suffix == "/rotate":
            secrets.append(r.json()["clientSecret"])
            if len(secrets) == 2:
                tokens.append(env.factory.sa_token(account | {"clientSecret": secrets[-1]}))
    events = env.audit()
    assert [e["action"] for e in reversed(events)] == [
        "service_account.created",
        "service_account.renamed",
        "service_account.described",
        "service_account.groups_changed",
        "service_account.rotated",
        "service_account.rotated",
        "service_account.revoked",
        "service_account.activated",
        "service_account.deleted",
    ]
    for event in events:
        assert event["actor"] == env.admin_sub
        assert event["target"] == account["clientId"]
        assert event["sourceIp"]
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert_no_secret_material(events, secrets)
    raw = _raw_audit_rows(env.db)
    assert raw.count(account["clientId"]) >= len(events)
    for needle in [*secrets, *tokens, "sha256$"]:
        assert needle not in raw
    for token in tokens:
        assert token not in json.dumps(events)
        # Not even the signature part of a token.
        assert token.rsplit(".", 1)[1] not in raw


def test_audit_events_stay_in_their_workspace(env: Env) -> None:
    env.factory.workspace("other-ws")
    other_admin = env.factory.admin("other-ws")
    env.factory.service_account(other_admin, workspace="other-ws", name="Theirs")
    mine = env.create(name="Mine")
    events = env.audit()
    assert [e["target"] for e in events] == [mine["clientId"]]

"""The audit API (contract: "Operations and security"): ``GET …/audit-events`` and
``GET …/audit-events/token-failures``, through HTTP, on every configured backend."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx  # the HTTP library of Starlette's TestClient
import jwt
import pytest
from fastapi.testclient import TestClient

from centrali.services import audit
from centrali.services.context import Actor
from centrali.services.token_failures import TokenFailureCounter
from centrali.services.workspaces import require_workspace
from centrali.store.db import Database
from tests.factories import Factory, bearer

WS = "acme-corp"
OTHER = "globex"
ACCOUNTS = f"/workspace/{WS}/api/v1/service-accounts"
EVENTS = f"/workspace/{WS}/api/v1/audit-events"
FAILURES = f"{EVENTS}/token-failures"
ISO_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
EVENT_FIELDS = {"id", "action", "actor", "target", "createdAt", "sourceIp", "details"}
FAILURE_FIELDS = {"clientId", "reason", "windowStart", "count", "lastSeenAt"}
T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def subject_of(token: str) -> str:
    sub: str = jwt.decode(token, options={"verify_signature": False})["sub"]
    return sub


@dataclass
class Env:
    factory: Factory
    api: TestClient
    db: Database
    admin: str

    def get(self, path: str = EVENTS, token: str | None = None, **params: str) -> httpx.Response:
        return self.api.get(path, params=params, headers=bearer(token or self.admin))

    def page(self, path: str = EVENTS, token: str | None = None, **params: str) -> dict[str, Any]:
        r = self.get(path, token, **params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert set(body) == {"data", "page", "limit", "total"}, body
        return body

    def events(self, **params: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.page(EVENTS, **params)["data"]
        return data

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if body is None:
            return self.api.request(method, path, headers=bearer(self.admin))
        return self.api.request(method, path, json=body, headers=bearer(self.admin))


@pytest.fixture
def api(client: TestClient) -> Iterator[TestClient]:
    # Same app and store as `client`; a server exception comes back as the 500 it would be.
    yield TestClient(client.app, base_url=str(client.base_url), raise_server_exceptions=False)


@pytest.fixture
def env(factory: Factory, api: TestClient, db: Database) -> Env:
    factory.workspace(WS)
    factory.workspace(OTHER)
    return Env(factory=factory, api=api, db=db, admin=factory.admin(WS))


def seed(db: Database, rows: Sequence[tuple[str, str, str | None, datetime]], ws: str = WS) -> None:
    """Audit events with chosen actors and times, oldest first (ids ascend in this order)."""
    for action, actor, target, when in rows:
        with db.write() as session:
            workspace = require_workspace(session, ws)
            audit.record(
                session,
                workspace_id=workspace.id,
                action=action,
                actor=Actor(actor, "10.0.0.1", when),
                target=target,
                details={"n": len(action)},
            )


def assert_bad_request(r: httpx.Response, field: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == "invalid_request", body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["field"] == field, body


# --- the contract's actions ------------------------------------------------------------------


def test_every_contract_action_is_listed_after_its_call(env: Env) -> None:
    created = env.call("POST", ACCOUNTS, {"name": "Audited", "description": "first"})
    assert created.status_code == 201, created.text
    account = created.json()
    one = f"{ACCOUNTS}/{account['id']}"
    secrets = [account["clientSecret"]]
    steps: list[tuple[str, str, str, Any]] = [
        ("service_account.created", "", "", None),
        ("service_account.renamed", "PUT", f"{one}/name", {"name": "Renamed"}),
        ("service_account.described", "PUT", f"{one}/description", {"description": "new"}),
        ("service_account.groups_changed", "PUT", f"{one}/groups", {"groups": ["developers"]}),
        ("service_account.rotated", "POST", f"{one}/rotate", None),
        ("service_account.rotated", "POST", f"{one}/rotate", {"revokeTokens": True}),
        ("service_account.revoked", "POST", f"{one}/revoke", None),
        ("service_account.activated", "POST", f"{one}/activate", None),
        ("service_account.deleted", "DELETE", one, None),
    ]
    admin = subject_of(env.admin)
    seen: list[int] = []
    for action, method, path, body in steps:
        if method:
            r = env.call(method, path, body)
            assert r.status_code in (200, 204), r.text
            if "clientSecret" in (r.json() if r.content else {}):
                secrets.append(r.json()["clientSecret"])
        newest = env.events(limit="1")[0]
        assert set(newest) == EVENT_FIELDS, newest
        assert type(newest["id"]) is int
        assert newest["action"] == action
        assert newest["actor"] == admin
        assert newest["target"] == account["clientId"]
        assert newest["sourceIp"] == "testclient"
        assert ISO_UTC_RE.match(newest["createdAt"]), newest
        assert newest["details"]["id"] == account["id"]
        seen.append(newest["id"])
        matching = env.events(action=action, target=account["clientId"])
        assert newest in matching
    assert seen == sorted(seen) and len(set(seen)) == len(seen)

    listed = env.page(limit="100")
    assert listed["total"] == len(steps)
    assert [e["id"] for e in listed["data"]] == seen[::-1]  # newest first
    assert [e["action"] for e in listed["data"]] == [s[0] for s in steps][::-1]
    by_action = {e["action"]: e for e in listed["data"]}
    assert by_action["service_account.renamed"]["details"]["to"] == "Renamed"
    assert by_action["service_account.groups_changed"]["details"]["to"] == ["developers"]

    # No secret, hash or token in any event.
    dumped = json.dumps(listed)
    assert len(secrets) == 3
    for secret in secrets:
        assert secret not in dumped and secret.removeprefix("sk_") not in dumped
    assert "sha256$" not in dumped and "sk_" not in dumped
    assert env.admin not in dumped and env.admin.split(".")[2] not in dumped


def test_a_secret_pasted_into_a_name_is_not_kept_in_the_log(env: Env) -> None:
    a = env.factory.service_account(env.admin, name="A")
    b = env.factory.service_account(env.admin, name="B")
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    pasted = f"oops {b['clientSecret']} and {jwt_like} sha256$" + "ab" * 32
    r = env.call("PUT", f"{ACCOUNTS}/{a['id']}/name", {"name": pasted})
    assert r.status_code == 200, r.text
    event = env.events(action="service_account.renamed")[0]
    assert event["details"]["to"] == "oops [redacted] and [redacted] [redacted]"
    dumped = json.dumps(event)
    assert b["clientSecret"] not in dumped and jwt_like not in dumped


# --- filters ---------------------------------------------------------------------------------

SEEDED = [
    ("service_account.created", "alice", "ci_a", at(0)),  # 1
    ("service_account.renamed", "alice", "ci_a", at(1)),  # 2
    ("service_account.created", "bob", "ci_b", at(2)),  # 3
    ("service_account.rotated", "bob", "ci_a", at(3)),  # 4
    ("service_account.rotated", "alice", "ci_b", at(4)),  # 5
    ("group.created", "bob", "auditors", at(5)),  # 6
]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [6, 5, 4, 3, 2, 1]),
        ({"action": "service_account.created"}, [3, 1]),
        ({"action": "group.created"}, [6]),
        ({"action": "service_account.nothing"}, []),
        ({"actor": "alice"}, [5, 2, 1]),
        ({"actor": "carol"}, []),
        ({"target": "ci_a"}, [4, 2, 1]),
        ({"since": iso(at(2))}, [6, 5, 4, 3]),  # inclusive
        ({"until": iso(at(2))}, [2, 1]),  # exclusive
        ({"since": iso(at(1)), "until": iso(at(4))}, [4, 3, 2]),
        ({"since": iso(at(1.5))}, [6, 5, 4, 3]),
        ({"since": "2026-03-01T12:02:00+02:00"}, [6, 5, 4, 3]),  # another offset
        ({"since": "2026-03-01T10:01:30.500Z"}, [6, 5, 4, 3]),
        ({"until": "2026-03-01T05:02:00-05:00"}, [2, 1]),
        ({"since": iso(at(2)), "until": iso(at(2))}, []),
        ({"since": iso(at(60))}, []),
        ({"action": "service_account.rotated", "actor": "bob"}, [4]),
        ({"action": "service_account.rotated", "target": "ci_b", "since": iso(at(0))}, [5]),
        ({"actor": "alice", "target": "ci_b"}, [5]),
        ({"actor": "alice", "target": "ci_a", "until": iso(at(1))}, [1]),
        (
            {"action": "service_account.created", "actor": "bob", "target": "ci_b"},
            [3],
        ),
    ],
    ids=[
        "none",
        "action",
        "action-group",
        "action-none",
        "actor",
        "actor-none",
        "target",
        "since-inclusive",
        "until-exclusive",
        "since-until",
        "since-between",
        "since-offset",
        "since-fraction",
        "until-offset",
        "empty-range",
        "future",
        "action-actor",
        "action-target-since",
        "actor-target",
        "actor-target-until",
        "all-three",
    ],
)
def test_filters_alone_and_combined(env: Env, params: dict[str, str], expected: list[int]) -> None:
    seed(env.db, SEEDED)
    ids = [e["id"] for e in env.events(limit="100")][::-1]  # seeded order
    assert len(ids) == len(SEEDED)
    body = env.page(**params, limit="100")
    assert [e["id"] for e in body["data"]] == [ids[n - 1] for n in expected]
    assert body["total"] == len(expected)


def test_a_plus_lost_in_the_query_string_still_reads_as_an_offset(env: Env) -> None:
    seed(env.db, SEEDED)
    # "+" unescaped in a URL decodes to a space.
    r = env.api.get(f"{EVENTS}?since=2026-03-01T12:02:00+02:00", headers=bearer(env.admin))
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 4


def test_filters_by_a_real_actor_and_target(env: Env) -> None:
    second_admin = env.factory.admin(WS)
    a = env.factory.service_account(env.admin, name="A")
    b = env.factory.service_account(second_admin, name="B")
    r = env.call("POST", f"{ACCOUNTS}/{a['id']}/rotate")
    assert r.status_code == 200
    mine = env.events(actor=subject_of(env.admin))
    assert [(e["action"], e["target"]) for e in mine] == [
        ("service_account.rotated", a["clientId"]),
        ("service_account.created", a["clientId"]),
    ]
    theirs = env.events(actor=subject_of(second_admin))
    assert [(e["action"], e["target"]) for e in theirs] == [
        ("service_account.created", b["clientId"])
    ]
    assert [e["action"] for e in env.events(target=b["clientId"])] == ["service_account.created"]


# --- paging ----------------------------------------------------------------------------------


def test_pages_are_newest_first_and_add_up(env: Env) -> None:
    seed(
        env.db,
        [
            ("service_account.rotated" if i % 2 else "service_account.created", "x", "t", at(i))
            for i in range(25)
        ],
    )
    default = env.page()
    assert (default["page"], default["limit"], default["total"]) == (1, 20, 25)
    assert len(default["data"]) == 20
    pages = [env.page(page=str(p), limit="10") for p in (1, 2, 3, 4)]
    assert [len(p["data"]) for p in pages] == [10, 10, 5, 0]
    assert [(p["page"], p["limit"], p["total"]) for p in pages] == [
        (1, 10, 25),
        (2, 10, 25),
        (3, 10, 25),
        (4, 10, 25),  # past the last page: empty data, the total still told
    ]
    ids = [e["id"] for p in pages for e in p["data"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 25
    times = [e["createdAt"] for p in pages for e in p["data"]]
    assert times == sorted(times, reverse=True)
    assert ids[:20] == [e["id"] for e in default["data"]]

    rotated = [
        env.page(action="service_account.rotated", page=str(p), limit="5") for p in (1, 2, 3)
    ]
    assert [len(p["data"]) for p in rotated] == [5, 5, 2]
    assert {p["total"] for p in rotated} == {12}
    assert env.page(page="10000000", limit="100")["data"] == []


def test_an_empty_log_is_an_empty_page(env: Env) -> None:
    assert env.page() == {"data": [], "page": 1, "limit": 20, "total": 0}
    assert env.page(page="3", limit="5") == {"data": [], "page": 3, "limit": 5, "total": 0}


# --- bad parameters --------------------------------------------------------------------------

BAD_EVENT_QUERIES = [
    ("page=0", "page"),
    ("page=x", "page"),
    ("page=", "page"),
    ("page=-1", "page"),
    ("limit=0", "limit"),
    ("limit=101", "limit"),
    ("limit=1.5", "limit"),
    ("since=2026-03-01T10:00:00", "since"),  # naive
    ("until=2026-03-01T10:00:00", "until"),
    ("since=2026-03-01", "since"),  # a date has no timezone
    ("since=yesterday", "since"),
    ("since=", "since"),
    ("since=2026-13-01T00:00:00Z", "since"),
    ("since=2026-02-30T00:00:00Z", "since"),
    ("since=1772359200", "since"),
    ("since=0001-01-01T00:00:00%2B01:00", "since"),  # before year 1 in UTC
    ("until=9999-12-31T23:59:59-01:00", "until"),  # after year 9999 in UTC
    ("since=" + "2" * 200, "since"),
    ("since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "until"),
    ("action=", "action"),
    ("action=" + "a" * 65, "action"),
    ("actor=%00", "actor"),
    ("actor=" + "a" * 321, "actor"),
    ("target=a%0Ab", "target"),
    ("target=" + "t" * 129, "target"),
    ("foo=bar", "foo"),
    ("clientId=ci_x", "clientId"),
    ("action=a&action=b", "action"),
    ("page=1&page=2", "page"),
]


@pytest.mark.parametrize(
    ("query", "field"), BAD_EVENT_QUERIES, ids=[f"{f}:{q[:40]}" for q, f in BAD_EVENT_QUERIES]
)
def test_bad_event_query_is_400_naming_the_parameter(env: Env, query: str, field: str) -> None:
    r = env.api.get(f"{EVENTS}?{query}", headers=bearer(env.admin))
    assert_bad_request(r, field)


BAD_FAILURE_QUERIES = [
    ("clientId=", "clientId"),
    ("clientId=" + "c" * 129, "clientId"),
    ("clientId=ci%00", "clientId"),
    ("client_id=ci_x", "client_id"),
    ("action=service_account.created", "action"),
    ("since=2026-03-01T10:00:00", "since"),
    ("until=soon", "until"),
    ("since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "until"),
    ("page=0", "page"),
    ("limit=1000", "limit"),
    ("clientId=a&clientId=b", "clientId"),
]


@pytest.mark.parametrize(
    ("query", "field"), BAD_FAILURE_QUERIES, ids=[f"{f}:{q[:40]}" for q, f in BAD_FAILURE_QUERIES]
)
def test_bad_failure_query_is_400_naming_the_parameter(env: Env, query: str, field: str) -> None:
    r = env.api.get(f"{FAILURES}?{query}", headers=bearer(env.admin))
    assert_bad_request(r, field)


# --- who may read ------------------------------------------------------------------------------

UNAUTHORIZED = {
    "error": "unauthorized",
    "message": "Unauthorized: no access token (send Authorization: Bearer <token>)",
}


@pytest.mark.parametrize("path", [EVENTS, FAILURES], ids=["events", "failures"])
def test_refusals(env: Env, path: str) -> None:
    def status(headers: dict[str, str], url: str = path) -> tuple[int, str]:
        r = env.api.get(url, headers=headers)
        return r.status_code, r.json()["error"]

    assert env.api.get(path).json() == UNAUTHORIZED
    assert status({}) == (401, "unauthorized")
    assert status({"Authorization": "Bearer not-a-jwt"}) == (401, "unauthorized")
    assert status({"Authorization": f"Basic {env.admin}"}) == (401, "unauthorized")
    expired = env.factory.user_token(WS, now=1_000_000_000.0, ttl=60)
    assert status(bearer(expired)) == (401, "token_expired")
    developer = env.factory.user_token(WS, ("developers",))
    assert status(bearer(developer)) == (403, "forbidden")
    nobody = env.factory.user_token(WS, ())
    assert status(bearer(nobody)) == (403, "forbidden")
    # A service account is refused even in the admins' group, as on the management API.
    account = env.factory.service_account(env.admin, groups=["workspace-admins"])
    sa_token = env.factory.sa_token(account)
    assert status(bearer(sa_token)) == (403, "forbidden")
    other_admin = env.factory.admin(OTHER)
    assert status(bearer(other_admin)) == (403, "forbidden")
    unknown = path.replace(WS, "no-such-workspace")
    assert status(bearer(env.admin), unknown) == (403, "forbidden")
    # A refusal comes before any parameter check.
    assert status(bearer(developer), f"{path}?page=0&foo=1") == (403, "forbidden")
    assert env.get(path).status_code == 200


def test_another_workspaces_events_are_never_visible(env: Env) -> None:
    other_admin = env.factory.admin(OTHER)
    theirs = env.factory.service_account(other_admin, OTHER, name="Theirs")
    r = env.api.post(
        f"/workspace/{OTHER}/api/v1/service-accounts/{theirs['id']}/rotate",
        headers=bearer(other_admin),
    )
    assert r.status_code == 200
    seed(env.db, [("service_account.revoked", "x", theirs["clientId"], at(0))], ws=OTHER)
    mine = env.factory.service_account(env.admin, name="Mine")

    listed = env.page(limit="100")
    assert [e["target"] for e in listed["data"]] == [mine["clientId"]]
    assert listed["total"] == 1
    assert env.page(target=theirs["clientId"])["total"] == 0
    assert env.page(actor=subject_of(other_admin))["total"] == 0
    assert env.page(action="service_account.rotated")["total"] == 0

    other_events = f"/workspace/{OTHER}/api/v1/audit-events"
    seen = env.page(other_events, token=other_admin, limit="100")
    assert {e["target"] for e in seen["data"]} == {theirs["clientId"]}
    assert seen["total"] == 3


# --- failed token requests -------------------------------------------------------------------


def flush_failures(env: Env, records: list[tuple[str, str, datetime]]) -> None:
    """Failed token requests at chosen times, counted and flushed as the server would."""
    clock = [T0]
    counter = TokenFailureCounter(clock=lambda: clock[0].timestamp())
    for client_id, reason, when in records:
        clock[0] = when
        counter.record(client_id, reason)
    counter.flush(env.db, max(r[2] for r in records))


def test_token_failures_of_the_workspace(env: Env) -> None:
    a = env.factory.service_account(env.admin, name="A")["clientId"]
    b = env.factory.service_account(env.admin, name="B")["clientId"]
    other = env.factory.service_account(env.factory.admin(OTHER), OTHER)["clientId"]
    flush_failures(
        env,
        [
            (a, "wrong_secret", at(5)),
            (a, "wrong_secret", at(20)),
            (a, "revoked", at(30)),
            (b, "wrong_secret", at(65)),
            (other, "wrong_secret", at(10)),
            ("ci_" + "z" * 20, "unknown_client", at(10)),
            ("", "invalid_request", at(70)),
        ],
    )
    body = env.page(FAILURES)
    assert body["total"] == 3
    assert all(set(row) == FAILURE_FIELDS for row in body["data"])
    assert body["data"] == [
        {
            "clientId": b,
            "reason": "wrong_secret",
            "windowStart": "2026-03-01T11:00:00Z",
            "count": 1,
            "lastSeenAt": "2026-03-01T11:05:00Z",
        },
        {
            "clientId": a,
            "reason": "revoked",
            "windowStart": "2026-03-01T10:00:00Z",
            "count": 1,
            "lastSeenAt": "2026-03-01T10:30:00Z",
        },
        {
            "clientId": a,
            "reason": "wrong_secret",
            "windowStart": "2026-03-01T10:00:00Z",
            "count": 2,
            "lastSeenAt": "2026-03-01T10:20:00Z",
        },
    ]

    def keys(**params: str) -> list[tuple[str, str]]:
        return [(r["clientId"], r["reason"]) for r in env.page(FAILURES, **params)["data"]]

    assert keys(clientId=a) == [(a, "revoked"), (a, "wrong_secret")]
    assert keys(clientId=other) == []  # another workspace's account
    assert keys(clientId="unknown") == []  # unknown ids belong to no workspace
    # Windows overlapping [since, until).
    assert len(keys(since=iso(at(59)))) == 3
    assert keys(since=iso(at(60))) == [(b, "wrong_secret")]
    assert keys(until=iso(at(60))) == [(a, "revoked"), (a, "wrong_secret")]
    assert len(keys(until=iso(at(60.5)))) == 3
    assert keys(since=iso(at(10)), until=iso(at(50))) == [(a, "revoked"), (a, "wrong_secret")]
    page2 = env.page(FAILURES, page="2", limit="2")
    assert (len(page2["data"]), page2["total"]) == (1, 3)

    other_failures = f"/workspace/{OTHER}/api/v1/audit-events/token-failures"
    assert [
        r["clientId"] for r in env.page(other_failures, token=env.factory.admin(OTHER))["data"]
    ] == [other]

"""Several secrets per service account (contract: "Credentials: several secrets, keys,
federated workloads", the Secrets part), black box over HTTP: ``…/{id}/secrets``, rotate
with a grace period, ``secretExpiresAt``, ``lastUsedAt``, ``credentialsExpireAt``,
``?expiringWithinDays``, the ``centrali_credentials_expiring`` gauge, the audit events, and
the token endpoint's answer to each secret, down to a rotation under load from two replicas.

Expiry is real time: a secret made to expire 1.5–2.5 s ahead, then waited for. Last-use
times are flushed by calling the app's own flush rather than waiting for its 5 s tick.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx  # the HTTP library of Starlette's TestClient
import pytest
from fastapi.testclient import TestClient

from centrali.services.credential_usage import CredentialUsageCounter
from centrali.services.permissions import ADMIN_GROUP
from tests.api.test_ops import scrape, value
from tests.api.test_service_accounts import (
    ROTATION_FIELDS,
    SECRET_RE,
    assert_invalid_client,
    assert_token_ok,
    subject_of,
)
from tests.api.workspace_api import (
    OTHER_WS,
    WS,
    Env,
    assert_conflict,
    assert_forbidden,
    assert_invalid_request,
    assert_recent,
    assert_status,
    make_env,
    parse_utc,
)
from tests.factories import Factory

ACCOUNTS = "/service-accounts"
SECRET_FIELDS = {"id", "hint", "createdAt", "createdBy", "expiresAt", "lastUsedAt"}
WRONG_SECRET = "sk_" + "0" * 64
MAX_LIVE = 5
DAY = 86400
# The server writes last-use times every 5 s; a use must show within 10 s.
USAGE_VISIBLE_WITHIN = 10.0


@pytest.fixture
def env(factory: Factory, client: TestClient) -> Env:
    return make_env(factory, client, workspaces=(WS, OTHER_WS))


# --- helpers -------------------------------------------------------------------------------


def iso_at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_days(days: float) -> str:
    return iso_at(math.floor(time.time() + days * DAY))


def soon() -> tuple[str, float]:
    """An ``expiresAt`` 3 to 4 s ahead (whole second), and that instant: room for the few
    requests a test makes before it counts on the credential still being live, even on a
    loaded machine."""
    at = math.ceil(time.time() + 3)
    return iso_at(at), float(at)


def wait_past(epoch: float, slack: float = 0.3) -> None:
    time.sleep(max(0.0, epoch + slack - time.time()))


def secrets_path(account: dict[str, Any] | int) -> str:
    account_id = account if isinstance(account, int) else account["id"]
    return f"{ACCOUNTS}/{account_id}/secrets"


def list_secrets(
    env: Env, account: dict[str, Any], token: str | None = None
) -> list[dict[str, Any]]:
    body = assert_status(env.call("GET", secrets_path(account), token=token), 200)
    assert set(body) == {"data"}, body
    data: list[dict[str, Any]] = body["data"]
    return data


def add_secret(env: Env, account: dict[str, Any], body: Any = None) -> dict[str, Any]:
    r = env.call("POST", secrets_path(account), {} if body is None else body)
    return assert_status(r, 201)


def delete_secret(env: Env, account: dict[str, Any], secret_id: int | str) -> httpx.Response:
    return env.call("DELETE", f"{secrets_path(account)}/{secret_id}")


def rotate(env: Env, account: dict[str, Any], body: Any = None) -> dict[str, Any]:
    r = env.call("POST", f"{ACCOUNTS}/{account['id']}/rotate", body)
    return assert_status(r, 200)


def get_account(env: Env, account: dict[str, Any]) -> dict[str, Any]:
    return assert_status(env.call("GET", f"{ACCOUNTS}/{account['id']}"), 200)


def token_for(env: Env, account: dict[str, Any], secret: str) -> httpx.Response:
    response: httpx.Response = env.factory.token_response(account["clientId"], secret)
    return response


def assert_works(env: Env, account: dict[str, Any], secret: str) -> None:
    assert_token_ok(token_for(env, account, secret), account)


def assert_refused_like_a_wrong_secret(env: Env, account: dict[str, Any], secret: str) -> None:
    """401 ``invalid_client`` with exactly the answer a wrong secret gets."""
    wrong = token_for(env, account, WRONG_SECRET)
    assert_invalid_client(wrong)
    r = token_for(env, account, secret)
    assert r.status_code == wrong.status_code, (r.status_code, r.text)
    assert r.json() == wrong.json()
    for header in ("content-type", "cache-control", "www-authenticate"):
        assert r.headers.get(header) == wrong.headers.get(header), header


def hint_of(secret: str) -> str:
    return "…" + secret[-4:]


def audit_events(env: Env, account: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The workspace's audit events of ``action`` on ``account``, newest first, read over HTTP;
    none of them may carry a secret or a hash."""
    params = {"action": action, "target": account["clientId"], "limit": "100"}
    r = env.call("GET", "/audit-events", params=params)
    assert "sk_" not in r.text and "sha256$" not in r.text, r.text
    events: list[dict[str, Any]] = assert_status(r, 200)["data"]
    return events


def all_audit_text(env: Env) -> str:
    r = env.call("GET", "/audit-events", params={"limit": "100"})
    assert r.status_code == 200, r.text
    return r.text


def runtime_of(env: Env) -> Any:
    return env.api.app.app.state.runtime  # type: ignore[attr-defined]


def flush_usage(env: Env) -> None:
    """Write the app's in-memory last-use times to the store now, as its 5 s flush would."""
    usage: CredentialUsageCounter = runtime_of(env).credential_usage
    usage.flush(env.factory.db)


def wait_for_usage(env: Env, check: Callable[[], bool]) -> None:
    """Until ``check()`` holds: the last-use times reach the store every 5 s (or at once,
    flushed here) and must show within 10 s."""
    flush_usage(env)
    deadline = time.monotonic() + USAGE_VISIBLE_WITHIN
    while not check():
        assert time.monotonic() < deadline, "lastUsedAt did not show within 10 s"
        time.sleep(0.2)


def account_with_secrets(env: Env, extra: int) -> tuple[dict[str, Any], list[str]]:
    """An account with ``1 + extra`` live secrets, oldest first."""
    account = env.service_account(name="Several")
    secrets = [account["clientSecret"]]
    secrets += [add_secret(env, account)["clientSecret"] for _ in range(extra)]
    return account, secrets


def other_workspace_account(env: Env) -> dict[str, Any]:
    admin = env.user_token([ADMIN_GROUP], workspace=OTHER_WS)
    return env.service_account(admin=admin, workspace=OTHER_WS, name="Theirs")


# --- list ----------------------------------------------------------------------------------


def test_new_account_lists_its_one_secret_with_every_field(env: Env) -> None:
    account = env.service_account(name="One")
    assert type(account["secretId"]) is int
    [secret] = list_secrets(env, account)
    assert set(secret) == SECRET_FIELDS, secret
    assert secret["id"] == account["secretId"]
    assert secret["hint"] == hint_of(account["clientSecret"])
    made = parse_utc(account["createdAt"]).timestamp()
    assert abs(parse_utc(secret["createdAt"]).timestamp() - made) <= 1
    assert_recent(secret["createdAt"], slack=60)
    assert secret["createdBy"] == subject_of(env.admin)
    assert secret["expiresAt"] is None
    assert secret["lastUsedAt"] is None


def test_secret_list_never_shows_a_secret_or_hash(env: Env) -> None:
    account, secrets = account_with_secrets(env, 2)
    r = env.call("GET", secrets_path(account))
    assert r.status_code == 200, r.text
    assert "sk_" not in r.text and "sha256$" not in r.text
    for secret in secrets:
        assert secret[:-4] not in r.text


def test_secrets_are_listed_newest_first(env: Env) -> None:
    account = env.service_account(name="Ordered")
    added = [add_secret(env, account) for _ in range(3)]
    listed = list_secrets(env, account)
    expected = [s["id"] for s in reversed(added)] + [account["secretId"]]
    assert [s["id"] for s in listed] == expected
    assert [s["hint"] for s in listed[:3]] == [hint_of(s["clientSecret"]) for s in reversed(added)]
    created = [parse_utc(s["createdAt"]) for s in listed]
    assert created == sorted(created, reverse=True)


def test_account_answers_carry_last_used_and_credentials_expire_at(env: Env) -> None:
    account = env.service_account(name="Fresh")
    assert account["lastUsedAt"] is None
    assert account["credentialsExpireAt"] is None
    got = get_account(env, account)
    assert got["lastUsedAt"] is None and got["credentialsExpireAt"] is None
    assert "clientSecret" not in got
    [item] = assert_status(env.call("GET", ACCOUNTS), 200)["data"]
    assert item["lastUsedAt"] is None and item["credentialsExpireAt"] is None


# --- add -----------------------------------------------------------------------------------


def test_add_secret_answers_201_with_every_field_and_the_secret_once(env: Env) -> None:
    account = env.service_account(name="Adder")
    added = add_secret(env, account)
    assert set(added) == SECRET_FIELDS | {"clientSecret"}, added
    assert type(added["id"]) is int and added["id"] != account["secretId"]
    assert SECRET_RE.match(added["clientSecret"]), added["clientSecret"]
    assert added["clientSecret"] != account["clientSecret"]
    assert added["hint"] == hint_of(added["clientSecret"])
    assert_recent(added["createdAt"], slack=60)
    assert added["createdBy"] == subject_of(env.admin)
    assert added["expiresAt"] is None
    assert added["lastUsedAt"] is None
    listed = list_secrets(env, account)[0]
    assert listed == {k: v for k, v in added.items() if k != "clientSecret"}


def test_secret_added_by_another_admin_names_that_admin(env: Env) -> None:
    account = env.service_account(name="Two admins")
    other_admin = env.user_token([ADMIN_GROUP])
    r = env.call("POST", secrets_path(account), {}, token=other_admin)
    added = assert_status(r, 201)
    assert added["createdBy"] == subject_of(other_admin)
    listed = {s["id"]: s["createdBy"] for s in list_secrets(env, account)}
    assert listed == {
        account["secretId"]: subject_of(env.admin),
        added["id"]: subject_of(other_admin),
    }


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda env, path: env.call("POST", path), id="no-body"),
        pytest.param(lambda env, path: env.call("POST", path, {}), id="empty-object"),
        pytest.param(lambda env, path: env.send_raw("POST", path, ""), id="empty-json-body"),
    ],
)
def test_add_secret_body_is_optional(env: Env, send: Callable[[Env, str], httpx.Response]) -> None:
    account = env.service_account(name="No body")
    added = assert_status(send(env, secrets_path(account)), 201)
    assert added["expiresAt"] is None
    assert_works(env, account, added["clientSecret"])


@pytest.mark.parametrize(
    ("offset", "shift"),
    [
        pytest.param("Z", 0, id="utc-z"),
        pytest.param("+00:00", 0, id="utc-offset"),
        pytest.param("+02:00", -7200, id="plus-two-hours"),
        pytest.param("-05:30", 19800, id="minus-five-and-a-half-hours"),
    ],
)
def test_add_secret_with_expires_at_answers_it_in_utc(env: Env, offset: str, shift: int) -> None:
    account = env.service_account(name="Expiring")
    at = math.floor(time.time()) + 3 * DAY
    local = datetime.fromtimestamp(at - shift, UTC).strftime("%Y-%m-%dT%H:%M:%S") + offset
    added = add_secret(env, account, {"expiresAt": local})
    assert added["expiresAt"] == iso_at(at)
    assert list_secrets(env, account)[0]["expiresAt"] == iso_at(at)
    assert get_account(env, account)["credentialsExpireAt"] == iso_at(at)
    assert_works(env, account, added["clientSecret"])


def test_each_live_secret_gets_a_token(env: Env) -> None:
    account, secrets = account_with_secrets(env, MAX_LIVE - 1)
    assert len(set(secrets)) == MAX_LIVE
    for secret in secrets:
        assert_works(env, account, secret)
    # Each secret belongs to its own account only.
    other = env.service_account(name="Other")
    for secret in secrets:
        assert_refused_like_a_wrong_secret(env, other, secret)


def test_sixth_live_secret_is_409_conflict_and_adds_nothing(env: Env) -> None:
    account, secrets = account_with_secrets(env, MAX_LIVE - 1)
    before = list_secrets(env, account)
    added_events = audit_events(env, account, "service_account.secret_added")
    r = env.call("POST", secrets_path(account), {})
    assert_conflict(r)
    assert r.json()["error"] == "conflict"
    assert "clientSecret" not in r.json()
    assert list_secrets(env, account) == before
    assert audit_events(env, account, "service_account.secret_added") == added_events
    # Again with an expiry: still the limit.
    assert_conflict(env.call("POST", secrets_path(account), {"expiresAt": in_days(1)}))
    for secret in secrets:
        assert_works(env, account, secret)


def test_expired_and_deleted_secrets_do_not_count_toward_the_limit(env: Env) -> None:
    account, _ = account_with_secrets(env, MAX_LIVE - 3)
    expires_at, at = soon()
    add_secret(env, account, {"expiresAt": expires_at})
    doomed = add_secret(env, account)
    assert_conflict(env.call("POST", secrets_path(account), {}))
    assert delete_secret(env, account, doomed["id"]).status_code == 204
    add_secret(env, account)  # back to 5 live
    assert_conflict(env.call("POST", secrets_path(account), {}))
    wait_past(at)
    add_secret(env, account)  # the expired one no longer counts
    assert_conflict(env.call("POST", secrets_path(account), {}))
    assert len(list_secrets(env, account)) == MAX_LIVE + 1  # the expired one is still listed


BAD_EXPIRES: list[Any] = [
    pytest.param(lambda: {"expiresAt": iso_at(time.time() - 3600)}, "expiresAt", id="past"),
    pytest.param(lambda: {"expiresAt": iso_at(time.time() - 1)}, "expiresAt", id="just-past"),
    pytest.param(lambda: {"expiresAt": "2000-01-01T00:00:00Z"}, "expiresAt", id="year-2000"),
    pytest.param(lambda: {"expiresAt": "tomorrow"}, "expiresAt", id="malformed-word"),
    pytest.param(lambda: {"expiresAt": ""}, "expiresAt", id="malformed-empty"),
    pytest.param(lambda: {"expiresAt": "2099-13-01T00:00:00Z"}, "expiresAt", id="month-13"),
    pytest.param(lambda: {"expiresAt": "2099-02-30T00:00:00Z"}, "expiresAt", id="feb-30"),
    pytest.param(lambda: {"expiresAt": "2099-01-01T25:00:00Z"}, "expiresAt", id="hour-25"),
    pytest.param(lambda: {"expiresAt": "2099/01/01 00:00:00"}, "expiresAt", id="slashes"),
    pytest.param(lambda: {"expiresAt": 4102444800}, "expiresAt", id="epoch-int"),
    pytest.param(lambda: {"expiresAt": 4102444800.5}, "expiresAt", id="epoch-float"),
    pytest.param(lambda: {"expiresAt": True}, "expiresAt", id="bool"),
    pytest.param(lambda: {"expiresAt": ["2099-01-01T00:00:00Z"]}, "expiresAt", id="list"),
    pytest.param(lambda: {"expiresAt": {"at": "2099-01-01T00:00:00Z"}}, "expiresAt", id="object"),
    pytest.param(lambda: {"foo": 1}, None, id="unknown-field"),
    pytest.param(lambda: {"clientSecret": "sk_" + "1" * 64}, None, id="unknown-field-secret"),
    pytest.param(lambda: {"expiresAt": in_days(1), "hint": "…abcd"}, None, id="extra-field"),
    pytest.param(list, None, id="list-body"),
    pytest.param(lambda: "2099-01-01T00:00:00Z", None, id="string-body"),
]


@pytest.mark.parametrize(("make_body", "names"), BAD_EXPIRES)
def test_add_secret_with_bad_body_is_400_and_adds_nothing(
    env: Env, make_body: Callable[[], Any], names: str | None
) -> None:
    account = env.service_account(name="Strict")
    before = list_secrets(env, account)
    r = env.call("POST", secrets_path(account), make_body())
    assert_invalid_request(r, names)
    assert "clientSecret" not in r.json()
    assert list_secrets(env, account) == before
    assert audit_events(env, account, "service_account.secret_added") == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("{", id="malformed-json"),
        pytest.param('{"expiresAt": }', id="malformed-value"),
    ],
)
def test_add_secret_with_malformed_json_is_400(env: Env, raw: str) -> None:
    account = env.service_account(name="Strict")
    r = env.send_raw("POST", secrets_path(account), raw)
    assert_invalid_request(r)
    assert len(list_secrets(env, account)) == 1


def test_add_secret_with_a_date_without_timezone_is_400(env: Env) -> None:
    account = env.service_account(name="Naive")
    naive = datetime.fromtimestamp(time.time() + DAY, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert_invalid_request(env.call("POST", secrets_path(account), {"expiresAt": naive}))
    assert len(list_secrets(env, account)) == 1


# --- delete --------------------------------------------------------------------------------


def test_deleted_secret_is_refused_at_once_like_a_wrong_one(env: Env) -> None:
    account, (first, second) = account_with_secrets(env, 1)
    assert_works(env, account, first)
    r = delete_secret(env, account, account["secretId"])
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_refused_like_a_wrong_secret(env, account, first)
    assert_works(env, account, second)
    assert [s["hint"] for s in list_secrets(env, account)] == [hint_of(second)]


def test_deleting_the_last_live_secret_is_409_and_keeps_it(env: Env) -> None:
    account = env.service_account(name="Last one")
    r = delete_secret(env, account, account["secretId"])
    assert_conflict(r)
    assert r.json()["error"] == "conflict"
    assert [s["id"] for s in list_secrets(env, account)] == [account["secretId"]]
    assert_works(env, account, account["clientSecret"])
    assert audit_events(env, account, "service_account.secret_deleted") == []


def test_deleting_the_last_live_secret_is_409_even_beside_an_expired_one(env: Env) -> None:
    expires_at, at = soon()
    account = env.service_account(name="Expired beside", secretExpiresAt=expires_at)
    live = add_secret(env, account)
    wait_past(at)
    assert_conflict(delete_secret(env, account, live["id"]))
    assert delete_secret(env, account, account["secretId"]).status_code == 204
    assert_conflict(delete_secret(env, account, live["id"]))
    assert_works(env, account, live["clientSecret"])


def test_an_expired_secret_may_be_deleted_even_when_it_is_the_only_one(env: Env) -> None:
    expires_at, at = soon()
    account = env.service_account(name="Only expired", secretExpiresAt=expires_at)
    wait_past(at)
    r = delete_secret(env, account, account["secretId"])
    assert r.status_code == 204, r.text
    assert list_secrets(env, account) == []
    assert_refused_like_a_wrong_secret(env, account, account["clientSecret"])


def test_deleted_secret_is_404_the_second_time(env: Env) -> None:
    account, _ = account_with_secrets(env, 1)
    assert delete_secret(env, account, account["secretId"]).status_code == 204
    r = delete_secret(env, account, account["secretId"])
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "pick",
    [
        pytest.param(lambda env, mine, neighbour, theirs: 999_999, id="unknown-id"),
        pytest.param(lambda env, mine, neighbour, theirs: "abc", id="non-numeric-id"),
        pytest.param(lambda env, mine, neighbour, theirs: "0", id="zero"),
        pytest.param(lambda env, mine, neighbour, theirs: "-1", id="negative"),
        pytest.param(
            lambda env, mine, neighbour, theirs: neighbour["secretId"],
            id="secret-of-another-account",
        ),
        pytest.param(
            lambda env, mine, neighbour, theirs: theirs["secretId"],
            id="secret-of-another-workspace",
        ),
    ],
)
def test_deleting_a_secret_that_is_not_the_accounts_is_404(
    env: Env, pick: Callable[..., int | str]
) -> None:
    mine, _ = account_with_secrets(env, 1)
    neighbour, _ = account_with_secrets(env, 1)
    theirs = other_workspace_account(env)
    add_secret_in_other_workspace = env.call(
        "POST",
        secrets_path(theirs),
        {},
        token=env.user_token([ADMIN_GROUP], workspace=OTHER_WS),
        workspace=OTHER_WS,
    )
    assert add_secret_in_other_workspace.status_code == 201
    r = delete_secret(env, mine, pick(env, mine, neighbour, theirs))
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    assert len(list_secrets(env, mine)) == 2
    assert len(list_secrets(env, neighbour)) == 2
    assert_works(env, neighbour, neighbour["clientSecret"])
    assert token_for(env, theirs, theirs["clientSecret"]).status_code == 200


def test_secrets_of_another_workspace_account_are_404(env: Env) -> None:
    theirs = other_workspace_account(env)
    for method, suffix, body in (
        ("GET", "", None),
        ("POST", "", {}),
        ("DELETE", f"/{theirs['secretId']}", None),
    ):
        # Their account id under our workspace, with our admin.
        r = env.call(method, secrets_path(theirs) + suffix, body)
        assert r.status_code == 404, (method, r.status_code, r.text)
        assert r.json()["error"] == "not_found"
    assert token_for(env, theirs, theirs["clientSecret"]).status_code == 200


@pytest.mark.parametrize(
    "account_id",
    [pytest.param("999999", id="unknown"), pytest.param("abc", id="non-numeric")],
)
def test_secrets_of_an_unknown_account_are_404(env: Env, account_id: str) -> None:
    for method, suffix, body in (("GET", "", None), ("POST", "", {}), ("DELETE", "/1", None)):
        r = env.call(method, f"{ACCOUNTS}/{account_id}/secrets{suffix}", body)
        assert r.status_code == 404, (method, r.status_code, r.text)
        assert r.json()["error"] == "not_found"


# --- expiry --------------------------------------------------------------------------------


def test_expired_secret_is_refused_like_a_wrong_one_and_still_listed(env: Env) -> None:
    account = env.service_account(name="Expiry")
    expires_at, at = soon()
    added = add_secret(env, account, {"expiresAt": expires_at})
    assert added["expiresAt"] == expires_at
    assert get_account(env, account)["credentialsExpireAt"] == expires_at
    assert_works(env, account, added["clientSecret"])
    wait_past(at)
    assert_refused_like_a_wrong_secret(env, account, added["clientSecret"])
    assert_works(env, account, account["clientSecret"])
    listed = list_secrets(env, account)
    assert [s["id"] for s in listed] == [added["id"], account["secretId"]]
    assert listed[0]["expiresAt"] == expires_at
    # Only live secrets count for the account's earliest expiry.
    assert get_account(env, account)["credentialsExpireAt"] is None


def test_create_with_secret_expires_at(env: Env) -> None:
    at = in_days(10)
    account = env.service_account(name="Created expiring", secretExpiresAt=at)
    assert account["credentialsExpireAt"] == at
    assert "secretExpiresAt" not in account or account["secretExpiresAt"] == at
    [secret] = list_secrets(env, account)
    assert secret["id"] == account["secretId"]
    assert secret["expiresAt"] == at
    assert get_account(env, account)["credentialsExpireAt"] == at
    assert_works(env, account, account["clientSecret"])


def test_created_secret_expiring_soon_stops_working(env: Env) -> None:
    expires_at, at = soon()
    account = env.service_account(name="Short lived", secretExpiresAt=expires_at)
    assert_works(env, account, account["clientSecret"])
    wait_past(at)
    assert_refused_like_a_wrong_secret(env, account, account["clientSecret"])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda: iso_at(time.time() - 60), id="past"),
        pytest.param(lambda: "next week", id="malformed"),
        pytest.param(lambda: "2099-02-30T00:00:00Z", id="impossible-date"),
        pytest.param(lambda: 4102444800, id="int"),
        pytest.param(lambda: True, id="bool"),
        pytest.param(lambda: [in_days(1)], id="list"),
    ],
)
def test_create_with_bad_secret_expires_at_is_400_and_creates_nothing(
    env: Env, value: Callable[[], Any]
) -> None:
    before = assert_status(env.call("GET", ACCOUNTS), 200)
    r = env.call("POST", ACCOUNTS, {"name": "Refused", "secretExpiresAt": value()})
    assert_invalid_request(r, "secretExpiresAt")
    assert "clientSecret" not in r.json()
    assert assert_status(env.call("GET", ACCOUNTS), 200) == before


def test_credentials_expire_at_is_the_earliest_live_expiry(env: Env) -> None:
    account = env.service_account(name="Earliest")
    in_ten, in_five = in_days(10), in_days(5)
    add_secret(env, account, {"expiresAt": in_ten})
    assert get_account(env, account)["credentialsExpireAt"] == in_ten
    five = add_secret(env, account, {"expiresAt": in_five})
    assert get_account(env, account)["credentialsExpireAt"] == in_five
    items = assert_status(env.call("GET", ACCOUNTS), 200)["data"]
    assert [i["credentialsExpireAt"] for i in items if i["id"] == account["id"]] == [in_five]
    assert delete_secret(env, account, five["id"]).status_code == 204
    assert get_account(env, account)["credentialsExpireAt"] == in_ten


# --- rotate --------------------------------------------------------------------------------


def test_rotate_answers_the_guide_fields_plus_secret_id(env: Env) -> None:
    account = env.service_account(name="Rotated")
    rotated = rotate(env, account)
    assert set(rotated) == ROTATION_FIELDS | {"secretId"}, rotated
    assert type(rotated["secretId"]) is int
    assert rotated["id"] == account["id"] and rotated["clientId"] == account["clientId"]
    assert SECRET_RE.match(rotated["clientSecret"])
    assert rotated["clientSecret"] != account["clientSecret"]
    assert rotated["workspace"] == WS
    assert_recent(rotated["updatedAt"], slack=60)
    [newest] = list_secrets(env, account)
    assert newest["id"] == rotated["secretId"]
    assert newest["hint"] == hint_of(rotated["clientSecret"])
    assert newest["createdBy"] == subject_of(env.admin)
    assert newest["expiresAt"] is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="no-body"),
        pytest.param({}, id="empty-object"),
        pytest.param({"gracePeriodSeconds": 0}, id="grace-0"),
        pytest.param({"gracePeriodSeconds": 0, "revokeTokens": False}, id="grace-0-keep-tokens"),
    ],
)
def test_rotate_without_grace_kills_every_other_secret_at_once(env: Env, body: Any) -> None:
    account, old = account_with_secrets(env, 2)
    rotated = rotate(env, account, body)
    for secret in old:
        assert_refused_like_a_wrong_secret(env, account, secret)
    assert_works(env, account, rotated["clientSecret"])
    assert [s["id"] for s in list_secrets(env, account)] == [rotated["secretId"]]


def test_rotate_with_grace_keeps_old_secrets_until_the_grace_ends(env: Env) -> None:
    account, old = account_with_secrets(env, 1)
    far = add_secret(env, account, {"expiresAt": in_days(30)})
    old.append(far["clientSecret"])
    grace = 1
    sent = time.time()
    rotated = rotate(env, account, {"gracePeriodSeconds": grace})
    answered = time.time()
    for secret in [*old, rotated["clientSecret"]]:
        assert_works(env, account, secret)
    listed = list_secrets(env, account)
    assert listed[0]["id"] == rotated["secretId"] and listed[0]["expiresAt"] is None
    assert len(listed) == len(old) + 1
    for secret in listed[1:]:
        # Lowered to now + grace (to the second, either way).
        until = parse_utc(secret["expiresAt"]).timestamp()
        assert sent + grace - 1 <= until <= answered + grace + 1, secret
    assert get_account(env, account)["credentialsExpireAt"] == listed[1]["expiresAt"]
    wait_past(answered + grace, slack=1.1)
    for secret in old:
        assert_refused_like_a_wrong_secret(env, account, secret)
    assert_works(env, account, rotated["clientSecret"])
    assert get_account(env, account)["credentialsExpireAt"] is None


def test_rotate_with_grace_never_extends_an_earlier_expiry(env: Env) -> None:
    account = env.service_account(name="Keeps earlier")
    early = add_secret(env, account, {"expiresAt": in_days(1)})
    rotated = rotate(env, account, {"gracePeriodSeconds": 7 * DAY})
    by_id = {s["id"]: s for s in list_secrets(env, account)}
    assert by_id[early["id"]]["expiresAt"] == early["expiresAt"]
    week = parse_utc(by_id[account["secretId"]]["expiresAt"]).timestamp()
    assert abs(week - (time.time() + 7 * DAY)) < 60
    assert by_id[rotated["secretId"]]["expiresAt"] is None
    for secret in (account["clientSecret"], early["clientSecret"], rotated["clientSecret"]):
        assert_works(env, account, secret)


def test_rotate_with_grace_leaves_deleted_secrets_dead(env: Env) -> None:
    account, (first, second) = account_with_secrets(env, 1)
    assert delete_secret(env, account, account["secretId"]).status_code == 204
    rotated = rotate(env, account, {"gracePeriodSeconds": 600})
    assert_refused_like_a_wrong_secret(env, account, first)
    assert_works(env, account, second)
    assert_works(env, account, rotated["clientSecret"])
    assert len(list_secrets(env, account)) == 2


def test_rotate_expires_at_applies_to_the_new_secret(env: Env) -> None:
    account = env.service_account(name="New expires")
    at = in_days(20)
    rotated = rotate(env, account, {"expiresAt": at, "gracePeriodSeconds": 3600})
    by_id = {s["id"]: s for s in list_secrets(env, account)}
    assert by_id[rotated["secretId"]]["expiresAt"] == at
    old_until = parse_utc(by_id[account["secretId"]]["expiresAt"]).timestamp()
    assert abs(old_until - (time.time() + 3600)) < 60
    assert (
        get_account(env, account)["credentialsExpireAt"] == by_id[account["secretId"]]["expiresAt"]
    )
    assert_works(env, account, rotated["clientSecret"])


@pytest.mark.parametrize("grace", [0, 60])
def test_rotate_is_allowed_at_five_live_secrets(env: Env, grace: int) -> None:
    account, old = account_with_secrets(env, MAX_LIVE - 1)
    assert_conflict(env.call("POST", secrets_path(account), {}))
    rotated = rotate(env, account, {"gracePeriodSeconds": grace})
    assert_works(env, account, rotated["clientSecret"])
    listed = list_secrets(env, account)
    assert listed[0]["id"] == rotated["secretId"]
    if grace == 0:
        assert len(listed) == 1
        assert_refused_like_a_wrong_secret(env, account, old[0])
    else:
        assert len(listed) == MAX_LIVE + 1
        for secret in old:
            assert_works(env, account, secret)
        # Six live for now: still no room for another added secret.
        assert_conflict(env.call("POST", secrets_path(account), {}))


@pytest.mark.parametrize("grace", [1, 604800], ids=["grace-1", "grace-max"])
def test_rotate_accepts_grace_at_the_bounds(env: Env, grace: int) -> None:
    account = env.service_account(name="Bounds")
    rotated = rotate(env, account, {"gracePeriodSeconds": grace})
    assert_works(env, account, account["clientSecret"])
    assert_works(env, account, rotated["clientSecret"])


BAD_ROTATE: list[Any] = [
    pytest.param({"gracePeriodSeconds": -1}, "gracePeriodSeconds", id="grace-negative"),
    pytest.param({"gracePeriodSeconds": 604801}, "gracePeriodSeconds", id="grace-over-a-week"),
    pytest.param({"gracePeriodSeconds": 10**30}, "gracePeriodSeconds", id="grace-huge"),
    pytest.param({"gracePeriodSeconds": "10"}, "gracePeriodSeconds", id="grace-string"),
    pytest.param({"gracePeriodSeconds": True}, "gracePeriodSeconds", id="grace-true"),
    pytest.param({"gracePeriodSeconds": False}, "gracePeriodSeconds", id="grace-false"),
    pytest.param({"gracePeriodSeconds": 1.5}, "gracePeriodSeconds", id="grace-fraction"),
    pytest.param({"gracePeriodSeconds": [10]}, "gracePeriodSeconds", id="grace-list"),
    pytest.param({"expiresAt": "2000-01-01T00:00:00Z"}, "expiresAt", id="expires-past"),
    pytest.param({"expiresAt": "soon"}, "expiresAt", id="expires-malformed"),
    pytest.param({"expiresAt": 4102444800}, "expiresAt", id="expires-int"),
    pytest.param({"revokeTokens": "yes"}, "revokeTokens", id="revoke-tokens-string"),
    pytest.param({"grace": 10}, None, id="unknown-field"),
]


@pytest.mark.parametrize(("body", "names"), BAD_ROTATE)
def test_rotate_with_bad_body_is_400_and_changes_nothing(
    env: Env, body: dict[str, Any], names: str | None
) -> None:
    account, secrets = account_with_secrets(env, 1)
    before = list_secrets(env, account)
    r = env.call("POST", f"{ACCOUNTS}/{account['id']}/rotate", body)
    assert_invalid_request(r, names)
    assert "clientSecret" not in r.json()
    assert list_secrets(env, account) == before
    for secret in secrets:
        assert_works(env, account, secret)
    assert audit_events(env, account, "service_account.rotated") == []


# --- lastUsedAt ----------------------------------------------------------------------------


def test_last_used_at_shows_on_the_secret_and_the_account_after_a_token(env: Env) -> None:
    account, (used, unused) = account_with_secrets(env, 1)
    assert_works(env, account, used)
    by_hint: dict[str, dict[str, Any]] = {}

    def shown() -> bool:
        by_hint.clear()
        by_hint.update({s["hint"]: s for s in list_secrets(env, account)})
        return by_hint[hint_of(used)]["lastUsedAt"] is not None

    wait_for_usage(env, shown)
    assert_recent(by_hint[hint_of(used)]["lastUsedAt"], slack=30)
    assert by_hint[hint_of(unused)]["lastUsedAt"] is None
    got = get_account(env, account)
    assert_recent(got["lastUsedAt"], slack=30)
    [item] = assert_status(env.call("GET", ACCOUNTS), 200)["data"]
    assert item["lastUsedAt"] == got["lastUsedAt"]


def test_a_refused_secret_leaves_last_used_at_alone(env: Env) -> None:
    account, (first, _second) = account_with_secrets(env, 1)
    assert_refused_like_a_wrong_secret(env, account, WRONG_SECRET)
    assert delete_secret(env, account, account["secretId"]).status_code == 204
    assert_refused_like_a_wrong_secret(env, account, first)
    # A later use of another account shows, so the flush has happened by then.
    witness = env.service_account(name="Witness")
    assert_works(env, witness, witness["clientSecret"])
    wait_for_usage(env, lambda: get_account(env, witness)["lastUsedAt"] is not None)
    assert get_account(env, account)["lastUsedAt"] is None
    assert all(s["lastUsedAt"] is None for s in list_secrets(env, account))


# --- expiringWithinDays --------------------------------------------------------------------


@pytest.fixture
def expiring(env: Env) -> dict[str, dict[str, Any]]:
    """Accounts whose earliest live secret expires never / in 3 days / in 20 days, one whose
    only expiring secret was deleted, and one of another workspace expiring tomorrow."""
    never = env.service_account(name="Never")
    in_three = env.service_account(name="In three days", secretExpiresAt=in_days(3))
    in_twenty = env.service_account(name="In twenty days")
    add_secret(env, in_twenty, {"expiresAt": in_days(20)})
    add_secret(env, in_twenty, {"expiresAt": in_days(40)})
    deleted = env.service_account(name="Deleted expiring")
    gone = add_secret(env, deleted, {"expiresAt": in_days(2)})
    assert delete_secret(env, deleted, gone["id"]).status_code == 204
    admin = env.user_token([ADMIN_GROUP], workspace=OTHER_WS)
    env.service_account(admin=admin, workspace=OTHER_WS, name="Theirs", secretExpiresAt=in_days(1))
    return {"never": never, "three": in_three, "twenty": in_twenty, "deleted": deleted}


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        pytest.param("1", [], id="1-day"),
        pytest.param("2", [], id="2-days"),
        pytest.param("7", ["three"], id="7-days"),
        pytest.param("30", ["three", "twenty"], id="30-days"),
        pytest.param("3650", ["three", "twenty"], id="3650-days"),
    ],
)
def test_expiring_within_days_lists_only_accounts_with_a_live_secret_expiring_by_then(
    env: Env, expiring: dict[str, dict[str, Any]], days: str, expected: list[str]
) -> None:
    body = assert_status(
        env.call("GET", ACCOUNTS, params={"expiringWithinDays": days, "limit": "100"}), 200
    )
    assert [i["id"] for i in body["data"]] == [expiring[name]["id"] for name in expected]
    assert body["total"] == len(expected)
    for item in body["data"]:
        assert item["credentialsExpireAt"] is not None
        assert parse_utc(item["credentialsExpireAt"]).timestamp() <= time.time() + int(days) * DAY


def test_expiring_within_days_combines_with_paging(
    env: Env, expiring: dict[str, dict[str, Any]]
) -> None:
    three, twenty = expiring["three"]["id"], expiring["twenty"]["id"]
    query = {"expiringWithinDays": "30", "limit": "1"}
    first = assert_status(env.call("GET", ACCOUNTS, params=query), 200)
    assert ([i["id"] for i in first["data"]], first["total"]) == ([three], 2)
    assert first["nextAfter"] == three
    second = assert_status(env.call("GET", ACCOUNTS, params=query | {"page": "2"}), 200)
    assert ([i["id"] for i in second["data"]], second["total"]) == ([twenty], 2)
    keyset = assert_status(env.call("GET", ACCOUNTS, params=query | {"after": str(three)}), 200)
    assert ([i["id"] for i in keyset["data"]], keyset["total"]) == ([twenty], 2)
    last = assert_status(env.call("GET", ACCOUNTS, params=query | {"after": str(twenty)}), 200)
    assert last["data"] == [] and last["nextAfter"] is None


def test_expiring_within_days_leaves_out_expired_secrets(env: Env) -> None:
    expires_at, at = soon()
    account = env.service_account(name="Expires now", secretExpiresAt=expires_at)
    add_secret(env, account)
    query = {"expiringWithinDays": "1"}
    listed = assert_status(env.call("GET", ACCOUNTS, params=query), 200)
    assert [i["id"] for i in listed["data"]] == [account["id"]]
    wait_past(at)
    assert assert_status(env.call("GET", ACCOUNTS, params=query), 200)["data"] == []


@pytest.mark.parametrize(
    "days",
    [
        pytest.param("0", id="zero"),
        pytest.param("3651", id="over-ten-years"),
        pytest.param("x", id="word"),
        pytest.param("-1", id="negative"),
        pytest.param("1.5", id="fraction"),
        pytest.param("", id="empty"),
        pytest.param("9" * 30, id="huge"),
    ],
)
def test_expiring_within_days_out_of_range_is_400(env: Env, days: str) -> None:
    env.service_account(name="Any", secretExpiresAt=in_days(1))
    r = env.call("GET", ACCOUNTS, params={"expiringWithinDays": days})
    assert_invalid_request(r, "expiringWithinDays")


# --- metrics -------------------------------------------------------------------------------

EXPIRING = "centrali_credentials_expiring"


def test_metrics_count_live_credentials_expiring_within_7_and_30_days(env: Env) -> None:
    """Every workspace counts; deleted, non-expiring and far-off secrets do not."""
    env.service_account(name="In three days", secretExpiresAt=in_days(3))
    later = env.service_account(name="In twenty days")
    add_secret(env, later, {"expiresAt": in_days(20)})
    add_secret(env, later, {"expiresAt": in_days(100)})
    add_secret(env, later, {"expiresAt": in_days(6)})
    gone = add_secret(env, later, {"expiresAt": in_days(2)})
    assert delete_secret(env, later, gone["id"]).status_code == 204
    admin = env.user_token([ADMIN_GROUP], workspace=OTHER_WS)
    env.service_account(admin=admin, workspace=OTHER_WS, name="Theirs", secretExpiresAt=in_days(1))
    expected = {"7d": 3.0, "30d": 4.0}
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(env.api)
        got = {w: value(samples, EXPIRING, within=w) for w in expected}
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == expected, [k for k in samples if k[0] == EXPIRING]


# --- audit ---------------------------------------------------------------------------------


def test_adding_a_secret_writes_secret_added_with_its_id_and_expiry(env: Env) -> None:
    account = env.service_account(name="Audited add")
    at = in_days(9)
    plain, expiring_secret = add_secret(env, account), add_secret(env, account, {"expiresAt": at})
    events = audit_events(env, account, "service_account.secret_added")
    assert [e["details"] for e in events] == [
        {"id": account["id"], "secretId": expiring_secret["id"], "expiresAt": at},
        {"id": account["id"], "secretId": plain["id"], "expiresAt": None},
    ]
    for event in events:
        assert event["actor"] == subject_of(env.admin)
        assert event["target"] == account["clientId"]
    text = all_audit_text(env)
    for secret in (account["clientSecret"], plain["clientSecret"], expiring_secret["clientSecret"]):
        assert secret not in text and secret[-8:] not in text


def test_deleting_a_secret_writes_secret_deleted_with_its_id(env: Env) -> None:
    account, _ = account_with_secrets(env, 1)
    assert delete_secret(env, account, account["secretId"]).status_code == 204
    [event] = audit_events(env, account, "service_account.secret_deleted")
    assert event["details"] == {"id": account["id"], "secretId": account["secretId"]}
    assert event["actor"] == subject_of(env.admin)


@pytest.mark.parametrize(
    ("body", "grace", "revoke"),
    [
        pytest.param(None, 0, False, id="no-body"),
        pytest.param({"gracePeriodSeconds": 300}, 300, False, id="grace"),
        pytest.param({"revokeTokens": True}, 0, True, id="revoke-tokens"),
        pytest.param(
            {"gracePeriodSeconds": 60, "revokeTokens": True}, 60, True, id="grace-and-revoke"
        ),
    ],
)
def test_rotate_writes_rotated_with_secret_id_and_grace(
    env: Env, body: dict[str, Any] | None, grace: int, revoke: bool
) -> None:
    account = env.service_account(name="Audited rotate")
    rotated = rotate(env, account, body)
    [event] = audit_events(env, account, "service_account.rotated")
    assert event["details"] == {
        "id": account["id"],
        "secretId": rotated["secretId"],
        "gracePeriodSeconds": grace,
        "revokeTokens": revoke,
    }
    text = all_audit_text(env)
    assert "sk_" not in text and "sha256$" not in text
    assert rotated["clientSecret"][-8:] not in text


def test_refused_secret_calls_write_no_audit_event(env: Env) -> None:
    account = env.service_account(name="Quiet")
    before = all_audit_text(env)
    env.call("GET", secrets_path(account))
    env.call("POST", secrets_path(account), {"expiresAt": "2000-01-01T00:00:00Z"})
    delete_secret(env, account, account["secretId"])  # the last one: 409
    delete_secret(env, account, 999_999)
    env.call("POST", f"{ACCOUNTS}/{account['id']}/rotate", {"gracePeriodSeconds": -1})
    developer = env.user_token(["developers"])
    env.call("POST", secrets_path(account), {}, token=developer)
    assert all_audit_text(env) == before


# --- who may call --------------------------------------------------------------------------


def _developer(env: Env, account: dict[str, Any]) -> str:
    return env.user_token(["developers"])


def _member_without_groups(env: Env, account: dict[str, Any]) -> str:
    return env.user_token([])


def _service_account_token(env: Env, account: dict[str, Any]) -> str:
    return env.sa_token(account)


def _other_workspace_admin(env: Env, account: dict[str, Any]) -> str:
    return env.user_token([ADMIN_GROUP], workspace=OTHER_WS)


SECRET_ROUTES: list[Any] = [
    pytest.param("GET", "", None, id="list"),
    pytest.param("POST", "", {}, id="add"),
    pytest.param("DELETE", "/{secret}", None, id="delete"),
    pytest.param("POST", "rotate", {"gracePeriodSeconds": 60}, id="rotate-with-grace"),
]


@pytest.mark.parametrize(("method", "suffix", "body"), SECRET_ROUTES)
@pytest.mark.parametrize(
    "caller",
    [
        pytest.param(_developer, id="developer"),
        pytest.param(_member_without_groups, id="member-without-groups"),
        pytest.param(_service_account_token, id="service-account"),
        pytest.param(_other_workspace_admin, id="admin-of-another-workspace"),
    ],
)
def test_caller_without_service_accounts_manage_is_403_and_changes_nothing(
    env: Env,
    method: str,
    suffix: str,
    body: Any,
    caller: Callable[[Env, dict[str, Any]], str],
) -> None:
    account, secrets = account_with_secrets(env, 1)
    token = caller(env, account)
    if caller is _service_account_token:
        # Its token request is a use: let it reach the store before the snapshot.
        wait_for_usage(env, lambda: get_account(env, account)["lastUsedAt"] is not None)
    before = (list_secrets(env, account), all_audit_text(env))
    if suffix == "rotate":
        path = f"{ACCOUNTS}/{account['id']}/rotate"
    else:
        path = secrets_path(account) + suffix.format(secret=account["secretId"])
    r = env.call(method, path, body, token=token)
    assert_forbidden(r)
    assert "clientSecret" not in r.text
    assert (list_secrets(env, account), all_audit_text(env)) == before
    for secret in secrets:
        assert_works(env, account, secret)


@pytest.mark.parametrize(("method", "suffix", "body"), SECRET_ROUTES)
def test_no_token_is_401(env: Env, method: str, suffix: str, body: Any) -> None:
    account, _ = account_with_secrets(env, 1)
    if suffix == "rotate":
        path = f"{ACCOUNTS}/{account['id']}/rotate"
    else:
        path = secrets_path(account) + suffix.format(secret=account["secretId"])
    r = env.call(method, path, body, headers={})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized"
    assert len(list_secrets(env, account)) == 2


# --- revoked and deleted accounts ----------------------------------------------------------


def test_revoked_account_secrets_fail_and_work_again_after_activate(env: Env) -> None:
    account, secrets = account_with_secrets(env, 2)
    assert env.call("POST", f"{ACCOUNTS}/{account['id']}/revoke").status_code == 200
    for secret in secrets:
        assert_refused_like_a_wrong_secret(env, account, secret)
    assert len(list_secrets(env, account)) == 3  # kept while revoked
    assert env.call("POST", f"{ACCOUNTS}/{account['id']}/activate").status_code == 200
    for secret in secrets:
        assert_works(env, account, secret)


def test_secret_added_while_revoked_fails_until_activate(env: Env) -> None:
    account = env.service_account(name="Revoked adder")
    assert env.call("POST", f"{ACCOUNTS}/{account['id']}/revoke").status_code == 200
    r = env.call("POST", secrets_path(account), {})
    if r.status_code == 201:
        added = r.json()["clientSecret"]
        assert_refused_like_a_wrong_secret(env, account, added)
        assert env.call("POST", f"{ACCOUNTS}/{account['id']}/activate").status_code == 200
        assert_works(env, account, added)
    else:
        assert r.status_code in (400, 409), r.text


def test_deleted_account_secrets_fail_and_are_gone(env: Env) -> None:
    account, secrets = account_with_secrets(env, 2)
    assert env.call("DELETE", f"{ACCOUNTS}/{account['id']}").status_code == 204
    for secret in secrets:
        assert_refused_like_a_wrong_secret(env, account, secret)
    r = env.call("GET", secrets_path(account))
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"


# --- zero-downtime rotation ----------------------------------------------------------------


def test_zero_downtime_rotation_with_two_replicas(env: Env) -> None:
    """Two replicas ask for tokens in a loop, each with its own copy of the secret; after a
    rotate with a 3 s grace, B switches to the new secret and A keeps the old one. No request
    fails before the grace ends; afterwards the old secret is refused, the new one works."""
    account = env.service_account(name="Replicated")
    grace = 3.0
    shared: dict[str, Any] = {"b_secret": account["clientSecret"]}
    results: list[tuple[str, float, float, int]] = []  # replica, sent, answered, status
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def replica(name: str) -> None:
        try:
            while not stop.is_set():
                secret = account["clientSecret"] if name == "A" else shared["b_secret"]
                sent = time.time()
                r = token_for(env, account, secret)
                with lock:
                    results.append((name, sent, time.time(), r.status_code))
                time.sleep(0.02)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(n,), daemon=True) for n in "AB"]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        rotate_sent = time.time()
        rotated = rotate(env, account, {"gracePeriodSeconds": int(grace)})
        shared["b_secret"] = rotated["clientSecret"]
        # Run until shortly before the grace can have ended.
        time.sleep(max(0.0, rotate_sent + grace - 0.3 - time.time()))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    in_grace = [r for r in results if r[2] < rotate_sent + grace - 0.3]
    assert {r[0] for r in in_grace} == {"A", "B"}
    assert sum(1 for r in in_grace if r[1] > rotate_sent) >= 4, results
    failed = [r for r in in_grace if r[3] != 200]
    assert failed == [], failed
    wait_past(rotate_sent + grace, slack=1.1)
    assert_refused_like_a_wrong_secret(env, account, account["clientSecret"])
    assert_works(env, account, rotated["clientSecret"])


def test_a_secret_in_use_while_it_is_deleted_gets_200_or_401_and_401_after(env: Env) -> None:
    """Token requests racing a delete of their secret get 200 or 401 (never a 500), and 401
    for every request sent once the delete has answered."""
    account, (doomed, kept) = account_with_secrets(env, 1)
    seen: list[tuple[float, int]] = []  # sent, status
    stop = threading.Event()

    def hammer() -> None:
        # Until the first refusal: more would run into the failed-request limit (429).
        while not stop.is_set():
            sent = time.time()
            status = token_for(env, account, doomed).status_code
            seen.append((sent, status))
            if status != 200:
                return

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        time.sleep(0.2)
        assert delete_secret(env, account, account["secretId"]).status_code == 204
        deleted = time.time()
        thread.join(timeout=5)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert {status for _, status in seen} <= {200, 401}, seen
    assert seen[-1][1] == 401, seen
    assert all(status == 401 for sent, status in seen if sent >= deleted), seen
    assert_works(env, account, kept)


def test_audit_text_never_holds_a_secret_after_a_full_secret_lifecycle(env: Env) -> None:
    account = env.service_account(name="Lifecycle", secretExpiresAt=in_days(30))
    shown = [account["clientSecret"]]
    added = add_secret(env, account, {"expiresAt": in_days(5)})
    shown.append(added["clientSecret"])
    assert delete_secret(env, account, added["id"]).status_code == 204
    shown.append(rotate(env, account, {"gracePeriodSeconds": 60})["clientSecret"])
    shown.append(rotate(env, account)["clientSecret"])
    text = all_audit_text(env)
    assert "sk_" not in text and "sha256$" not in text
    for secret in shown:
        assert secret[3:] not in text and secret[-8:] not in text
    actions = [e["action"] for e in json.loads(text)["data"]]
    assert actions.count("service_account.secret_added") == 1
    assert actions.count("service_account.secret_deleted") == 1
    assert actions.count("service_account.rotated") == 2

"""Federated credentials (contract: "Credentials: several secrets, keys, federated
workloads", the Federated part and the common rules), black box over HTTP:
``…/{id}/federated-credentials`` with every field and answer, the issuer rules (https only
unless ``CENTRALI_FEDERATION_ALLOW_HTTP``), the audience default, duplicates, the limit, the
last live credential across kinds, expiry, ``credentialsExpireAt``, ``?expiringWithinDays``,
the gauge, ``lastUsedAt``, the audit events, and who may call. The token endpoint's side is
tested elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx  # the HTTP library of Starlette's TestClient
import pytest
from fastapi.testclient import TestClient

from centrali.config import Settings
from centrali.oauth.ports import FEDERATED
from centrali.services.permissions import ADMIN_GROUP
from centrali.store.db import Database
from centrali.web.app import create_app
from tests.api.test_keys_api import add_key, delete_key, keys_path, stored_client
from tests.api.test_ops import scrape, value
from tests.api.test_secrets import (
    ACCOUNTS,
    EXPIRING,
    all_audit_text,
    audit_events,
    delete_secret,
    get_account,
    in_days,
    other_workspace_account,
    rotate,
    runtime_of,
    soon,
    wait_past,
)
from tests.api.test_service_accounts import subject_of
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
)
from tests.conftest import ISSUER
from tests.factories import Factory

FEDERATED_FIELDS = {
    "id",
    "name",
    "issuer",
    "subject",
    "audience",
    "createdAt",
    "createdBy",
    "expiresAt",
    "lastUsedAt",
}
MAX_FEDERATED = 20
GITHUB = "https://token.actions.githubusercontent.com"
REPO_SUBJECT = "repo:acme/api:ref:refs/heads/main"


@pytest.fixture
def env(factory: Factory, client: TestClient) -> Env:
    return make_env(factory, client, workspaces=(WS, OTHER_WS))


# --- helpers -------------------------------------------------------------------------------


def federated_path(account: dict[str, Any] | int) -> str:
    account_id = account if isinstance(account, int) else account["id"]
    return f"{ACCOUNTS}/{account_id}/federated-credentials"


def credential(**fields: Any) -> dict[str, Any]:
    return {"name": "CI deploys", "issuer": GITHUB, "subject": REPO_SUBJECT, **fields}


def post_federated(env: Env, account: dict[str, Any], body: Any) -> httpx.Response:
    return env.call("POST", federated_path(account), body)


def add_federated(env: Env, account: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return assert_status(post_federated(env, account, credential(**fields)), 201)


def list_federated(env: Env, account: dict[str, Any]) -> list[dict[str, Any]]:
    body = assert_status(env.call("GET", federated_path(account)), 200)
    assert set(body) == {"data"}, body
    data: list[dict[str, Any]] = body["data"]
    return data


def delete_federated(env: Env, account: dict[str, Any], cid: int | str) -> httpx.Response:
    return env.call("DELETE", f"{federated_path(account)}/{cid}")


# --- add -----------------------------------------------------------------------------------


def test_add_answers_201_with_every_field_and_the_default_audience(env: Env) -> None:
    account = env.service_account(name="Workload")
    r = post_federated(env, account, credential())
    body = assert_status(r, 201)
    assert set(body) == FEDERATED_FIELDS, body
    assert type(body["id"]) is int
    assert (body["name"], body["issuer"], body["subject"]) == ("CI deploys", GITHUB, REPO_SUBJECT)
    # The audience defaults to this server's issuer.
    assert body["audience"] == ISSUER
    assert body["createdBy"] == subject_of(env.admin)
    assert_recent(body["createdAt"])
    assert body["expiresAt"] is None and body["lastUsedAt"] is None
    assert r.headers["cache-control"] == "no-store"
    assert list_federated(env, account) == [body]
    [stored] = stored_client(env, account).federated
    assert (stored.id, stored.issuer, stored.subject, stored.audience) == (
        body["id"],
        GITHUB,
        REPO_SUBJECT,
        ISSUER,
    )
    assert stored.expires_at_ms is None


def test_add_with_every_field(env: Env) -> None:
    account = env.service_account(name="Every field")
    at = in_days(30)
    body = add_federated(
        env,
        account,
        name="  Kubernetes pods  ",
        issuer="https://oidc.eks.eu-west-1.amazonaws.com/id/ABC123",
        subject="system:serviceaccount:prod:api",
        audience="centrali",
        expiresAt=at,
    )
    assert body["name"] == "Kubernetes pods"
    assert body["audience"] == "centrali"
    assert body["expiresAt"] == at
    assert get_account(env, account)["credentialsExpireAt"] == at
    [stored] = stored_client(env, account).federated
    assert stored.audience == "centrali" and stored.expires_at_ms is not None


@pytest.mark.parametrize(
    "issuer",
    [
        pytest.param("https://issuer.example", id="host"),
        pytest.param("https://issuer.example/", id="trailing-slash"),
        pytest.param("https://issuer.example:8443/tenant/v2.0", id="port-and-path"),
        pytest.param("https://unreachable.invalid", id="never-contacted"),
        pytest.param("https://" + "a" * 500 + ".io", id="512-chars"),
    ],
)
def test_https_issuers_are_accepted_as_given(env: Env, issuer: str) -> None:
    account = env.service_account(name="Issuers")
    assert add_federated(env, account, issuer=issuer)["issuer"] == issuer


BAD_ISSUERS = [
    pytest.param("http://issuer.example", id="http"),
    pytest.param("ftp://issuer.example", id="ftp"),
    pytest.param("issuer.example", id="no-scheme"),
    pytest.param("https://", id="no-host"),
    pytest.param("https:///path", id="empty-host"),
    pytest.param("https://issuer.example?tenant=1", id="query"),
    pytest.param("https://issuer.example/?", id="empty-query"),
    pytest.param("https://issuer.example#frag", id="fragment"),
    pytest.param("https://user@issuer.example", id="userinfo"),
    pytest.param("https://issuer.example:99999", id="bad-port"),
    pytest.param("https://issuer .example", id="space"),
    pytest.param(" https://issuer.example", id="leading-space"),
    pytest.param("https://issuer.example/\n", id="newline"),
    pytest.param("", id="empty"),
    pytest.param("https://" + "a" * 510, id="513-chars"),
]


@pytest.mark.parametrize("issuer", BAD_ISSUERS)
def test_a_bad_issuer_is_400_and_adds_nothing(env: Env, issuer: str) -> None:
    account = env.service_account(name="Bad issuer")
    assert_invalid_request(post_federated(env, account, credential(issuer=issuer)), "issuer")
    assert list_federated(env, account) == []


@pytest.fixture
def http_env(
    factory: Factory, settings: Settings, db: Database, client: TestClient
) -> Iterator[Env]:
    """A second app on the same store with CENTRALI_FEDERATION_ALLOW_HTTP=true."""
    allowing = settings.model_copy(update={"federation_allow_http": True})
    with TestClient(
        create_app(allowing, db=db), base_url=ISSUER, raise_server_exceptions=False
    ) as api:
        factory.workspace(WS)
        yield Env(factory=factory, api=api, workspace=WS)


def test_http_issuer_only_with_the_setting(http_env: Env) -> None:
    assert Settings().federation_allow_http is False
    account = http_env.service_account(name="Local issuer")
    body = add_federated(http_env, account, issuer="http://127.0.0.1:9000/realms/dev")
    assert body["issuer"] == "http://127.0.0.1:9000/realms/dev"
    # Still an URL with a host, no query or fragment; no other scheme.
    for bad in ("http://", "http://x?y=1", "ftp://x"):
        r = post_federated(http_env, account, credential(issuer=bad, subject=bad))
        assert_invalid_request(r, "issuer")


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        pytest.param({"name": ""}, "name", id="name-empty"),
        pytest.param({"name": "   "}, "name", id="name-blank"),
        pytest.param({"name": "n" * 201}, "name", id="name-201"),
        pytest.param({"subject": ""}, "subject", id="subject-empty"),
        pytest.param({"subject": "s" * 513}, "subject", id="subject-513"),
        pytest.param({"subject": "a\x01b"}, "subject", id="subject-control"),
        pytest.param({"audience": ""}, "audience", id="audience-empty"),
        pytest.param({"audience": "a" * 513}, "audience", id="audience-513"),
        pytest.param({"audience": 5}, "audience", id="audience-number"),
        pytest.param({"subject": ["s"]}, "subject", id="subject-list"),
        pytest.param({"issuer": None}, "issuer", id="issuer-null"),
        pytest.param({"expiresAt": "2000-01-01T00:00:00Z"}, "expiresAt", id="past"),
        pytest.param({"expiresAt": "soon"}, "expiresAt", id="malformed-expiry"),
        pytest.param({"expiresAt": "2099-01-01T00:00:00"}, "expiresAt", id="expiry-no-offset"),
        pytest.param({"extra": True}, "extra", id="unknown-field"),
    ],
)
def test_a_bad_field_is_400_naming_it(env: Env, fields: dict[str, Any], names: str) -> None:
    account = env.service_account(name="Bad fields")
    assert_invalid_request(post_federated(env, account, credential(**fields)), names)
    assert list_federated(env, account) == []


@pytest.mark.parametrize("missing", ["name", "issuer", "subject"])
def test_a_missing_required_field_is_400(env: Env, missing: str) -> None:
    account = env.service_account(name="Missing")
    body = {k: v for k, v in credential().items() if k != missing}
    assert_invalid_request(post_federated(env, account, body), missing)


def test_bounds_are_accepted(env: Env) -> None:
    account = env.service_account(name="Bounds")
    body = add_federated(env, account, name="n" * 200, subject="s" * 512, audience="a" * 512)
    assert (len(body["name"]), len(body["subject"]), len(body["audience"])) == (200, 512, 512)
    assert add_federated(env, account, name="x", subject="y", audience="z")["subject"] == "y"


def test_the_same_issuer_subject_and_audience_is_409(env: Env) -> None:
    account = env.service_account(name="Duplicates")
    first = add_federated(env, account)
    r = post_federated(env, account, credential(name="Another name"))
    assert_conflict(r)
    assert r.json()["error"] == "conflict"
    # The default audience is the issuer: naming it is the same triple.
    assert_conflict(post_federated(env, account, credential(audience=ISSUER)))
    # Any one of the three differing is another credential.
    add_federated(env, account, audience="other-audience")
    add_federated(env, account, subject=REPO_SUBJECT + ":env")
    add_federated(env, account, issuer=GITHUB + "/")
    assert len(list_federated(env, account)) == 4
    # The same triple on another account is fine.
    other = env.service_account(name="Elsewhere")
    assert add_federated(env, other)["id"] != first["id"]


def test_twenty_first_live_credential_is_409(env: Env) -> None:
    account = env.service_account(name="Twenty")
    added = [add_federated(env, account, subject=f"sub-{i}") for i in range(MAX_FEDERATED)]
    r = post_federated(env, account, credential(subject="one-too-many"))
    assert_conflict(r)
    assert r.json()["error"] == "conflict"
    assert len(list_federated(env, account)) == MAX_FEDERATED
    assert delete_federated(env, account, added[0]["id"]).status_code == 204
    add_federated(env, account, subject="now-there-is-room")


def test_expired_credentials_do_not_count_toward_the_limit(env: Env) -> None:
    account = env.service_account(name="Expired federated")
    for i in range(MAX_FEDERATED - 1):
        add_federated(env, account, subject=f"sub-{i}")
    # The short-lived one last, right before the check: a slow machine cannot let it expire
    # in between.
    expires_at, at = soon()
    add_federated(env, account, subject="short", expiresAt=expires_at)
    assert_conflict(post_federated(env, account, credential(subject="full")))
    wait_past(at)
    add_federated(env, account, subject="room-again")
    assert len(list_federated(env, account)) == MAX_FEDERATED + 1


# --- list and delete -----------------------------------------------------------------------


def test_listed_newest_first_expired_ones_too(env: Env) -> None:
    account = env.service_account(name="Listed")
    expires_at, at = soon()
    first = add_federated(env, account, subject="a", expiresAt=expires_at)
    second = add_federated(env, account, subject="b")
    wait_past(at)
    listed = list_federated(env, account)
    assert [c["id"] for c in listed] == [second["id"], first["id"]]
    assert listed[1]["expiresAt"] == expires_at
    live = [c.id for c in stored_client(env, account).federated if c.live(time.time())]
    assert live == [second["id"]]


def test_deleted_credential_is_gone_at_once_and_404_the_second_time(env: Env) -> None:
    account = env.service_account(name="Deleting")
    keep, gone = add_federated(env, account, subject="keep"), add_federated(env, account)
    r = delete_federated(env, account, gone["id"])
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert [c["id"] for c in list_federated(env, account)] == [keep["id"]]
    assert [c.id for c in stored_client(env, account).federated] == [keep["id"]]
    r = delete_federated(env, account, gone["id"])
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"


@pytest.mark.parametrize("cid", ["999999", "abc", "0", "-1"])
def test_deleting_an_unknown_credential_is_404(env: Env, cid: str) -> None:
    account = env.service_account(name="Unknown")
    add_federated(env, account)
    r = delete_federated(env, account, cid)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    assert len(list_federated(env, account)) == 1


def test_a_neighbours_credential_is_404(env: Env) -> None:
    mine = env.service_account(name="Mine")
    neighbour = env.service_account(name="Neighbour")
    theirs = add_federated(env, neighbour)
    r = delete_federated(env, mine, theirs["id"])
    assert r.status_code == 404, r.text
    assert len(list_federated(env, neighbour)) == 1


def test_last_live_credential_rule_holds_across_all_three_kinds(env: Env) -> None:
    account = env.service_account(name="Federated only")
    workload = add_federated(env, account)
    assert delete_secret(env, account, account["secretId"]).status_code == 204
    r = delete_federated(env, account, workload["id"])
    assert_conflict(r)
    assert r.json()["error"] == "conflict"
    assert audit_events(env, account, "service_account.federated_credential_deleted") == []
    # A key beside it: the federated credential may go, then the key may not.
    key = add_key(env, account)
    assert delete_federated(env, account, workload["id"]).status_code == 204
    assert_conflict(delete_key(env, account, key["kid"]))
    # And back: a federated credential lets the key go.
    add_federated(env, account, subject="again")
    assert delete_key(env, account, key["kid"]).status_code == 204
    assert len(assert_status(env.call("GET", keys_path(account)), 200)["data"]) == 0


def test_an_expired_credential_may_be_deleted_even_as_the_only_one(env: Env) -> None:
    account = env.service_account(name="Only expired")
    expires_at, at = soon()
    workload = add_federated(env, account, expiresAt=expires_at)
    assert delete_secret(env, account, account["secretId"]).status_code == 204
    assert_conflict(delete_federated(env, account, workload["id"]))
    wait_past(at)
    assert delete_federated(env, account, workload["id"]).status_code == 204
    assert list_federated(env, account) == []


def test_rotate_without_grace_leaves_federated_credentials_alone(env: Env) -> None:
    account = env.service_account(name="Rotate keeps workloads")
    workload = add_federated(env, account)
    rotate(env, account)
    assert [c["id"] for c in list_federated(env, account)] == [workload["id"]]
    assert [c.id for c in stored_client(env, account).federated] == [workload["id"]]


def test_deleted_account_loses_its_federated_credentials(env: Env) -> None:
    account = env.service_account(name="Deleted with workloads")
    add_federated(env, account)
    assert env.call("DELETE", f"{ACCOUNTS}/{account['id']}").status_code == 204
    r = env.call("GET", federated_path(account))
    assert r.status_code == 404, r.text
    assert stored_client(env, account) is None or stored_client(env, account).federated == ()


# --- expiry, lists and the gauge -----------------------------------------------------------


def test_expiry_shows_in_credentials_expire_at_the_list_filter_and_the_gauge(env: Env) -> None:
    two, twenty = in_days(2), in_days(20)
    soonest = env.service_account(name="Workload in two days")
    add_federated(env, soonest, expiresAt=two)
    later = env.service_account(name="Workload in twenty days", secretExpiresAt=in_days(28))
    add_federated(env, later, expiresAt=twenty)
    env.service_account(name="Never")
    gone = env.service_account(name="Deleted credential")
    dropped = add_federated(env, gone, expiresAt=in_days(1))
    assert delete_federated(env, gone, dropped["id"]).status_code == 204
    assert get_account(env, soonest)["credentialsExpireAt"] == two
    assert get_account(env, later)["credentialsExpireAt"] == twenty
    admin = env.user_token([ADMIN_GROUP], workspace=OTHER_WS)
    theirs = env.service_account(admin=admin, workspace=OTHER_WS, name="Theirs")
    r = env.call(
        "POST",
        federated_path(theirs),
        credential(expiresAt=in_days(3)),
        token=admin,
        workspace=OTHER_WS,
    )
    assert r.status_code == 201, r.text
    for days, expected in (("1", []), ("7", [soonest]), ("30", [soonest, later])):
        body = assert_status(
            env.call("GET", ACCOUNTS, params={"expiringWithinDays": days, "limit": "100"}), 200
        )
        assert [i["id"] for i in body["data"]] == [a["id"] for a in expected], days
        assert body["total"] == len(expected)
    samples = scrape(env.api)
    got = {w: value(samples, EXPIRING, within=w) for w in ("7d", "30d")}
    # 7d: two federated (ours, theirs); 30d: those, the 20-day one and the 28-day secret.
    assert got == {"7d": 2.0, "30d": 4.0}


def test_last_used_at_shows_on_the_credential_and_the_account(env: Env) -> None:
    account = env.service_account(name="Used workload")
    used, unused = add_federated(env, account), add_federated(env, account, subject="other")
    usage = runtime_of(env).credential_usage
    usage.record(account["clientId"], FEDERATED, used["id"], time.time())
    usage.flush(env.factory.db)
    listed = {c["id"]: c for c in list_federated(env, account)}
    assert listed[unused["id"]]["lastUsedAt"] is None
    shown = listed[used["id"]]["lastUsedAt"]
    assert shown is not None
    assert_recent(shown, slack=30)
    assert get_account(env, account)["lastUsedAt"] == shown


# --- audit ---------------------------------------------------------------------------------


def test_added_and_deleted_are_audited_with_the_credential_id(env: Env) -> None:
    account = env.service_account(name="Audited workloads")
    workload = add_federated(env, account, audience="aud-x", expiresAt=in_days(4))
    spare = add_federated(env, account, subject="spare")
    assert delete_federated(env, account, workload["id"]).status_code == 204
    [added_spare, added] = audit_events(env, account, "service_account.federated_credential_added")
    expected = {
        "id": account["id"],
        "federatedCredentialId": workload["id"],
        "issuer": GITHUB,
        "subject": REPO_SUBJECT,
    }
    assert added["details"] == expected
    assert added_spare["details"]["federatedCredentialId"] == spare["id"]
    [deleted] = audit_events(env, account, "service_account.federated_credential_deleted")
    assert deleted["details"] == expected
    for event in (added, deleted):
        assert event["actor"] == subject_of(env.admin)
        assert event["target"] == account["clientId"]


def test_refused_calls_write_no_audit_event(env: Env) -> None:
    account = env.service_account(name="Quiet workloads")
    add_federated(env, account)
    before = all_audit_text(env)
    post_federated(env, account, credential())  # duplicate
    post_federated(env, account, credential(issuer="http://x"))
    delete_federated(env, account, 999_999)
    post_federated(env, account, credential(subject="dev"))
    assert all_audit_text(env) != before  # that one was accepted
    before = all_audit_text(env)
    env.call(
        "POST",
        federated_path(account),
        credential(subject="x"),
        token=env.user_token(["developers"]),
    )
    assert all_audit_text(env) == before


# --- who may call --------------------------------------------------------------------------

ROUTES: list[Any] = [
    pytest.param("GET", "", False, id="list"),
    pytest.param("POST", "", True, id="add"),
    pytest.param("DELETE", "/{id}", False, id="delete"),
]


@pytest.mark.parametrize(("method", "suffix", "with_body"), ROUTES)
def test_another_workspace_account_is_404(
    env: Env, method: str, suffix: str, with_body: bool
) -> None:
    theirs = other_workspace_account(env)
    admin = env.user_token([ADMIN_GROUP], workspace=OTHER_WS)
    r = env.call("POST", federated_path(theirs), credential(), token=admin, workspace=OTHER_WS)
    workload = assert_status(r, 201)
    path = federated_path(theirs) + suffix.format(id=workload["id"])
    r = env.call(method, path, credential(subject="mine") if with_body else None)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    listed = env.call("GET", federated_path(theirs), token=admin, workspace=OTHER_WS)
    assert len(assert_status(listed, 200)["data"]) == 1


@pytest.mark.parametrize("account_id", ["999999", "abc"])
@pytest.mark.parametrize(("method", "suffix", "with_body"), ROUTES)
def test_an_unknown_account_is_404(
    env: Env, account_id: str, method: str, suffix: str, with_body: bool
) -> None:
    path = f"{ACCOUNTS}/{account_id}/federated-credentials" + suffix.format(id=1)
    r = env.call(method, path, credential() if with_body else None)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"


@pytest.mark.parametrize(("method", "suffix", "with_body"), ROUTES)
@pytest.mark.parametrize(
    "groups", [pytest.param(["developers"], id="developer"), pytest.param([], id="no-groups")]
)
def test_caller_without_service_accounts_manage_is_403_and_changes_nothing(
    env: Env, method: str, suffix: str, with_body: bool, groups: list[str]
) -> None:
    account = env.service_account(name="Guarded workloads")
    workload = add_federated(env, account)
    before = (list_federated(env, account), all_audit_text(env))
    path = federated_path(account) + suffix.format(id=workload["id"])
    r = env.call(
        method,
        path,
        credential(subject="other") if with_body else None,
        token=env.user_token(groups),
    )
    assert_forbidden(r)
    assert (list_federated(env, account), all_audit_text(env)) == before


@pytest.mark.parametrize(("method", "suffix", "with_body"), ROUTES)
def test_no_token_is_401(env: Env, method: str, suffix: str, with_body: bool) -> None:
    account = env.service_account(name="No token")
    path = federated_path(account) + suffix.format(id=1)
    r = env.call(method, path, credential() if with_body else None, headers={})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized"

"""Keys for ``private_key_jwt`` (contract: "Credentials: several secrets, keys, federated
workloads", the Keys part and the common rules), black box over HTTP: ``…/{id}/keys`` with
every field and answer, the JWK rules, the kid, the limit, the last live credential across
kinds, expiry, ``credentialsExpireAt``, ``?expiringWithinDays``, the gauge, ``lastUsedAt``,
the audit events, and who may call. The token endpoint's side is tested elsewhere.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx2 as httpx  # the HTTP library of Starlette's TestClient
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from centrali.oauth.keys import thumbprint
from centrali.oauth.ports import KEY
from centrali.services.permissions import ADMIN_GROUP
from centrali.store.client_store import SqlClientStore
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
from tests.factories import Factory

KEY_FIELDS = {"kid", "kty", "alg", "createdAt", "createdBy", "expiresAt", "lastUsedAt"}
MAX_KEYS = 5
Jwk = dict[str, Any]


@pytest.fixture
def env(factory: Factory, client: TestClient) -> Env:
    return make_env(factory, client, workspaces=(WS, OTHER_WS))


# --- keys ----------------------------------------------------------------------------------


@functools.cache
def _rsa(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def rsa_jwk(bits: int = 2048, **members: Any) -> Jwk:
    jwk: Jwk = RSAAlgorithm.to_jwk(_rsa(bits).public_key(), as_dict=True)
    return {**jwk, **members}


def ec_jwk(**members: Any) -> Jwk:
    jwk: Jwk = ECAlgorithm.to_jwk(
        ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True
    )
    return {**jwk, **members}


def ed25519_jwk(**members: Any) -> Jwk:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    jwk: Jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
    return {**jwk, **members}


def ec_p384_jwk() -> Jwk:
    jwk: Jwk = ECAlgorithm.to_jwk(
        ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True
    )
    return jwk


# --- helpers -------------------------------------------------------------------------------


def keys_path(account: dict[str, Any] | int) -> str:
    account_id = account if isinstance(account, int) else account["id"]
    return f"{ACCOUNTS}/{account_id}/keys"


def list_keys(env: Env, account: dict[str, Any]) -> list[dict[str, Any]]:
    body = assert_status(env.call("GET", keys_path(account)), 200)
    assert set(body) == {"data"}, body
    data: list[dict[str, Any]] = body["data"]
    return data


def post_key(env: Env, account: dict[str, Any], jwk: Any, **body: Any) -> httpx.Response:
    return env.call("POST", keys_path(account), {"jwk": jwk, **body})


def add_key(env: Env, account: dict[str, Any], jwk: Any = None, **body: Any) -> dict[str, Any]:
    return assert_status(post_key(env, account, ec_jwk() if jwk is None else jwk, **body), 201)


def delete_key(env: Env, account: dict[str, Any], kid: str) -> httpx.Response:
    return env.call("DELETE", f"{keys_path(account)}/{quote(kid, safe='')}")


def stored_client(env: Env, account: dict[str, Any]) -> Any:
    """The token endpoint's record of the account (the store's client lookup)."""
    store = SqlClientStore(env.factory.db.autocommit_engine)
    try:
        return store.find_clients([account["clientId"]])[0]
    finally:
        store.close()


def assert_no_key_material(text: str, *jwks: Jwk) -> None:
    for jwk in jwks:
        for member in ("n", "x", "y", "d"):
            if member in jwk:
                assert jwk[member][:24] not in text, member


# --- add -----------------------------------------------------------------------------------


def test_add_key_answers_201_with_every_field(env: Env) -> None:
    account = env.service_account(name="Keyed")
    jwk = ec_jwk()
    r = post_key(env, account, jwk)
    body = assert_status(r, 201)
    assert set(body) == KEY_FIELDS, body
    assert body["kid"] == thumbprint(jwk)
    assert (body["kty"], body["alg"]) == ("EC", "ES256")
    assert body["createdBy"] == subject_of(env.admin)
    assert_recent(body["createdAt"])
    assert body["expiresAt"] is None and body["lastUsedAt"] is None
    assert r.headers["cache-control"] == "no-store"
    assert list_keys(env, account) == [body]
    assert_no_key_material(r.text, jwk)


@pytest.mark.parametrize(
    ("make", "kty", "alg"),
    [
        pytest.param(lambda: rsa_jwk(), "RSA", "RS256", id="rsa-no-alg-RS256"),
        pytest.param(lambda: rsa_jwk(alg="RS256"), "RSA", "RS256", id="rsa-RS256"),
        pytest.param(lambda: rsa_jwk(alg="PS256"), "RSA", "PS256", id="rsa-PS256"),
        pytest.param(lambda: rsa_jwk(4096), "RSA", "RS256", id="rsa-4096"),
        pytest.param(lambda: ec_jwk(alg="ES256", use="sig"), "EC", "ES256", id="ec-ES256"),
        pytest.param(lambda: ed25519_jwk(), "OKP", "EdDSA", id="ed25519-EdDSA"),
    ],
)
def test_each_accepted_key_type_gets_its_algorithm(
    env: Env, make: Callable[[], Jwk], kty: str, alg: str
) -> None:
    account = env.service_account(name="Types")
    jwk = make()
    body = add_key(env, account, jwk)
    assert (body["kid"], body["kty"], body["alg"]) == (thumbprint(jwk), kty, alg)
    [stored] = stored_client(env, account).keys
    assert (stored.kid, stored.alg, stored.expires_at_ms) == (body["kid"], alg, None)
    assert "d" not in stored.jwk and stored.jwk["kty"] == kty


def test_a_given_kid_is_kept(env: Env) -> None:
    account = env.service_account(name="Named key")
    body = add_key(env, account, ec_jwk(kid="deploy-2026/01"))
    assert body["kid"] == "deploy-2026/01"
    assert [k["kid"] for k in list_keys(env, account)] == ["deploy-2026/01"]
    # A kid with "/" is deleted through its percent-encoded form.
    add_key(env, account)
    assert delete_key(env, account, "deploy-2026/01").status_code == 204
    assert len(list_keys(env, account)) == 1


def test_add_key_with_expires_at_answers_it_in_utc(env: Env) -> None:
    account = env.service_account(name="Expiring key")
    at = in_days(10)
    body = add_key(env, account, expiresAt=at)
    assert body["expiresAt"] == at
    assert get_account(env, account)["credentialsExpireAt"] == at


REFUSED_JWKS = [
    pytest.param(lambda: RSAAlgorithm.to_jwk(_rsa(), as_dict=True), "private", id="rsa-private"),
    pytest.param(lambda: {"kty": "oct", "k": "c2VjcmV0"}, "symmetric", id="oct"),
    pytest.param(lambda: rsa_jwk(1024), "2048", id="rsa-1024"),
    pytest.param(ec_p384_jwk, "P-384", id="ec-p384"),
    pytest.param(lambda: rsa_jwk(alg="ES256"), "ES256", id="ES256-on-rsa"),
    pytest.param(lambda: rsa_jwk(alg="HS256"), "HS256", id="HS256"),
    pytest.param(lambda: ec_jwk(alg="none"), "none", id="none"),
    pytest.param(lambda: rsa_jwk(use="enc"), "use", id="use-enc"),
    pytest.param(lambda: rsa_jwk(n="not base64!"), "member n", id="malformed-n"),
    pytest.param(lambda: ed25519_jwk(x="AAAA"), "OKP", id="malformed-x"),
    pytest.param(lambda: ec_jwk(kid=""), "kid", id="empty-kid"),
    pytest.param(lambda: ec_jwk(kid="k" * 129), "kid", id="long-kid"),
    pytest.param(lambda: [ec_jwk()], "JSON object", id="list"),
    pytest.param(lambda: "eyJ9", "JSON object", id="string"),
    pytest.param(lambda: None, "JSON object", id="null"),
]


@pytest.mark.parametrize(("make", "says"), REFUSED_JWKS)
def test_refused_jwk_is_400_saying_why_and_adds_nothing(
    env: Env, make: Callable[[], Any], says: str
) -> None:
    account = env.service_account(name="Refused key")
    before = all_audit_text(env)
    r = post_key(env, account, make())
    body = assert_invalid_request(r, says)
    assert body.get("field") in (None, "jwk"), body
    assert list_keys(env, account) == []
    assert all_audit_text(env) == before


@pytest.mark.parametrize(
    ("body", "names"),
    [
        pytest.param({}, "jwk", id="no-jwk"),
        pytest.param({"jwk": {}, "extra": 1}, "extra", id="unknown-field"),
        pytest.param({"expiresAt": "2099-01-01T00:00:00Z"}, "jwk", id="expiry-only"),
        pytest.param(None, None, id="no-body"),
    ],
)
def test_add_key_with_a_bad_body_is_400(env: Env, body: Any, names: str | None) -> None:
    account = env.service_account(name="Bad body")
    if body is None:
        r = env.send_raw("POST", keys_path(account), "")
    else:
        r = env.call("POST", keys_path(account), body)
    assert_invalid_request(r, names)
    assert list_keys(env, account) == []


@pytest.mark.parametrize(
    "expires_at",
    [
        pytest.param("2000-01-01T00:00:00Z", id="past"),
        pytest.param("next week", id="malformed"),
        pytest.param("2099-01-01T00:00:00", id="no-offset"),
        pytest.param(4102444800, id="number"),
    ],
)
def test_add_key_with_a_bad_expires_at_is_400(env: Env, expires_at: Any) -> None:
    account = env.service_account(name="Bad expiry")
    assert_invalid_request(post_key(env, account, ec_jwk(), expiresAt=expires_at), "expiresAt")
    assert list_keys(env, account) == []


def test_a_kid_already_on_the_account_is_409(env: Env) -> None:
    account = env.service_account(name="Duplicate kid")
    jwk = rsa_jwk()
    first = add_key(env, account, jwk)
    # The same key again: the same thumbprint.
    r = post_key(env, account, jwk)
    assert_conflict(r)
    assert r.json()["error"] == "conflict"
    # Another key under a kid already taken.
    assert_conflict(post_key(env, account, ec_jwk(kid=first["kid"])))
    assert [k["kid"] for k in list_keys(env, account)] == [first["kid"]]
    # The same key on another account is fine.
    other = env.service_account(name="Same key elsewhere")
    assert add_key(env, other, jwk)["kid"] == first["kid"]


def test_sixth_live_key_is_409_and_deleting_one_frees_a_slot(env: Env) -> None:
    account = env.service_account(name="Five keys")
    added = [add_key(env, account) for _ in range(MAX_KEYS)]
    r = post_key(env, account, ec_jwk())
    assert_conflict(r)
    assert r.json()["error"] == "conflict"
    assert len(list_keys(env, account)) == MAX_KEYS
    assert delete_key(env, account, added[0]["kid"]).status_code == 204
    add_key(env, account)
    assert len(list_keys(env, account)) == MAX_KEYS


def test_expired_keys_do_not_count_toward_the_limit(env: Env) -> None:
    account = env.service_account(name="Expired keys")
    for _ in range(MAX_KEYS - 1):
        add_key(env, account)
    # The short-lived one last, right before the check: a slow machine cannot let it expire
    # in between.
    expires_at, at = soon()
    add_key(env, account, expiresAt=expires_at)
    assert_conflict(post_key(env, account, ec_jwk()))
    wait_past(at)
    add_key(env, account)
    assert len(list_keys(env, account)) == MAX_KEYS + 1


def test_keys_and_secrets_have_separate_limits(env: Env) -> None:
    account = env.service_account(name="Both")
    for _ in range(4):
        assert env.call("POST", f"{ACCOUNTS}/{account['id']}/secrets", {}).status_code == 201
    for _ in range(MAX_KEYS):
        add_key(env, account)
    assert len(list_keys(env, account)) == MAX_KEYS


# --- list ----------------------------------------------------------------------------------


def test_keys_are_listed_newest_first_expired_ones_too(env: Env) -> None:
    account = env.service_account(name="Listed")
    expires_at, at = soon()
    first = add_key(env, account, expiresAt=expires_at)
    second = add_key(env, account, rsa_jwk())
    third = add_key(env, account, ed25519_jwk())
    wait_past(at)
    listed = list_keys(env, account)
    assert [k["kid"] for k in listed] == [third["kid"], second["kid"], first["kid"]]
    assert listed[2]["expiresAt"] == expires_at
    assert all(set(k) == KEY_FIELDS for k in listed)
    # The token endpoint's copy holds what was live when it was written; it checks expiry.
    live = {k.kid for k in stored_client(env, account).keys if k.live(time.time())}
    assert live == {second["kid"], third["kid"]}


# --- delete --------------------------------------------------------------------------------


def test_deleted_key_is_gone_at_once_and_404_the_second_time(env: Env) -> None:
    account = env.service_account(name="Deleting")
    keep, gone = add_key(env, account), add_key(env, account)
    r = delete_key(env, account, gone["kid"])
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert [k["kid"] for k in list_keys(env, account)] == [keep["kid"]]
    assert [k.kid for k in stored_client(env, account).keys] == [keep["kid"]]
    r = delete_key(env, account, gone["kid"])
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"


def test_deleting_a_key_that_is_not_the_accounts_is_404(env: Env) -> None:
    mine = env.service_account(name="Mine")
    add_key(env, mine)
    neighbour = env.service_account(name="Neighbour")
    theirs_key = add_key(env, neighbour)
    for kid in ("unknown-kid", theirs_key["kid"]):
        r = delete_key(env, mine, kid)
        assert r.status_code == 404, (kid, r.text)
        assert r.json()["error"] == "not_found"
    assert len(list_keys(env, neighbour)) == 1


def test_last_live_credential_rule_holds_across_kinds(env: Env) -> None:
    """A key makes the secret deletable; then the key is the last live credential."""
    account = env.service_account(name="Key only")
    key = add_key(env, account)
    assert delete_secret(env, account, account["secretId"]).status_code == 204
    r = delete_key(env, account, key["kid"])
    assert_conflict(r)
    assert r.json()["error"] == "conflict"
    assert [k["kid"] for k in list_keys(env, account)] == [key["kid"]]
    assert audit_events(env, account, "service_account.key_deleted") == []
    # With a second key the first may go, and then not the second.
    second = add_key(env, account)
    assert delete_key(env, account, key["kid"]).status_code == 204
    assert_conflict(delete_key(env, account, second["kid"]))


def test_the_last_secret_beside_a_key_may_be_deleted_but_not_beside_an_expired_key(
    env: Env,
) -> None:
    account = env.service_account(name="Expired key beside")
    expires_at, at = soon()
    add_key(env, account, expiresAt=expires_at)
    wait_past(at)
    assert_conflict(delete_secret(env, account, account["secretId"]))


def test_an_expired_key_may_be_deleted_even_as_the_only_credential(env: Env) -> None:
    account = env.service_account(name="Only an expired key")
    expires_at, at = soon()
    key = add_key(env, account, expiresAt=expires_at)
    assert delete_secret(env, account, account["secretId"]).status_code == 204
    assert_conflict(delete_key(env, account, key["kid"]))
    wait_past(at)
    assert delete_key(env, account, key["kid"]).status_code == 204
    assert list_keys(env, account) == []


def test_rotate_without_grace_leaves_keys_alone(env: Env) -> None:
    account = env.service_account(name="Rotate keeps keys")
    key = add_key(env, account)
    rotate(env, account)
    assert [k["kid"] for k in list_keys(env, account)] == [key["kid"]]
    assert [k.kid for k in stored_client(env, account).keys] == [key["kid"]]


def test_deleted_account_loses_its_keys(env: Env) -> None:
    account = env.service_account(name="Deleted with keys")
    add_key(env, account)
    assert stored_client(env, account).keys
    assert env.call("DELETE", f"{ACCOUNTS}/{account['id']}").status_code == 204
    r = env.call("GET", keys_path(account))
    assert r.status_code == 404, r.text
    assert stored_client(env, account).keys == ()


# --- expiry, lists and the gauge -----------------------------------------------------------


def test_credentials_expire_at_counts_keys(env: Env) -> None:
    account = env.service_account(name="Earliest key", secretExpiresAt=in_days(20))
    at = in_days(5)
    add_key(env, account, expiresAt=at)
    assert get_account(env, account)["credentialsExpireAt"] == at
    items = assert_status(env.call("GET", ACCOUNTS), 200)["data"]
    assert [i["credentialsExpireAt"] for i in items if i["id"] == account["id"]] == [at]


def test_expiring_within_days_and_the_gauge_count_keys(env: Env) -> None:
    never = env.service_account(name="Never")
    add_key(env, never)
    soon_key = env.service_account(name="Key in three days")
    add_key(env, soon_key, expiresAt=in_days(3))
    later = env.service_account(name="Key in twenty days")
    add_key(env, later, expiresAt=in_days(20))
    add_key(env, later, expiresAt=in_days(25))
    admin = env.user_token([ADMIN_GROUP], workspace=OTHER_WS)
    theirs = env.service_account(admin=admin, workspace=OTHER_WS, name="Theirs")
    r = env.call(
        "POST",
        keys_path(theirs),
        {"jwk": ec_jwk(), "expiresAt": in_days(1)},
        token=admin,
        workspace=OTHER_WS,
    )
    assert r.status_code == 201, r.text
    for days, expected in (("1", []), ("7", [soon_key]), ("30", [soon_key, later])):
        body = assert_status(
            env.call("GET", ACCOUNTS, params={"expiringWithinDays": days, "limit": "100"}), 200
        )
        assert [i["id"] for i in body["data"]] == [a["id"] for a in expected], days
        assert body["total"] == len(expected)
    samples = scrape(env.api)
    got = {w: value(samples, EXPIRING, within=w) for w in ("7d", "30d")}
    assert got == {"7d": 2.0, "30d": 4.0}


# --- last use ------------------------------------------------------------------------------


def test_last_used_at_shows_on_the_key_and_the_account(env: Env) -> None:
    """A use recorded by the client-authentication pipeline (kind "key") reaches the key's
    ``lastUsedAt`` and the account's, and never moves back."""
    account = env.service_account(name="Used key")
    key, other = add_key(env, account), add_key(env, account)
    [stored] = [k for k in stored_client(env, account).keys if k.kid == key["kid"]]
    usage = runtime_of(env).credential_usage
    used_at = time.time() - 5
    usage.record(account["clientId"], KEY, stored.id, used_at)
    usage.flush(env.factory.db)
    listed = {k["kid"]: k for k in list_keys(env, account)}
    assert listed[other["kid"]]["lastUsedAt"] is None
    shown = listed[key["kid"]]["lastUsedAt"]
    assert shown is not None
    assert_recent(shown, slack=30)
    assert get_account(env, account)["lastUsedAt"] == shown
    usage.record(account["clientId"], KEY, stored.id, used_at - 100)
    usage.flush(env.factory.db)
    assert {k["kid"]: k for k in list_keys(env, account)}[key["kid"]]["lastUsedAt"] == shown


# --- audit ---------------------------------------------------------------------------------


def test_key_added_and_deleted_are_audited_with_kid_and_alg_only(env: Env) -> None:
    account = env.service_account(name="Audited keys")
    jwk = rsa_jwk(alg="PS256")
    key = add_key(env, account, jwk, expiresAt=in_days(9))
    spare = add_key(env, account)
    assert delete_key(env, account, key["kid"]).status_code == 204
    [added_spare, added] = audit_events(env, account, "service_account.key_added")
    assert added["details"] == {"id": account["id"], "kid": key["kid"], "alg": "PS256"}
    assert added_spare["details"] == {"id": account["id"], "kid": spare["kid"], "alg": "ES256"}
    [deleted] = audit_events(env, account, "service_account.key_deleted")
    assert deleted["details"] == {"id": account["id"], "kid": key["kid"], "alg": "PS256"}
    for event in (added, deleted):
        assert event["actor"] == subject_of(env.admin)
        assert event["target"] == account["clientId"]
    assert_no_key_material(all_audit_text(env), jwk)


def test_refused_key_calls_write_no_audit_event(env: Env) -> None:
    account = env.service_account(name="Quiet keys")
    key = add_key(env, account)
    before = all_audit_text(env)
    post_key(env, account, {"kty": "oct", "k": "AAAA"})
    post_key(env, account, ec_jwk(kid=key["kid"]))
    delete_key(env, account, "nope")
    env.call("POST", keys_path(account), {"jwk": ec_jwk()}, token=env.user_token(["developers"]))
    assert all_audit_text(env) == before


# --- who may call --------------------------------------------------------------------------

KEY_ROUTES: list[Any] = [
    pytest.param("GET", "", False, id="list"),
    pytest.param("POST", "", True, id="add"),
    pytest.param("DELETE", "/{kid}", False, id="delete"),
]


@pytest.mark.parametrize(("method", "suffix", "with_body"), KEY_ROUTES)
def test_keys_of_another_workspace_account_are_404(
    env: Env, method: str, suffix: str, with_body: bool
) -> None:
    theirs = other_workspace_account(env)
    admin = env.user_token([ADMIN_GROUP], workspace=OTHER_WS)
    key = assert_status(
        env.call("POST", keys_path(theirs), {"jwk": ec_jwk()}, token=admin, workspace=OTHER_WS),
        201,
    )
    path = keys_path(theirs) + suffix.format(kid=quote(key["kid"], safe=""))
    r = env.call(method, path, {"jwk": ec_jwk()} if with_body else None)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"
    listed = env.call("GET", keys_path(theirs), token=admin, workspace=OTHER_WS)
    assert len(assert_status(listed, 200)["data"]) == 1


@pytest.mark.parametrize("account_id", ["999999", "abc"])
@pytest.mark.parametrize(("method", "suffix", "with_body"), KEY_ROUTES)
def test_keys_of_an_unknown_account_are_404(
    env: Env, account_id: str, method: str, suffix: str, with_body: bool
) -> None:
    path = f"{ACCOUNTS}/{account_id}/keys" + suffix.format(kid="k")
    r = env.call(method, path, {"jwk": ec_jwk()} if with_body else None)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "not_found"


@pytest.mark.parametrize(("method", "suffix", "with_body"), KEY_ROUTES)
@pytest.mark.parametrize(
    "groups", [pytest.param(["developers"], id="developer"), pytest.param([], id="no-groups")]
)
def test_caller_without_service_accounts_manage_is_403_and_changes_nothing(
    env: Env, method: str, suffix: str, with_body: bool, groups: list[str]
) -> None:
    account = env.service_account(name="Guarded keys")
    key = add_key(env, account)
    before = (list_keys(env, account), all_audit_text(env))
    path = keys_path(account) + suffix.format(kid=quote(key["kid"], safe=""))
    r = env.call(
        method, path, {"jwk": ec_jwk()} if with_body else None, token=env.user_token(groups)
    )
    assert_forbidden(r)
    assert (list_keys(env, account), all_audit_text(env)) == before


@pytest.mark.parametrize(("method", "suffix", "with_body"), KEY_ROUTES)
def test_no_token_is_401(env: Env, method: str, suffix: str, with_body: bool) -> None:
    account = env.service_account(name="No token")
    path = keys_path(account) + suffix.format(kid="k")
    r = env.call(method, path, {"jwk": ec_jwk()} if with_body else None, headers={})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "unauthorized"

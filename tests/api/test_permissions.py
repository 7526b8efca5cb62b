"""Who may call the workspace API (issue 3, parts 2 and 3; contract: "Workspace API" and the
fixed error answers): groups and their permissions, for user and service-account tokens;
the token checks (missing, malformed, expired, forged, other workspace); and what revoking,
deleting, rotating or regrouping a service account does to the tokens it already holds.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from centrali.services.context import Actor
from centrali.services.groups import create_group, set_membership, set_permission
from tests.api.workspace_api import (
    GUIDE_RECORD,
    OTHER_WS,
    PRODUCTS,
    TOKEN_EXPIRED,
    TOKEN_REVOKED,
    WS,
    Env,
    assert_answer,
    assert_forbidden,
    assert_status,
    assert_unauthorized,
    claims_of,
    eventually,
    make_env,
)
from tests.factories import Factory, bearer

SR, SW, RR, RW = "structures:read", "structures:write", "records:read", "records:write"
SA_BASE = f"/workspace/{WS}/api/v1/service-accounts"
OPERATOR = Actor(subject="operator@tests")
CUSTOM_GROUP = "readers"


@pytest.fixture
def env(factory: Factory, client: TestClient) -> Env:
    return make_env(factory, client)


# --- the routes and the workspace they act on ----------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the admin set up for the routes to act on."""

    record: int
    spare_record: int


@dataclass(frozen=True)
class Route:
    id: str
    method: str
    path: str
    permission: str
    ok: int
    body: dict[str, Any] | None = None

    def url(self, target: Target) -> str:
        return self.path.format(record=target.record, spare_record=target.spare_record)

    def call(self, env: Env, target: Target, **kwargs: Any) -> httpx2.Response:
        return env.call(self.method, self.url(target), self.body, **kwargs)


ROUTES = [
    Route("list-structures", "GET", "/structures", SR, 200),
    Route("get-structure", "GET", "/structures/products", SR, 200),
    Route(
        "create-structure",
        "POST",
        "/structures",
        SW,
        201,
        {"slug": "made-by-caller", "name": "Made by caller", "fields": []},
    ),
    Route("update-structure", "PUT", "/structures/products", SW, 200, {"description": "changed"}),
    Route("delete-structure", "DELETE", "/structures/spare", SW, 204),
    Route("list-records", "GET", "/records", RR, 200),
    Route("get-record", "GET", "/records/{record}", RR, 200),
    Route("create-record", "POST", "/records", RW, 201, GUIDE_RECORD),
    Route(
        "update-record",
        "PUT",
        "/records/{record}",
        RW,
        200,
        {"data": {"name": "Laptop Pro 2", "price": 999}},
    ),
    Route("delete-record", "DELETE", "/records/{spare_record}", RW, 204),
]


def set_up_target(env: Env) -> Target:
    env.create_structure(PRODUCTS)
    env.create_structure({"slug": "spare", "name": "Spare", "fields": []})
    record = env.create_record("products", {"name": "Laptop Pro", "price": 1299.99})
    spare = env.create_record("products", {"name": "Mouse", "price": 25})
    return Target(record=record["id"], spare_record=spare["id"])


def effects(env: Env, target: Target) -> dict[str, bool]:
    """Which write routes left their mark, as seen by the admin."""
    product = env.structure("products").json()
    records = env.list_all("/records", recordSlug="products")["data"]
    by_id = {r["id"]: r for r in records}
    return {
        "create-structure": env.structure("made-by-caller").status_code == 200,
        "update-structure": product.get("description") == "changed",
        "delete-structure": env.structure("spare").status_code == 404,
        "create-record": any(r["data"] == GUIDE_RECORD["data"] for r in records),
        "update-record": by_id[target.record]["data"]["name"] == "Laptop Pro 2",
        "delete-record": target.spare_record not in by_id,
    }


# --- who is calling ------------------------------------------------------------------------


GROUP_PERMISSIONS: dict[str, set[str]] = {
    "workspace-admins": {SR, SW, RR, RW},
    "developers": {SR, SW, RR, RW},
    "api-users": {SR, RR, RW},
    CUSTOM_GROUP: {SR, RR},  # made by the test: permissions come from the store
    "no-group": set(),
}


def token_for(env: Env, kind: str, groups: list[str]) -> str:
    if kind == "user":
        return env.user_token(groups)
    return env.sa_token(env.service_account(name="Caller", groups=groups))


@pytest.mark.parametrize("group", list(GROUP_PERMISSIONS), ids=str)
@pytest.mark.parametrize("kind", ["user", "service-account"], ids=str)
def test_each_route_needs_its_permission(env: Env, kind: str, group: str) -> None:
    create_group(
        env.factory.db, workspace_slug=WS, actor=OPERATOR, name=CUSTOM_GROUP, permissions=(SR, RR)
    )
    target = set_up_target(env)
    token = token_for(env, kind, [] if group == "no-group" else [group])
    allowed = GROUP_PERMISSIONS[group]

    observed: dict[str, int] = {}
    for route in ROUTES:
        r = route.call(env, target, token=token)
        observed[route.id] = r.status_code
        if r.status_code == 403:
            assert_forbidden(r)
    expected = {route.id: route.ok if route.permission in allowed else 403 for route in ROUTES}
    assert observed == expected

    # Refused calls changed nothing; allowed ones did what they say.
    writes = {route.id: route.permission in allowed for route in ROUTES if route.method != "GET"}
    assert effects(env, target) == writes


def test_a_service_account_made_without_groups_is_an_api_user(env: Env) -> None:
    set_up_target(env)
    account = env.service_account(name="Production API Client")
    assert account["groups"] == ["api-users"]
    token = env.sa_token(account)
    assert "api-users" in claims_of(token)["groups"]

    listed = assert_status(env.call("GET", "/structures", token=token), 200)
    assert {s["slug"] for s in listed["data"]} == {"products", "spare"}
    assert_status(env.call("POST", "/records", GUIDE_RECORD, token=token), 201)
    assert_status(env.call("GET", "/records", token=token), 200)
    body = {"slug": "mine", "name": "Mine", "fields": []}
    assert_forbidden(env.call("POST", "/structures", body, token=token))
    assert_forbidden(env.call("DELETE", "/structures/spare", token=token))
    assert env.structure("mine").status_code == 404
    assert env.structure("spare").status_code == 200


@pytest.mark.parametrize("kind", ["user", "service-account"], ids=str)
def test_a_token_of_another_workspace_is_403(
    factory: Factory, client: TestClient, kind: str, subtests: pytest.Subtests
) -> None:
    env = make_env(factory, client, workspaces=(WS, OTHER_WS))
    target = set_up_target(env)
    their_admin = env.user_token(["workspace-admins"], workspace=OTHER_WS)
    if kind == "user":
        token = their_admin
    else:
        account = env.service_account(admin=their_admin, workspace=OTHER_WS, groups=["developers"])
        token = env.sa_token(account)
    assert claims_of(token)["workspace"] == OTHER_WS
    before = effects(env, target)

    for path_workspace in (WS, "no-such-workspace"):
        for route in ROUTES:
            with subtests.test(msg=f"{route.id} in {path_workspace}"):
                url = route.url(target)
                r = env.call(route.method, url, route.body, token=token, workspace=path_workspace)
                assert_forbidden(r)
    assert effects(env, target) == before
    # The token is good in its own workspace.
    assert_status(env.call("GET", "/structures", token=token, workspace=OTHER_WS), 200)


# --- the token check -----------------------------------------------------------------------


def test_a_missing_or_malformed_authorization_header_is_401(
    env: Env, subtests: pytest.Subtests
) -> None:
    target = set_up_target(env)
    good = env.user_token(["developers"])
    account = env.service_account(name="Basic")
    basic = base64.b64encode(f"{account['clientId']}:{account['clientSecret']}".encode()).decode()
    headers: dict[str, dict[str, str]] = {
        "missing": {},
        "empty": {"Authorization": ""},
        "bearer-alone": {"Authorization": "Bearer"},
        "bearer-blank": {"Authorization": "Bearer   "},
        "bearer-garbage": {"Authorization": "Bearer garbage"},
        "bearer-three-garbage-parts": {"Authorization": "Bearer abc.def.ghi"},
        "bearer-token-twice": {"Authorization": f"Bearer {good} {good}"},
        "token-without-scheme": {"Authorization": good},
        "other-scheme-with-good-token": {"Authorization": f"Token {good}"},
        "basic-x": {"Authorization": "Basic x"},
        "basic-with-real-client-credentials": {"Authorization": f"Basic {basic}"},
    }
    before = effects(env, target)
    for case, header in headers.items():
        routes = ROUTES if case == "missing" else [ROUTES[0], ROUTES[7]]
        for route in routes:
            with subtests.test(msg=f"{case} {route.id}"):
                r = route.call(env, target, headers=header)
                assert_unauthorized(r)
    assert effects(env, target) == before
    assert_status(env.call("GET", "/structures", token=good), 200)


def expired_token(env: Env, kind: str) -> str:
    now = time.time()
    if kind == "user":
        return env.user_token(["developers"], now=now - 3600, ttl=60)
    # A real service account's token, re-signed with our key after moving it into the past.
    token = env.sa_token(env.service_account(name="Old", groups=["developers"]))
    claims = claims_of(token) | {"iat": int(now) - 3600, "exp": int(now) - 3000}
    return sign_with_our_key(env, claims)


@pytest.mark.parametrize("kind", ["user", "service-account"], ids=str)
def test_an_expired_token_is_401_token_expired(env: Env, kind: str) -> None:
    target = set_up_target(env)
    token = expired_token(env, kind)
    before = effects(env, target)
    for route in ROUTES:
        assert_answer(route.call(env, target, token=token), 401, TOKEN_EXPIRED)
    assert effects(env, target) == before


# --- forged tokens -------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def sign_with_our_key(env: Env, claims: dict[str, Any], **header: Any) -> str:
    key = env.keys.signing
    headers = {"kid": key.kid, "typ": "at+jwt", **header}
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)


@cache
def foreign_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def hmac_signer(secret: bytes, digest: str) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, digest).digest()


def public_pems(env: Env, kid: str) -> dict[str, bytes]:
    """Our public key as published in the JWKS, in the PEM forms an attacker would try."""
    jwks = env.api.get("/oidc/jwks").json()
    [jwk] = [k for k in jwks["keys"] if k["kid"] == kid]
    public = RSAAlgorithm.from_jwk(json.dumps(jwk))
    assert isinstance(public, rsa.RSAPublicKey)
    pem = serialization.Encoding.PEM
    spki = public.public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs1 = public.public_bytes(pem, serialization.PublicFormat.PKCS1)
    return {"spki": spki, "spki-no-newline": spki.rstrip(b"\n"), "pkcs1": pkcs1}


def forgeries(env: Env, kind: str, token: str) -> dict[str, str]:
    """Tokens made from a genuine ``token``'s header and claims, none of them valid."""
    header = jwt.get_unverified_header(token)
    claims = claims_of(token)
    kid = header["kid"]
    head, payload, signature = token.split(".")
    if kind == "alg-none":
        tokens: dict[str, str] = {}
        for alg in ("none", "None", "NONE"):
            none_header = {**header, "alg": alg}
            tokens[f"{alg}-unsigned"] = compact(none_header, claims, lambda _: b"")
            relabelled = b64url(json.dumps(none_header).encode())
            tokens[f"{alg}-original-signature"] = f"{relabelled}.{payload}.{signature}"
        return tokens
    if kind == "hs256-with-public-key":
        return {
            f"{alg}-{form}": compact({**header, "alg": alg}, claims, hmac_signer(pem, digest))
            for form, pem in public_pems(env, kid).items()
            for alg, digest in (("HS256", "sha256"), ("HS512", "sha512"))
        }
    if kind == "foreign-key":
        other = foreign_key()
        return {
            "our-kid": jwt.encode(claims, other, algorithm="RS256", headers=header),
            "unknown-kid": jwt.encode(
                claims, other, algorithm="RS256", headers={**header, "kid": "not-ours"}
            ),
            "no-kid": jwt.encode(
                claims, other, algorithm="RS256", headers={"typ": header.get("typ", "at+jwt")}
            ),
        }
    if kind == "bad-claims":
        without = {
            name: {k: v for k, v in claims.items() if k != name}
            for name in ("workspace", "isServiceAccount", "exp", "iss", "aud", "sub")
        }
        altered = {
            "wrong-iss": claims | {"iss": "https://evil.example"},
            "wrong-aud": claims | {"aud": "https://someone-else.example"},
            "isServiceAccount-yes": claims | {"isServiceAccount": "yes"},
        }
        signed = {f"missing-{name}": c for name, c in without.items()} | altered
        return {case: sign_with_our_key(env, c) for case, c in signed.items()}
    assert kind == "tampered"
    swapped = claims | {"groups": ["workspace-admins"], "sub": claims["sub"] + "x"}
    other_token = env.user_token(["api-users"])
    return {
        "claims-changed": f"{head}.{b64url(json.dumps(swapped).encode())}.{signature}",
        "signature-truncated": f"{head}.{payload}.{signature[:-8]}",
        "signature-of-another-token": f"{head}.{payload}.{other_token.split('.')[2]}",
        "no-signature": f"{head}.{payload}.",
        "two-parts": f"{head}.{payload}",
    }


FORGERIES = ["alg-none", "hs256-with-public-key", "foreign-key", "bad-claims", "tampered"]


@pytest.mark.parametrize("forgery", FORGERIES, ids=str)
def test_a_forged_token_is_401(env: Env, forgery: str, subtests: pytest.Subtests) -> None:
    target = set_up_target(env)
    genuine = {
        "user": env.user_token(["developers"]),
        "service-account": env.sa_token(env.service_account(name="Real", groups=["developers"])),
    }
    before = effects(env, target)
    for kind, token in genuine.items():
        # The genuine token works: only the forgery makes the difference.
        assert_status(env.call("GET", "/structures", token=token), 200)
        for case, forged in forgeries(env, forgery, token).items():
            with subtests.test(msg=f"{kind}: {case}"):
                for route in (ROUTES[0], ROUTES[7]):
                    assert_unauthorized(route.call(env, target, token=forged))
    assert effects(env, target) == before


# --- what account changes do to issued tokens ----------------------------------------------


def sa_call(env: Env, token: str) -> httpx2.Response:
    return env.call("GET", "/structures", token=token)


def manage(env: Env, method: str, path: str, body: Any = None) -> httpx2.Response:
    url = f"{SA_BASE}{path}"
    headers = bearer(env.admin)
    if body is None:
        return env.api.request(method, url, headers=headers)
    return env.api.request(method, url, json=body, headers=headers)


def token_request(env: Env, client_id: str, secret: str) -> httpx2.Response:
    response: httpx2.Response = env.factory.token_response(client_id, secret)
    return response


def assert_invalid_client(r: httpx2.Response) -> None:
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.json()["error"] == "invalid_client", r.text


def test_revoke_kills_issued_tokens_and_activate_does_not_revive_them(env: Env) -> None:
    set_up_target(env)
    account = env.service_account(name="Revoked")
    bystander = env.sa_token(env.service_account(name="Bystander"))
    old = env.sa_token(account)
    assert_status(sa_call(env, old), 200)

    revoked = assert_status(manage(env, "POST", f"/{account['id']}/revoke"), 200)
    assert revoked["status"] == "revoked"
    assert_answer(sa_call(env, old), 401, TOKEN_REVOKED)
    assert_answer(env.call("POST", "/records", GUIDE_RECORD, token=old), 401, TOKEN_REVOKED)
    assert_invalid_client(token_request(env, account["clientId"], account["clientSecret"]))
    assert_status(sa_call(env, bystander), 200)

    activated = assert_status(manage(env, "POST", f"/{account['id']}/activate"), 200)
    assert activated["status"] == "active"
    assert_answer(sa_call(env, old), 401, TOKEN_REVOKED)
    # A token issued after the activation works at once: it carries the account's new
    # token epoch, the old one an earlier epoch.
    new = env.sa_token(account)
    assert claims_of(new)["accountEpoch"] > claims_of(old)["accountEpoch"]
    assert_status(sa_call(env, new), 200)
    assert_status(env.call("POST", "/records", GUIDE_RECORD, token=new), 201)
    assert_answer(sa_call(env, old), 401, TOKEN_REVOKED)


def test_delete_kills_issued_tokens(env: Env) -> None:
    target = set_up_target(env)
    account = env.service_account(name="Deleted", groups=["developers"])
    bystander = env.sa_token(env.service_account(name="Bystander"))
    old = env.sa_token(account)
    assert_status(sa_call(env, old), 200)

    r = manage(env, "DELETE", f"/{account['id']}")
    assert r.status_code == 204, r.text
    before = effects(env, target)
    for route in ROUTES:
        assert_answer(route.call(env, target, token=old), 401, TOKEN_REVOKED)
    assert effects(env, target) == before
    assert_invalid_client(token_request(env, account["clientId"], account["clientSecret"]))
    assert_status(sa_call(env, bystander), 200)


def test_rotate_keeps_issued_tokens_unless_asked(env: Env, subtests: pytest.Subtests) -> None:
    set_up_target(env)
    account = env.service_account(name="Rotated")
    old = env.sa_token(account)
    secret = account["clientSecret"]
    bodies: dict[str, dict[str, Any] | None] = {
        "no-body": None,
        "empty-object": {},
        "revokeTokens-false": {"revokeTokens": False},
    }
    for case, body in bodies.items():
        with subtests.test(msg=case):
            rotated = assert_status(manage(env, "POST", f"/{account['id']}/rotate", body), 200)
            assert rotated["clientSecret"] != secret
            assert_status(sa_call(env, old), 200)
            assert_status(env.call("POST", "/records", GUIDE_RECORD, token=old), 201)
            assert_invalid_client(token_request(env, account["clientId"], secret))
            secret = rotated["clientSecret"]
            new = env.sa_token(account | {"clientSecret": secret})
            assert_status(sa_call(env, new), 200)


def test_rotate_with_revoke_tokens_kills_issued_tokens(env: Env) -> None:
    set_up_target(env)
    account = env.service_account(name="Rotated")
    bystander = env.sa_token(env.service_account(name="Bystander"))
    old = env.sa_token(account)
    assert_status(sa_call(env, old), 200)

    body = {"revokeTokens": True}
    rotated = assert_status(manage(env, "POST", f"/{account['id']}/rotate", body), 200)
    assert_answer(sa_call(env, old), 401, TOKEN_REVOKED)
    assert_answer(env.call("POST", "/records", GUIDE_RECORD, token=old), 401, TOKEN_REVOKED)
    assert_invalid_client(token_request(env, account["clientId"], account["clientSecret"]))
    assert_status(sa_call(env, bystander), 200)

    new = env.sa_token(account | {"clientSecret": rotated["clientSecret"]})
    assert_status(sa_call(env, new), 200)
    assert_status(env.call("POST", "/records", GUIDE_RECORD, token=new), 201)
    assert_answer(sa_call(env, old), 401, TOKEN_REVOKED)


def test_changing_an_accounts_groups_applies_to_its_issued_tokens(env: Env) -> None:
    set_up_target(env)
    account = env.service_account(name="Regrouped", groups=["api-users"])
    as_api_user = env.sa_token(account)
    assert_status(sa_call(env, as_api_user), 200)
    assert_status(env.call("POST", "/records", GUIDE_RECORD, token=as_api_user), 201)

    # api-users removed: the token issued as an api-user loses those permissions.
    body = {"groups": ["developers"]}
    assert assert_status(manage(env, "PUT", f"/{account['id']}/groups", body), 200)["groups"] == [
        "developers"
    ]
    assert_forbidden(eventually(lambda: sa_call(env, as_api_user), 403))
    assert_forbidden(env.call("POST", "/records", GUIDE_RECORD, token=as_api_user))
    assert_forbidden(env.call("GET", "/records", token=as_api_user))
    # A new token carries the new group.
    as_developer = env.sa_token(account)
    assert claims_of(as_developer)["groups"] == ["developers"]
    new_structure = {"slug": "by-developer", "name": "By developer", "fields": []}
    assert_status(env.call("POST", "/structures", new_structure, token=as_developer), 201)

    assert_status(manage(env, "PUT", f"/{account['id']}/groups", {"groups": []}), 200)
    assert_forbidden(eventually(lambda: sa_call(env, as_developer), 403))
    assert_forbidden(env.call("POST", "/records", GUIDE_RECORD, token=as_developer))


def test_group_changes_in_the_store_apply_to_issued_tokens(
    factory: Factory, client: TestClient
) -> None:
    env = make_env(factory, client, workspaces=(WS, OTHER_WS))
    set_up_target(env)
    db = env.factory.db
    service = env.sa_token(env.service_account(name="Default"))  # api-users
    developer = env.user_token(["developers"])
    structure = {"slug": "made-later", "name": "Made later", "fields": []}

    def grant(workspace: str, group: str, permission: str, granted: bool) -> None:
        set_permission(
            db,
            workspace_slug=workspace,
            actor=OPERATOR,
            name=group,
            permission=permission,
            granted=granted,
        )

    # Another workspace's api-users group is another group.
    grant(OTHER_WS, "api-users", SR, False)
    assert_status(sa_call(env, service), 200)

    grant(WS, "api-users", SR, False)
    assert_forbidden(eventually(lambda: sa_call(env, service), 403))
    assert_status(env.call("GET", "/records", token=service), 200)

    grant(WS, "api-users", SW, True)
    r = eventually(lambda: env.call("POST", "/structures", structure, token=service), 201)
    assert_status(r, 201)

    grant(WS, "api-users", SR, True)
    assert_status(eventually(lambda: sa_call(env, service), 200), 200)

    grant(WS, "developers", RW, False)
    r = eventually(lambda: env.call("POST", "/records", GUIDE_RECORD, token=developer), 403)
    assert_forbidden(r)
    assert_status(env.call("GET", "/records", token=developer), 200)

    # A user taken out of the group loses its permissions too.
    set_membership(
        db,
        workspace_slug=WS,
        actor=OPERATOR,
        name="developers",
        email=env.emails[developer],
        member=False,
    )
    assert_forbidden(eventually(lambda: env.call("GET", "/records", token=developer), 403))
    assert_forbidden(env.call("GET", "/structures", token=developer))

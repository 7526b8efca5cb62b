"""Who may call the service-account management API (contract: "Service-account management",
"Who may call" and "Fixed error answers"), through HTTP only.

Every refusal is checked on every route at once (one store per case keeps the suite fast),
and a refused request must change nothing: not the accounts, not the audit log, not the
secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx  # the HTTP library of Starlette's TestClient
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from centrali.services.audit import list_events
from centrali.services.keys import load_key_set
from centrali.services.validation import PageRequest
from centrali.store.db import Database
from tests.factories import Factory, bearer

WS = "acme-corp"
OTHER_WS = "other-ws"
TOKEN_EXPIRED = {"error": "token_expired", "message": "Token expired"}
TOKEN_REVOKED = {"error": "token_revoked", "message": "Token revoked"}
NOT_FOUND = {"error": "not_found", "message": "Service account not found"}


def base(workspace: str = WS) -> str:
    return f"/workspace/{workspace}/api/v1/service-accounts"


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    suffix: str  # after the base; "{id}" is replaced by the account id
    body: dict[str, Any] | None
    ok: int  # the status an authorized caller gets

    def url(self, account_id: int | str, workspace: str = WS) -> str:
        return base(workspace) + self.suffix.format(id=account_id)


# In an order an authorized caller can run them one after the other on one account.
ROUTES = (
    Route("create", "POST", "", {"name": "New account"}, 201),
    Route("list", "GET", "", None, 200),
    Route("get", "GET", "/{id}", None, 200),
    Route("rename", "PUT", "/{id}/name", {"name": "Renamed"}, 200),
    Route("describe", "PUT", "/{id}/description", {"description": "Described"}, 200),
    Route("groups", "PUT", "/{id}/groups", {"groups": ["developers"]}, 200),
    Route("rotate", "POST", "/{id}/rotate", None, 200),
    Route("revoke", "POST", "/{id}/revoke", None, 200),
    Route("activate", "POST", "/{id}/activate", None, 200),
    Route("delete", "DELETE", "/{id}", None, 204),
)
ID_ROUTES = tuple(r for r in ROUTES if "{id}" in r.suffix)


@dataclass
class Ctx:
    factory: Factory
    api: TestClient
    db: Database
    admin: str
    other_admin: str  # an admin of OTHER_WS
    account: dict[str, Any]

    def send(
        self, route: Route, headers: dict[str, str], *, account_id: int | str | None = None
    ) -> httpx.Response:
        url = route.url(self.account["id"] if account_id is None else account_id)
        if route.body is None:
            return self.api.request(route.method, url, headers=headers)
        return self.api.request(route.method, url, json=route.body, headers=headers)

    def state(self, workspace: str = WS) -> dict[str, Any]:
        token = self.admin if workspace == WS else self.other_admin
        r = self.api.get(base(workspace), params={"limit": "100"}, headers=bearer(token))
        assert r.status_code == 200, r.text
        events, _ = list_events(self.db, workspace_slug=workspace, page=PageRequest(limit=100))
        return {"accounts": r.json(), "audit": [e.as_dict() for e in events]}

    def assert_secret_works(self, account: dict[str, Any] | None = None) -> None:
        account = account or self.account
        r = self.factory.token_response(account["clientId"], account["clientSecret"])
        assert r.status_code == 200, r.text


@pytest.fixture
def api(client: TestClient) -> Iterator[TestClient]:
    # Same app and store as `client` (already started by it); 500s come back as answers.
    yield TestClient(client.app, base_url=str(client.base_url), raise_server_exceptions=False)


@pytest.fixture
def ctx(factory: Factory, api: TestClient, db: Database) -> Ctx:
    factory.workspace(WS)
    factory.workspace(OTHER_WS)
    admin = factory.admin(WS)
    account = factory.service_account(admin, name="Target", description="Untouched")
    return Ctx(
        factory=factory,
        api=api,
        db=db,
        admin=admin,
        other_admin=factory.admin(OTHER_WS),
        account=account,
    )


# --- forging tokens ------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(obj: dict[str, Any]) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def header_of(token: str) -> dict[str, Any]:
    header: dict[str, Any] = jwt.get_unverified_header(token)
    return header


@functools.cache
def stranger_key() -> rsa.RSAPrivateKey:
    """An RSA key the server has never seen."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sign_with_server_key(c: Ctx, claims: dict[str, Any]) -> str:
    """A token the server itself could have minted: for claim checks beyond the signature."""
    key = load_key_set(c.db).signing
    return jwt.encode(
        claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": "at+jwt"}
    )


def admin_claims(c: Ctx, **changes: Any) -> dict[str, Any]:
    claims = claims_of(c.admin) | changes
    return {k: v for k, v in claims.items() if v is not None}


def forged_signature(c: Ctx) -> str:
    """The admin's own claims and header, re-signed with a key of our own."""
    return jwt.encode(
        claims_of(c.admin), stranger_key(), algorithm="RS256", headers=header_of(c.admin)
    )


def forged_with_own_kid(c: Ctx) -> str:
    return jwt.encode(
        claims_of(c.admin),
        stranger_key(),
        algorithm="RS256",
        headers={"kid": "attacker-key", "typ": "at+jwt"},
    )


def tampered_payload(c: Ctx) -> str:
    """A developer's genuine token whose payload is swapped for one naming the admin group."""
    developer = c.factory.user_token(WS, ("developers",))
    head, _, signature = developer.split(".")
    claims = claims_of(developer) | {"groups": ["workspace-admins"]}
    return f"{head}.{_segment(claims)}.{signature}"


def alg_none(c: Ctx) -> str:
    header = header_of(c.admin) | {"alg": "none"}
    return f"{_segment(header)}.{_segment(claims_of(c.admin))}."


def hs256_with_public_key(c: Ctx) -> str:
    """Algorithm confusion: HMAC keyed with the server's public key (RFC 8725 §2.1)."""
    public_pem = load_key_set(c.db).signing.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = header_of(c.admin) | {"alg": "HS256"}
    signing_input = f"{_segment(header)}.{_segment(claims_of(c.admin))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(mac)}"


def truncated_signature(c: Ctx) -> str:
    return c.admin[:-6]


def expired_admin(c: Ctx) -> str:
    return c.factory.user_token(WS, now=time.time() - 30_000, ttl=60)


def service_account_token(c: Ctx) -> str:
    return c.factory.sa_token(c.account)


def admin_group_service_account_token(c: Ctx) -> str:
    """A service account in workspace-admins: the group grants the permission, the kind
    of token still does not."""
    account = c.factory.service_account(c.admin, name="Mighty", groups=["workspace-admins"])
    return c.factory.sa_token(account)


def _bearer_of(make: Callable[[Ctx], str]) -> Callable[[Ctx], dict[str, str]]:
    return lambda c: bearer(make(c))


def _basic(c: Ctx) -> dict[str, str]:
    pair = f"{c.account['clientId']}:{c.account['clientSecret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


# Each way of failing to authenticate, with the reason the 401 gives (its message and, when a
# Bearer token was sent, the challenge's error_description) and whether a token was sent.
UNAUTHENTICATED: list[Any] = [
    pytest.param(lambda c: {}, "no access token", False, id="no-header"),
    pytest.param(lambda c: {"Authorization": ""}, "no access token", False, id="empty-header"),
    pytest.param(_basic, "not a Bearer token", False, id="basic-client-credentials"),
    pytest.param(
        lambda c: {"Authorization": "Bearer"},
        "no token after Bearer",
        True,
        id="bearer-without-token",
    ),
    pytest.param(
        lambda c: {"Authorization": "Bearer "}, "no token after Bearer", True, id="bearer-blank"
    ),
    pytest.param(
        lambda c: {"Authorization": "Bearer not-a-jwt"},
        "malformed token",
        True,
        id="bearer-garbage",
    ),
    pytest.param(
        lambda c: {"Authorization": "Bearer aaa.bbb.ccc"},
        "malformed token",
        True,
        id="bearer-three-parts",
    ),
    pytest.param(
        lambda c: {"Authorization": c.admin}, "not a Bearer token", False, id="token-without-scheme"
    ),
    pytest.param(
        lambda c: {"Authorization": "Token " + c.admin},
        "not a Bearer token",
        False,
        id="other-scheme",
    ),
    pytest.param(_bearer_of(truncated_signature), "bad signature", True, id="truncated-signature"),
    pytest.param(
        _bearer_of(forged_signature), "bad signature", True, id="forged-signature-same-kid"
    ),
    pytest.param(
        _bearer_of(forged_with_own_kid), "bad signature", True, id="forged-signature-own-kid"
    ),
    pytest.param(_bearer_of(tampered_payload), "bad signature", True, id="tampered-payload"),
    pytest.param(_bearer_of(alg_none), "alg none", True, id="alg-none"),
    pytest.param(
        _bearer_of(hs256_with_public_key),
        "algorithm HS256 not accepted",
        True,
        id="hs256-with-public-key",
    ),
    pytest.param(
        _bearer_of(lambda c: sign_with_server_key(c, admin_claims(c, iss="https://evil.example"))),
        "wrong issuer (this server is http://testserver)",
        True,
        id="wrong-issuer",
    ),
    pytest.param(
        _bearer_of(lambda c: sign_with_server_key(c, admin_claims(c, aud="https://evil.example"))),
        "wrong audience",
        True,
        id="wrong-audience",
    ),
    pytest.param(
        _bearer_of(lambda c: sign_with_server_key(c, admin_claims(c, workspace=None))),
        "claims missing (workspace)",
        True,
        id="missing-workspace-claim",
    ),
    pytest.param(
        _bearer_of(lambda c: sign_with_server_key(c, admin_claims(c, isServiceAccount=None))),
        "claims missing (isServiceAccount)",
        True,
        id="missing-isServiceAccount-claim",
    ),
]

FORBIDDEN: list[Any] = [
    pytest.param(lambda c: bearer(c.factory.admin(OTHER_WS)), id="admin-of-another-workspace"),
    pytest.param(
        lambda c: bearer(c.factory.user_token(WS, ("developers",))), id="member-developers"
    ),
    pytest.param(
        lambda c: bearer(c.factory.user_token(WS, ("developers", "api-users"))),
        id="member-developers-and-api-users",
    ),
    pytest.param(lambda c: bearer(c.factory.user_token(WS, ())), id="member-without-groups"),
    pytest.param(_bearer_of(service_account_token), id="service-account-token"),
    pytest.param(
        _bearer_of(admin_group_service_account_token), id="service-account-in-admin-group"
    ),
]


def _refusals(
    c: Ctx, headers: dict[str, str], check: Callable[[httpx.Response], bool]
) -> list[str]:
    """Each route whose answer fails ``check``, with what it answered."""
    failures = []
    for route in ROUTES:
        r = c.send(route, headers)
        if not check(r):
            failures.append(f"{route.name}: {r.status_code} {r.text[:200]}")
    return failures


def _is_json(r: httpx.Response) -> bool:
    return r.headers.get("content-type", "").startswith("application/json")


def _forbidden(r: httpx.Response) -> bool:
    if r.status_code != 403 or not _is_json(r):
        return False
    body = r.json()
    # RFC 6750 §3.1: the token is good, it does not grant the request.
    challenge = r.headers.get("www-authenticate", "")
    return (
        body.get("error") == "forbidden"
        and str(body.get("message", "")).startswith("Forbidden")
        and challenge.startswith('Bearer realm="centrali", error="insufficient_scope"')
    )


# --- tests ---------------------------------------------------------------------------------


def test_admin_token_is_accepted_on_every_route(ctx: Ctx) -> None:
    """The positive control for the refusals below."""
    headers = bearer(ctx.admin)
    answers = {route.name: ctx.send(route, headers).status_code for route in ROUTES}
    assert answers == {route.name: route.ok for route in ROUTES}


def _unauthorized(reason: str, token_sent: bool) -> Callable[[httpx.Response], bool]:
    """401 ``unauthorized`` whose message names ``reason``; RFC 6750 §3.1: the challenge
    names ``invalid_token`` (and the same reason) only when a Bearer token was sent."""

    def check(r: httpx.Response) -> bool:
        if r.status_code != 401 or not _is_json(r) or set(r.json()) != {"error", "message"}:
            return False
        message = r.json()["message"]
        challenge = r.headers.get("www-authenticate", "")
        if token_sent:
            expected = 'Bearer realm="centrali", error="invalid_token", error_description="'
            good_challenge = challenge.startswith(expected) and reason in challenge
        else:
            good_challenge = challenge == 'Bearer realm="centrali"'
        return (
            r.json()["error"] == "unauthorized"
            and message.startswith("Unauthorized: ")
            and reason in message
            and good_challenge
        )

    return check


@pytest.mark.parametrize(("make_headers", "reason", "token_sent"), UNAUTHENTICATED)
def test_missing_malformed_or_forged_token_is_401_unauthorized_everywhere(
    ctx: Ctx, make_headers: Callable[[Ctx], dict[str, str]], reason: str, token_sent: bool
) -> None:
    headers = make_headers(ctx)
    before = ctx.state()
    failures = _refusals(ctx, headers, _unauthorized(reason, token_sent))
    assert failures == []
    assert ctx.state() == before
    ctx.assert_secret_works()


def test_expired_token_is_401_token_expired_everywhere(ctx: Ctx) -> None:
    headers = bearer(expired_admin(ctx))
    before = ctx.state()
    failures = _refusals(
        ctx, headers, lambda r: r.status_code == 401 and _is_json(r) and r.json() == TOKEN_EXPIRED
    )
    assert failures == []
    assert ctx.state() == before
    ctx.assert_secret_works()


@pytest.mark.parametrize("make_headers", FORBIDDEN)
def test_foreign_or_unprivileged_token_is_403_everywhere(
    ctx: Ctx, make_headers: Callable[[Ctx], dict[str, str]]
) -> None:
    headers = make_headers(ctx)
    before = ctx.state()
    failures = _refusals(ctx, headers, _forbidden)
    assert failures == []
    assert ctx.state() == before
    ctx.assert_secret_works()


@pytest.mark.parametrize(
    "path_workspace",
    [
        pytest.param("ghost-ws", id="path-workspace-missing"),
        pytest.param(OTHER_WS, id="path-workspace-exists"),
    ],
)
def test_token_of_another_workspace_is_403_whether_or_not_the_path_workspace_exists(
    ctx: Ctx, path_workspace: str
) -> None:
    headers = bearer(ctx.admin)  # an admin of acme-corp
    before = ctx.state(), ctx.state(OTHER_WS)
    failures = []
    for route in ROUTES:
        url = route.url(ctx.account["id"], workspace=path_workspace)
        r = ctx.api.request(route.method, url, json=route.body, headers=headers)
        if not _forbidden(r):
            failures.append(f"{route.name}: {r.status_code} {r.text[:200]}")
    assert failures == []
    assert (ctx.state(), ctx.state(OTHER_WS)) == before


def test_expired_token_of_another_workspace_is_still_401(ctx: Ctx) -> None:
    """The token itself is checked first: an expired token never gets as far as 403."""
    token = ctx.factory.user_token(OTHER_WS, now=time.time() - 30_000, ttl=60)
    r = ctx.api.get(base(WS), headers=bearer(token))
    assert (r.status_code, r.json()) == (401, TOKEN_EXPIRED)


def test_id_of_another_workspace_is_404_and_changes_nothing(ctx: Ctx) -> None:
    other_admin = ctx.other_admin
    theirs = ctx.factory.service_account(other_admin, workspace=OTHER_WS, name="Theirs")
    before = ctx.state(), ctx.state(OTHER_WS)
    headers = bearer(ctx.admin)
    failures = []
    for route in ID_ROUTES:
        r = ctx.send(route, headers, account_id=theirs["id"])
        if r.status_code != 404 or not _is_json(r) or r.json() != NOT_FOUND:
            failures.append(f"{route.name}: {r.status_code} {r.text[:200]}")
    assert failures == []
    assert (ctx.state(), ctx.state(OTHER_WS)) == before
    ctx.assert_secret_works(theirs)
    # The owner still sees it, untouched.
    r = ctx.api.get(f"{base(OTHER_WS)}/{theirs['id']}", headers=bearer(other_admin))
    assert r.status_code == 200
    assert r.json()["name"] == "Theirs"
    assert r.json()["status"] == "active"


@pytest.mark.parametrize("raw_id", ["abc", "0", "-1", "1.5", "99999999999999999999999"])
def test_non_numeric_id_is_404_on_every_id_route(ctx: Ctx, raw_id: str) -> None:
    before = ctx.state()
    headers = bearer(ctx.admin)
    failures = []
    for route in ID_ROUTES:
        r = ctx.send(route, headers, account_id=raw_id)
        if r.status_code != 404 or not _is_json(r) or r.json() != NOT_FOUND:
            failures.append(f"{route.name}: {r.status_code} {r.text[:200]}")
    assert failures == []
    assert ctx.state() == before


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        pytest.param("POST", "/{id}/revoke", id="revoked"),
        pytest.param("DELETE", "/{id}", id="deleted"),
    ],
)
def test_token_of_a_revoked_or_deleted_account_is_401_token_revoked(
    ctx: Ctx, method: str, suffix: str
) -> None:
    """'Token revoked' (account revoked or deleted after the token was issued): the token
    check comes before the service-account refusal (403)."""
    token = ctx.factory.sa_token(ctx.account)
    r = ctx.api.get(base(WS), headers=bearer(token))
    assert r.status_code == 403, r.text  # alive, but a service account
    url = base(WS) + suffix.format(id=ctx.account["id"])
    assert ctx.api.request(method, url, headers=bearer(ctx.admin)).status_code in (200, 204)
    before = ctx.state()
    failures = _refusals(
        ctx,
        bearer(token),
        lambda r: r.status_code == 401 and _is_json(r) and r.json() == TOKEN_REVOKED,
    )
    assert failures == []
    assert ctx.state() == before


def test_member_gaining_the_admin_group_is_allowed(ctx: Ctx) -> None:
    """The refusal of developers is about the permission, not the user: a member holding
    both groups may manage accounts."""
    token = ctx.factory.user_token(WS, ("developers", "workspace-admins"))
    r = ctx.api.post(base(WS), json={"name": "By a developer-admin"}, headers=bearer(token))
    assert r.status_code == 201, r.text
    assert r.json()["createdBy"] == claims_of(token)["sub"]

"""POST /oidc/introspect over HTTP (RFC 7662; contract "Operations and security"), and the
client authentication and form rules it shares with POST /oidc/revoke (RFC 7009), which
are checked on both endpoints here."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx2 as httpx  # the client library of Starlette's TestClient
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError

from centrali.config import Settings
from centrali.oauth.introspection import Revocation
from centrali.oauth.keys import KeySet, generate_private_key_pem, load_signing_key
from centrali.oauth.tokens import TokenSubject, VerifiedToken, issue_access_token
from centrali.services.keys import load_key_set
from centrali.store import repositories as repo
from centrali.store import revocation
from centrali.store.client_store import StoreUnavailableError
from centrali.store.db import Database
from centrali.store.tables import Membership, User
from centrali.web.routes import introspection as introspection_routes
from tests.factories import Factory, bearer

INTROSPECT = "/oidc/introspect"
REVOKE = "/oidc/revoke"
BOTH = pytest.mark.parametrize("path", [INTROSPECT, REVOKE], ids=["introspect", "revoke"])
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
INACTIVE = {"active": False}
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client credentials"}
ACCOUNTS = "/workspace/acme-corp/api/v1/service-accounts"


@pytest.fixture
def admin(factory: Factory) -> str:
    factory.workspace()
    return factory.admin()


@pytest.fixture
def account(factory: Factory, admin: str) -> dict[str, Any]:
    """The account whose tokens are looked at."""
    return factory.service_account(admin, name="Holder")


@pytest.fixture
def peer(factory: Factory, admin: str) -> dict[str, Any]:
    """Another account of the same workspace, introspecting."""
    return factory.service_account(admin, name="Peer")


def basic(account: dict[str, Any], secret: str | None = None) -> dict[str, str]:
    raw = f"{quote_plus(account['clientId'])}:{quote_plus(secret or account['clientSecret'])}"
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def post_form(
    client: TestClient, path: str, body: str | bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return client.post(path, content=content, headers={**FORM, **(headers or {})})


def as_client(caller: dict[str, Any], **form: str) -> str:
    """A client_secret_post form of ``caller``."""
    return urlencode(
        {"client_id": caller["clientId"], "client_secret": caller["clientSecret"], **form}
    )


def introspect(client: TestClient, caller: dict[str, Any], token: str) -> dict[str, Any]:
    r = post_form(client, INTROSPECT, as_client(caller, token=token))
    assert r.status_code == 200, r.text
    assert_not_cacheable(r)
    body: dict[str, Any] = r.json()
    return body


def assert_not_cacheable(response: httpx.Response) -> None:
    assert response.headers.get("cache-control") == "no-store"
    assert response.headers.get("pragma") == "no-cache"


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert body["error_description"]
    assert_not_cacheable(response)


def mint(
    db: Database, settings: Settings, who: TokenSubject, *, now: float, keys: KeySet | None = None
) -> str:
    return issue_access_token(
        who,
        keys=keys or load_key_set(db),
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=settings.token_ttl,
        now=now,
    ).token


def sa_subject(account: dict[str, Any], workspace: str = "acme-corp") -> TokenSubject:
    return TokenSubject(
        subject=account["clientId"],
        client_id=account["clientId"],
        workspace=workspace,
        is_service_account=True,
        groups=("api-users",),
        scope="openid",
    )


# --- active ---------------------------------------------------------------------------------


def test_own_client_sees_its_token_with_every_claim(
    factory: Factory, account: dict[str, Any]
) -> None:
    token = factory.sa_token(account)
    body = introspect(factory.client, account, token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert body == {"active": True, **claims, "token_type": "Bearer"}
    assert body["sub"] == body["client_id"] == account["clientId"]
    assert (body["workspace"], body["isServiceAccount"], body["scope"]) == (
        "acme-corp",
        "true",
        "openid",
    )
    assert body["groups"] == ["api-users"]


def test_client_secret_basic_works(factory: Factory, account: dict[str, Any]) -> None:
    token = factory.sa_token(account)
    r = post_form(factory.client, INTROSPECT, urlencode({"token": token}), basic(account))
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True
    assert_not_cacheable(r)


def test_another_account_of_the_workspace_may_introspect(
    factory: Factory, account: dict[str, Any], peer: dict[str, Any]
) -> None:
    token = factory.sa_token(account)
    body = introspect(factory.client, peer, token)
    assert body["active"] is True
    assert body["sub"] == account["clientId"]


def test_a_user_token_is_active_for_an_account_of_its_workspace(
    factory: Factory, peer: dict[str, Any]
) -> None:
    token = factory.user_token(groups=("developers",), email="dev@acme-corp.test")
    body = introspect(factory.client, peer, token)
    assert body["active"] is True
    assert (body["isServiceAccount"], body["groups"]) == ("false", ["developers"])


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "id_token", "unknown"])
def test_any_hint_finds_the_access_token(
    factory: Factory, account: dict[str, Any], hint: str
) -> None:
    token = factory.sa_token(account)
    r = post_form(factory.client, INTROSPECT, as_client(account, token=token, token_type_hint=hint))
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True


# --- inactive -------------------------------------------------------------------------------


def test_a_token_of_another_workspace_is_inactive(
    factory: Factory, account: dict[str, Any]
) -> None:
    factory.workspace("globex")
    outsider = factory.service_account(factory.admin("globex"), workspace="globex")
    token = factory.sa_token(account)
    assert introspect(factory.client, outsider, token) == INACTIVE
    # ...and the other way round.
    assert introspect(factory.client, account, factory.sa_token(outsider)) == INACTIVE


def test_a_user_token_of_another_workspace_is_inactive(
    factory: Factory, account: dict[str, Any]
) -> None:
    factory.workspace("globex")
    token = factory.user_token("globex", ("developers",))
    assert introspect(factory.client, account, token) == INACTIVE


def test_expired_token_is_inactive(
    factory: Factory, db: Database, settings: Settings, account: dict[str, Any]
) -> None:
    token = mint(db, settings, sa_subject(account), now=time.time() - settings.token_ttl - 1)
    assert introspect(factory.client, account, token) == INACTIVE


def test_expired_user_token_is_inactive(factory: Factory, peer: dict[str, Any]) -> None:
    token = factory.user_token(now=time.time() - 120, ttl=60)
    assert introspect(factory.client, peer, token) == INACTIVE


def test_token_signed_by_a_key_not_ours_is_inactive(
    factory: Factory, db: Database, settings: Settings, account: dict[str, Any]
) -> None:
    stranger = KeySet.of(load_signing_key(generate_private_key_pem()))
    token = mint(db, settings, sa_subject(account), now=time.time(), keys=stranger)
    assert introspect(factory.client, account, token) == INACTIVE


def test_token_with_a_tampered_payload_is_inactive(
    factory: Factory, account: dict[str, Any]
) -> None:
    header, payload, signature = factory.sa_token(account).split(".")
    claims = jwt.utils.base64url_decode(payload).replace(b'"api-users"', b'"developers"')
    forged = jwt.utils.base64url_encode(claims).decode()
    assert introspect(factory.client, account, f"{header}.{forged}.{signature}") == INACTIVE


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 9000],
    ids=["garbage", "three-parts", "alg-none", "huge"],
)
def test_malformed_token_is_inactive(factory: Factory, account: dict[str, Any], token: str) -> None:
    assert introspect(factory.client, account, token) == INACTIVE


def test_revoked_jti_is_inactive(factory: Factory, account: dict[str, Any]) -> None:
    token, other = factory.sa_token(account), factory.sa_token(account)
    r = post_form(factory.client, REVOKE, as_client(account, token=token))
    assert r.status_code == 200, r.text
    assert introspect(factory.client, account, token) == INACTIVE
    assert introspect(factory.client, account, other)["active"] is True


@pytest.mark.parametrize("action", ["revoke", "delete"])
def test_token_of_a_revoked_or_deleted_account_is_inactive(
    factory: Factory, admin: str, account: dict[str, Any], peer: dict[str, Any], action: str
) -> None:
    token = factory.sa_token(account)
    assert introspect(factory.client, peer, token)["active"] is True
    if action == "revoke":
        r = factory.client.post(f"{ACCOUNTS}/{account['id']}/revoke", headers=bearer(admin))
        assert r.status_code == 200, r.text
    else:
        r = factory.client.delete(f"{ACCOUNTS}/{account['id']}", headers=bearer(admin))
        assert r.status_code == 204, r.text
    assert introspect(factory.client, peer, token) == INACTIVE


def test_token_issued_before_a_revoke_stays_inactive_after_activate(
    factory: Factory, admin: str, account: dict[str, Any]
) -> None:
    old = factory.sa_token(account)
    for step in ("revoke", "activate"):
        r = factory.client.post(f"{ACCOUNTS}/{account['id']}/{step}", headers=bearer(admin))
        assert r.status_code == 200, r.text
    assert introspect(factory.client, account, old) == INACTIVE
    assert introspect(factory.client, account, factory.sa_token(account))["active"] is True


def test_token_issued_before_a_rotation_with_revoke_tokens_is_inactive(
    factory: Factory, admin: str, account: dict[str, Any]
) -> None:
    old = factory.sa_token(account)
    r = factory.client.post(
        f"{ACCOUNTS}/{account['id']}/rotate", json={"revokeTokens": True}, headers=bearer(admin)
    )
    assert r.status_code == 200, r.text
    rotated = {**account, "clientSecret": r.json()["clientSecret"]}
    assert introspect(factory.client, rotated, old) == INACTIVE


def test_user_no_longer_a_member_is_inactive(
    factory: Factory, db: Database, peer: dict[str, Any]
) -> None:
    token = factory.user_token(email="leaver@acme-corp.test")
    assert introspect(factory.client, peer, token)["active"] is True
    with db.write() as session:
        user_id = session.scalar(select(User.id).where(User.email == "leaver@acme-corp.test"))
        session.execute(delete(Membership).where(Membership.user_id == user_id))
    assert introspect(factory.client, peer, token) == INACTIVE


def test_revoked_user_token_jti_is_inactive(
    factory: Factory, db: Database, peer: dict[str, Any]
) -> None:
    token = factory.user_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    with db.write() as session:
        revoked = Revocation(claims["jti"], claims["client_id"], "acme-corp", claims["exp"])
        revocation.add_revoked_token(session, revocation=revoked, now=datetime.now(UTC))
    assert introspect(factory.client, peer, token) == INACTIVE


# --- client authentication and the form, on both endpoints ------------------------------------


@BOTH
def test_wrong_secret_is_invalid_client(
    factory: Factory, account: dict[str, Any], path: str
) -> None:
    token = factory.sa_token(account)
    bad = {**account, "clientSecret": "sk_" + "0" * 64}
    r = post_form(factory.client, path, as_client(bad, token=token))
    assert_oauth_error(r, 401, "invalid_client")
    assert r.json() == INVALID_CLIENT
    assert "www-authenticate" not in r.headers


@BOTH
def test_wrong_secret_by_basic_is_challenged(
    factory: Factory, account: dict[str, Any], path: str
) -> None:
    token = factory.sa_token(account)
    r = post_form(
        factory.client, path, urlencode({"token": token}), basic(account, "sk_" + "0" * 64)
    )
    assert_oauth_error(r, 401, "invalid_client")
    assert r.json() == INVALID_CLIENT
    assert r.headers["www-authenticate"].startswith("Basic")


@BOTH
@pytest.mark.parametrize(
    "form",
    [
        pytest.param({}, id="no-credentials"),
        pytest.param({"client_id": "ci_unknownunknownunkn"}, id="id-without-secret"),
        pytest.param(
            {"client_id": "ci_unknownunknownunkn", "client_secret": "sk_x"}, id="unknown-client"
        ),
    ],
)
def test_missing_or_unknown_credentials_are_invalid_client(
    factory: Factory, account: dict[str, Any], path: str, form: dict[str, str]
) -> None:
    token = factory.sa_token(account)
    r = post_form(factory.client, path, urlencode({"token": token, **form}))
    assert_oauth_error(r, 401, "invalid_client")
    assert r.json() == INVALID_CLIENT


@BOTH
def test_revoked_caller_is_invalid_client(
    factory: Factory, admin: str, account: dict[str, Any], peer: dict[str, Any], path: str
) -> None:
    token = factory.sa_token(account)
    r = factory.client.post(f"{ACCOUNTS}/{peer['id']}/revoke", headers=bearer(admin))
    assert r.status_code == 200, r.text
    r = post_form(factory.client, path, as_client(peer, token=token))
    assert_oauth_error(r, 401, "invalid_client")


@BOTH
def test_credentials_by_both_methods_are_invalid_request(
    factory: Factory, account: dict[str, Any], path: str
) -> None:
    token = factory.sa_token(account)
    r = post_form(factory.client, path, as_client(account, token=token), basic(account))
    assert_oauth_error(r, 400, "invalid_request")


@BOTH
@pytest.mark.parametrize("param", ["token", "client_id", "client_secret", "token_type_hint"])
def test_a_repeated_parameter_is_invalid_request(
    factory: Factory, account: dict[str, Any], path: str, param: str
) -> None:
    token = factory.sa_token(account)
    values = {
        "token": token,
        "token_type_hint": "access_token",
        "client_id": account["clientId"],
        "client_secret": account["clientSecret"],
    }
    body = urlencode(values) + f"&{param}={quote_plus(values[param])}"
    r = post_form(factory.client, path, body)
    assert_oauth_error(r, 400, "invalid_request")


@BOTH
@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "multipart/form-data; boundary=x", None],
    ids=["json", "text", "multipart", "none"],
)
def test_a_non_form_body_is_invalid_request(
    factory: Factory, account: dict[str, Any], path: str, content_type: str | None
) -> None:
    token = factory.sa_token(account)
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = factory.client.post(
        path,
        content=f'{{"token": "{token}", "client_id": "{account["clientId"]}"}}'.encode(),
        headers=headers,
    )
    assert_oauth_error(r, 400, "invalid_request")


@BOTH
def test_a_missing_token_is_invalid_request(
    factory: Factory, account: dict[str, Any], path: str
) -> None:
    for body in (as_client(account), as_client(account, token="")):
        r = post_form(factory.client, path, body)
        assert_oauth_error(r, 400, "invalid_request")
        assert "token" in r.json()["error_description"]


@BOTH
def test_a_body_over_the_limit_is_413(factory: Factory, account: dict[str, Any], path: str) -> None:
    r = post_form(factory.client, path, as_client(account, token="x" * (64 * 1024)))
    assert r.status_code == 413
    assert r.json() == {"error": "invalid_request", "error_description": "Request body too large"}
    assert_not_cacheable(r)


@BOTH
def test_get_is_not_allowed(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 405
    assert "POST" in r.headers["allow"]


# --- discovery and OpenAPI ------------------------------------------------------------------


def test_discovery_lists_both_endpoints(client: TestClient, settings: Settings) -> None:
    doc = client.get("/.well-known/openid-configuration").json()
    assert doc["introspection_endpoint"] == f"{settings.issuer}{INTROSPECT}"
    assert doc["revocation_endpoint"] == f"{settings.issuer}{REVOKE}"
    methods = {"client_secret_basic", "client_secret_post", "private_key_jwt"}
    assert set(doc["introspection_endpoint_auth_methods_supported"]) == methods
    assert set(doc["revocation_endpoint_auth_methods_supported"]) == methods | {"none"}
    for endpoint in ("token", "introspection", "revocation"):
        algs = doc[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
        assert set(algs) == {"RS256", "PS256", "ES256", "EdDSA"}


@BOTH
def test_openapi_documents_the_form_and_every_answer(client: TestClient, path: str) -> None:
    operation = client.get("/openapi.json").json()["paths"][path]["post"]
    form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["required"] == ["token"]
    assert {"token", "token_type_hint", "client_id", "client_secret"} <= set(form["properties"])
    assert {"200", "400", "401", "413", "503"} <= set(operation["responses"])
    assert "422" not in operation["responses"]


# --- the store not answering ----------------------------------------------------------------


class _DownStore:
    def __init__(self, _db: Database) -> None:
        pass

    def token_standing(self, _token: object) -> None:
        raise StoreUnavailableError("OperationalError")

    def record_revocation(self, _revocation: object, *, now: int) -> None:
        raise StoreUnavailableError("OperationalError")


@BOTH
def test_a_store_that_does_not_answer_is_503(
    factory: Factory, account: dict[str, Any], path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = factory.sa_token(account)
    monkeypatch.setattr(introspection_routes, "SqlTokenStateStore", _DownStore)
    r = post_form(factory.client, path, as_client(account, token=token))
    assert_oauth_error(r, 503, "temporarily_unavailable")
    assert r.headers["retry-after"] == "1"


@pytest.mark.parametrize("method", ["token_standing", "record_revocation"])
def test_store_errors_become_store_unavailable(
    db: Database, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(repo, "service_account_grants", refuse)
    monkeypatch.setattr(revocation, "add_revoked_token", refuse)
    store = revocation.SqlTokenStateStore(db)
    token = VerifiedToken(
        subject="ci_x",
        client_id="ci_x",
        workspace="acme-corp",
        is_service_account=True,
        groups=(),
        scope="openid",
        issued_at=1,
        expires_at=2,
        jti="j",
        claims={},
    )
    with pytest.raises(StoreUnavailableError):
        if method == "token_standing":
            store.token_standing(token)
        else:
            store.record_revocation(Revocation("j", "ci_x", "acme-corp", 2), now=1)

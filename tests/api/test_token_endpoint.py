"""POST /oidc/token, discovery and JWKS over HTTP (guide "Obtaining JWT Tokens",
"Token Details", "Troubleshooting"; contract "Auth server"; RFC 6749 §2.3.1, §5)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx2 as httpx  # the client library of Starlette's TestClient
import jwt
import pytest
from fastapi.testclient import TestClient

from centrali.config import Settings
from centrali.store.db import Database
from centrali.web.app import create_app
from tests.factories import Factory, bearer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TOKEN_KEYS = {"access_token", "token_type", "expires_in", "scope"}
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Invalid client credentials"}
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
BASE = "/workspace/acme-corp/api/v1/service-accounts"


@pytest.fixture
def account(factory: Factory) -> dict[str, Any]:
    """An account of acme-corp created with the guide's defaults."""
    factory.workspace()
    return factory.service_account(factory.admin(), name="Production API Client")


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: id and secret form-urlencoded, joined by ':', then base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def post_form(client: TestClient, body: str | bytes, **headers: str) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return client.post("/oidc/token", content=content, headers={**FORM, **headers})


def creds(account: dict[str, Any], **extra: str) -> str:
    return urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": account["clientId"],
            "client_secret": account["clientSecret"],
            **extra,
        }
    )


def decode_verified(client: TestClient, settings: Settings, token: str) -> dict[str, Any]:
    """Verify ``token`` the way a resource server would: with the key the JWKS publishes."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = {k["kid"]: k for k in client.get("/oidc/jwks").json()["keys"]}
    assert kid in keys, "the token's kid is not published in the JWKS"
    public_key = jwt.PyJWK(keys[kid]).key
    claims: dict[str, Any] = jwt.decode(
        token,
        public_key,
        algorithms=["RS256"],
        issuer=settings.issuer,
        audience=settings.audience,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    return claims


def assert_not_cacheable(response: httpx.Response) -> None:
    assert response.headers.get("cache-control") == "no-store"
    assert response.headers.get("pragma") == "no-cache"


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    assert body["error_description"]
    assert_not_cacheable(response)


# --- success ----------------------------------------------------------------------------------


def test_client_secret_post_gets_a_token(client: TestClient, account: dict[str, Any]) -> None:
    r = post_form(client, creds(account))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == TOKEN_KEYS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 25200
    assert body["scope"] == "openid"
    assert body["access_token"].count(".") == 2
    assert_not_cacheable(r)


def test_guide_python_example_form_with_scope_openid(
    factory: Factory, account: dict[str, Any]
) -> None:
    r = factory.token_response(account["clientId"], account["clientSecret"], scope="openid")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "openid"


def test_client_secret_basic_gets_a_token(client: TestClient, account: dict[str, Any]) -> None:
    r = post_form(
        client,
        "grant_type=client_credentials",
        **basic(account["clientId"], account["clientSecret"]),
    )
    assert r.status_code == 200, r.text
    assert set(r.json()) == TOKEN_KEYS
    assert r.json()["expires_in"] == 25200
    assert_not_cacheable(r)


def test_basic_with_the_same_client_id_repeated_in_the_body_is_accepted(
    client: TestClient, account: dict[str, Any]
) -> None:
    body = urlencode({"grant_type": "client_credentials", "client_id": account["clientId"]})
    r = post_form(client, body, **basic(account["clientId"], account["clientSecret"]))
    assert r.status_code == 200, r.text


def test_content_type_with_charset_is_accepted(client: TestClient, account: dict[str, Any]) -> None:
    r = client.post(
        "/oidc/token",
        content=creds(account).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert r.status_code == 200, r.text


def test_token_header_is_rs256_at_jwt_with_a_published_kid(
    client: TestClient, account: dict[str, Any]
) -> None:
    token = post_form(client, creds(account)).json()["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    kids = [k["kid"] for k in client.get("/oidc/jwks").json()["keys"]]
    assert header["kid"] in kids


def test_token_claims_follow_the_guide(
    client: TestClient, settings: Settings, account: dict[str, Any]
) -> None:
    before = int(time.time())
    body = post_form(client, creds(account)).json()
    claims = decode_verified(client, settings, body["access_token"])
    assert claims["sub"] == account["clientId"]
    assert claims["client_id"] == account["clientId"]
    assert claims["iss"] == settings.issuer
    assert claims["aud"] == settings.audience
    assert claims["exp"] - claims["iat"] == 25200
    assert before - 5 <= claims["iat"] <= time.time() + 5
    assert isinstance(claims["jti"], str)
    assert claims["jti"]
    assert claims["scope"] == body["scope"] == "openid"
    assert claims["workspace"] == "acme-corp"
    assert claims["isServiceAccount"] == "true"
    assert claims["groups"] == ["api-users"]


def test_basic_token_has_the_same_claims_as_post(
    client: TestClient, settings: Settings, account: dict[str, Any]
) -> None:
    r = post_form(
        client,
        "grant_type=client_credentials",
        **basic(account["clientId"], account["clientSecret"]),
    )
    claims = decode_verified(client, settings, r.json()["access_token"])
    assert (claims["sub"], claims["workspace"], claims["isServiceAccount"]) == (
        account["clientId"],
        "acme-corp",
        "true",
    )


def test_each_token_has_a_fresh_jti(
    client: TestClient, settings: Settings, account: dict[str, Any]
) -> None:
    jtis = {
        decode_verified(client, settings, post_form(client, creds(account)).json()["access_token"])[
            "jti"
        ]
        for _ in range(3)
    }
    assert len(jtis) == 3


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        pytest.param([], [], id="none"),
        pytest.param(["developers"], ["developers"], id="developers"),
        pytest.param(["developers", "api-users"], ["api-users", "developers"], id="two"),
    ],
)
def test_groups_claim_lists_the_accounts_groups(
    factory: Factory,
    settings: Settings,
    groups: list[str],
    expected: list[str],
) -> None:
    factory.workspace()
    account = factory.service_account(factory.admin(), groups=groups)
    claims = decode_verified(factory.client, settings, factory.sa_token(account))
    assert isinstance(claims["groups"], list)
    assert sorted(claims["groups"]) == expected


@pytest.mark.parametrize(
    ("account_scope", "form", "granted"),
    [
        pytest.param("openid profile", {}, "openid profile", id="omitted-gives-all"),
        pytest.param("openid profile", {"scope": "openid"}, "openid", id="subset"),
        pytest.param("openid profile", {"scope": ""}, "openid profile", id="empty-is-omitted"),
        pytest.param("openid", {"scope": "openid"}, "openid", id="exact"),
    ],
)
def test_granted_scope(
    factory: Factory,
    settings: Settings,
    account_scope: str,
    form: dict[str, str],
    granted: str,
) -> None:
    factory.workspace()
    account = factory.service_account(factory.admin(), scope=account_scope)
    r = factory.token_response(account["clientId"], account["clientSecret"], **form)
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == granted
    assert decode_verified(factory.client, settings, r.json()["access_token"])["scope"] == granted


def test_rotated_secret_works_and_the_old_one_fails(
    factory: Factory, account: dict[str, Any]
) -> None:
    admin = factory.admin()
    r = factory.client.post(f"{BASE}/{account['id']}/rotate", headers=bearer(admin))
    assert r.status_code == 200, r.text
    new_secret = r.json()["clientSecret"]
    old = factory.token_response(account["clientId"], account["clientSecret"])
    assert old.status_code == 401
    assert old.json() == INVALID_CLIENT
    assert factory.token_response(account["clientId"], new_secret).status_code == 200


@pytest.fixture
def short_ttl_client(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, db: Database
) -> Iterator[TestClient]:
    """A second app on the same store, configured through CENTRALI_TOKEN_TTL."""
    monkeypatch.setenv("CENTRALI_TOKEN_TTL", "600")
    short = Settings(
        database_url=settings.database_url, data_dir=settings.data_dir, issuer=settings.issuer
    )
    with TestClient(create_app(short, db=db), base_url=settings.issuer) as test_client:
        yield test_client


def test_token_ttl_setting_sets_expires_in_and_exp(
    short_ttl_client: TestClient, settings: Settings, account: dict[str, Any]
) -> None:
    r = post_form(short_ttl_client, creds(account))
    assert r.status_code == 200, r.text
    assert r.json()["expires_in"] == 600
    claims = decode_verified(short_ttl_client, settings, r.json()["access_token"])
    assert claims["exp"] - claims["iat"] == 600


# --- refused clients --------------------------------------------------------------------------


def _revoke(factory: Factory, account: dict[str, Any]) -> None:
    r = factory.client.post(f"{BASE}/{account['id']}/revoke", headers=bearer(factory.admin()))
    assert r.status_code == 200, r.text


def _delete(factory: Factory, account: dict[str, Any]) -> None:
    r = factory.client.delete(f"{BASE}/{account['id']}", headers=bearer(factory.admin()))
    assert r.status_code == 204, r.text


@pytest.mark.parametrize(
    ("situation", "use_basic"),
    [
        pytest.param(situation, use_basic, id=f"{situation}-{'basic' if use_basic else 'post'}")
        for situation in ("wrong-secret", "unknown-client", "revoked", "deleted", "other-secret")
        for use_basic in (False, True)
    ],
)
def test_refused_client_gets_invalid_client(
    factory: Factory, account: dict[str, Any], situation: str, use_basic: bool
) -> None:
    client_id, secret = account["clientId"], account["clientSecret"]
    if situation == "wrong-secret":
        secret = "sk_" + "0" * 64
    elif situation == "unknown-client":
        client_id = "ci_" + "z" * 20
    elif situation == "revoked":
        _revoke(factory, account)
    elif situation == "deleted":
        _delete(factory, account)
    elif situation == "other-secret":
        secret = factory.service_account(factory.admin(), name="Other")["clientSecret"]
    if use_basic:
        r = post_form(factory.client, "grant_type=client_credentials", **basic(client_id, secret))
    else:
        r = factory.token_response(client_id, secret)
    assert_oauth_error(r, 401, "invalid_client")
    assert r.json() == INVALID_CLIENT
    if use_basic:
        assert r.headers["www-authenticate"].startswith("Basic")


def test_reactivated_account_gets_tokens_again(factory: Factory, account: dict[str, Any]) -> None:
    _revoke(factory, account)
    r = factory.client.post(f"{BASE}/{account['id']}/activate", headers=bearer(factory.admin()))
    assert r.status_code == 200, r.text
    assert factory.token_response(account["clientId"], account["clientSecret"]).status_code == 200


# --- request errors ---------------------------------------------------------------------------

ID, SECRET = "{id}", "{secret}"
GRANT = "grant_type=client_credentials"
POST_CREDS = f"{GRANT}&client_id={ID}&client_secret={SECRET}"

# (body template, content type or None for no header, send Basic?, status, error)
REQUEST_ERRORS = [
    pytest.param(GRANT, "form", False, 401, "invalid_client", id="no-client-auth"),
    pytest.param(f"{GRANT}&client_id={ID}", "form", False, 401, "invalid_client", id="id-only"),
    pytest.param(
        f"{GRANT}&client_secret={SECRET}", "form", False, 401, "invalid_client", id="secret-only"
    ),
    pytest.param(
        f"{GRANT}&client_id={ID}&client_secret=", "form", False, 401, "invalid_client",
        id="empty-secret-is-omitted",
    ),
    pytest.param(
        f"{GRANT}&client_secret={SECRET}", "form", True, 400, "invalid_request",
        id="basic-and-body-secret",
    ),
    pytest.param(POST_CREDS, "form", True, 400, "invalid_request", id="basic-and-body-creds"),
    pytest.param(
        f"{POST_CREDS}&grant_type=client_credentials", "form", False, 400, "invalid_request",
        id="repeated-grant_type",
    ),
    pytest.param(
        f"{POST_CREDS}&scope=openid&scope=openid", "form", False, 400, "invalid_request",
        id="repeated-scope",
    ),
    pytest.param(
        f"{POST_CREDS}&client_id={ID}", "form", False, 400, "invalid_request",
        id="repeated-client_id",
    ),
    pytest.param(
        '{{"grant_type": "client_credentials", "client_id": "{id}", "client_secret": "{secret}"}}',
        "application/json", False, 400, "invalid_request", id="json-body",
    ),
    pytest.param(POST_CREDS, None, False, 400, "invalid_request", id="no-content-type"),
    pytest.param(POST_CREDS, "text/plain", False, 400, "invalid_request", id="text-plain"),
    pytest.param(
        f"client_id={ID}&client_secret={SECRET}", "form", False, 400, "invalid_request",
        id="missing-grant_type",
    ),
    pytest.param(
        f"grant_type=&client_id={ID}&client_secret={SECRET}", "form", False, 400,
        "invalid_request", id="empty-grant_type-is-omitted",
    ),
    pytest.param(
        f"grant_type=password&client_id={ID}&client_secret={SECRET}&username=a&password=b",
        "form", False, 400, "unsupported_grant_type", id="password-grant",
    ),
    pytest.param(
        f"grant_type=urn:example:made-up&client_id={ID}&client_secret={SECRET}", "form", False,
        400, "unsupported_grant_type", id="made-up-grant",
    ),
    pytest.param(
        f"{POST_CREDS}&scope=admin", "form", False, 400, "invalid_scope", id="scope-admin"
    ),
    pytest.param(
        f"{POST_CREDS}&scope=openid+admin", "form", False, 400, "invalid_scope",
        id="scope-one-not-allowed",
    ),
    pytest.param(
        f"{POST_CREDS}&scope=profile", "form", False, 400, "invalid_scope",
        id="scope-known-not-granted",
    ),
    pytest.param(
        f"{GRANT}&client_id=%FF%FE&client_secret={SECRET}", "form", False, 400,
        "invalid_request", id="non-utf8-percent-encoding",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("template", "content_type", "use_basic", "status", "error"), REQUEST_ERRORS
)
def test_request_errors(
    client: TestClient,
    account: dict[str, Any],
    template: str,
    content_type: str | None,
    use_basic: bool,
    status: int,
    error: str,
) -> None:
    body = template.format(id=account["clientId"], secret=account["clientSecret"])
    headers: dict[str, str] = {}
    if content_type is not None:
        headers["Content-Type"] = FORM["Content-Type"] if content_type == "form" else content_type
    if use_basic:
        headers.update(basic(account["clientId"], account["clientSecret"]))
    r = client.post("/oidc/token", content=body.encode(), headers=headers)
    assert_oauth_error(r, status, error)
    if status == 401:
        assert r.json() == INVALID_CLIENT


def test_raw_non_utf8_body_is_invalid_request(client: TestClient, account: dict[str, Any]) -> None:
    r = post_form(client, creds(account).encode() + b"&scope=\xff\xfe")
    assert_oauth_error(r, 400, "invalid_request")


def test_basic_with_empty_body_secret_is_accepted(
    client: TestClient, account: dict[str, Any]
) -> None:
    # An empty parameter counts as omitted, so this is not "two methods at once".
    r = post_form(
        client,
        f"{GRANT}&client_secret=",
        **basic(account["clientId"], account["clientSecret"]),
    )
    assert r.status_code == 200, r.text


def test_unsupported_grant_is_reported_even_without_client_auth(client: TestClient) -> None:
    assert_oauth_error(post_form(client, "grant_type=password"), 400, "unsupported_grant_type")


def test_get_on_the_token_endpoint_is_not_allowed(client: TestClient) -> None:
    assert client.get("/oidc/token").status_code == 405


def test_failed_post_authentication_has_no_basic_challenge(
    factory: Factory, account: dict[str, Any]
) -> None:
    r = factory.token_response(account["clientId"], "sk_wrong")
    assert r.status_code == 401
    assert "basic" not in r.headers.get("www-authenticate", "").lower()


# --- body size --------------------------------------------------------------------------------


def test_body_over_64_kib_is_413(client: TestClient, account: dict[str, Any]) -> None:
    body = creds(account, padding="a" * (64 * 1024))
    r = post_form(client, body)
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/json")
    assert set(r.json()) == {"error", "error_description"}


def test_streamed_body_over_64_kib_is_413(client: TestClient, account: dict[str, Any]) -> None:
    def chunks() -> Iterator[bytes]:
        yield creds(account).encode()
        for _ in range(20):
            yield b"&p=" + b"a" * 4096

    r = client.post("/oidc/token", content=chunks(), headers=FORM)
    assert "content-length" not in r.request.headers  # the size is only known while reading
    assert r.status_code == 413
    assert set(r.json()) == {"error", "error_description"}


def test_body_just_under_64_kib_is_processed(client: TestClient, account: dict[str, Any]) -> None:
    head = creds(account) + "&padding="
    r = post_form(client, head + "a" * (64 * 1024 - len(head)))
    assert r.status_code == 200, r.text


def test_oversized_token_request_answer_is_not_cacheable(
    client: TestClient, account: dict[str, Any]
) -> None:
    # STYLE.md: every token answer, success or error, carries no-store / no-cache.
    r = post_form(client, creds(account, padding="a" * (64 * 1024)))
    assert r.status_code == 413
    assert_not_cacheable(r)


# --- discovery and JWKS -----------------------------------------------------------------------


def test_discovery_document(client: TestClient, settings: Settings) -> None:
    r = client.get("/.well-known/openid-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["issuer"] == settings.issuer
    assert doc["token_endpoint"] == f"{settings.issuer}/oidc/token"
    assert doc["jwks_uri"] == f"{settings.issuer}/oidc/jwks"
    assert doc["jwks_uri"].endswith("/oidc/jwks")
    assert "client_credentials" in doc["grant_types_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        doc["token_endpoint_auth_methods_supported"]
    )
    assert "RS256" in doc["id_token_signing_alg_values_supported"]


def test_discovery_endpoints_are_served_here(client: TestClient, account: dict[str, Any]) -> None:
    doc = client.get("/.well-known/openid-configuration").json()
    jwks_path = urlsplit(doc["jwks_uri"]).path
    token_path = urlsplit(doc["token_endpoint"]).path
    assert client.get(jwks_path).json()["keys"]
    assert post_form(client, creds(account)).status_code == 200
    assert token_path == "/oidc/token"


def test_jwks_publishes_public_rsa_signing_keys_only(client: TestClient) -> None:
    r = client.get("/oidc/jwks")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert keys
    for jwk in keys:
        assert jwk["kty"] == "RSA"
        assert jwk["alg"] == "RS256"
        assert jwk["use"] == "sig"
        assert jwk["kid"]
        assert jwk["n"]
        assert jwk["e"]
        leaked = [m for m in PRIVATE_MEMBERS if m in jwk]
        assert leaked == []


def test_jwks_kid_is_the_rfc7638_thumbprint(client: TestClient) -> None:
    for jwk in client.get("/oidc/jwks").json()["keys"]:
        canonical = json.dumps(
            {"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]}, separators=(",", ":")
        )
        digest = hashlib.sha256(canonical.encode()).digest()
        assert jwk["kid"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

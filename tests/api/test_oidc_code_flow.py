"""Human sign-in over HTTP: authorization code + PKCE, the sign-in form, tokens, refresh,
userinfo, logout, and every refusal (OpenID Connect Core §3.1, RFC 6749 §4.1, RFC 7636,
RFC 9700). SQLite, and PostgreSQL when configured."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the HTTP library of Starlette's TestClient
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from centrali.config import Settings
from centrali.oauth.keywrap import MasterKeyError
from centrali.services.oidc import register_public_client
from centrali.services.password_gate import PasswordGate, PasswordGateFull
from centrali.services.permissions import ADMIN_GROUP
from centrali.services.ticket_key import SETTING as TICKET_KEY_SETTING
from centrali.services.ticket_key import ensure_ticket_key, load_ticket_key
from centrali.services.users import add_member, create_user, set_password
from centrali.services.workspaces import create_workspace
from centrali.store.db import Database
from centrali.store.tables import AuthorizationCode, ServerSetting
from centrali.web.app import CentraliApp, create_app
from tests.api.oidc_browser import (
    CALLBACK,
    CONSOLE,
    PASSWORD,
    Flow,
    form_inputs,
    hidden_fields,
    pkce_pair,
    query_of,
)
from tests.api.test_rate_limits import PEER_HEADER, PeerAddress
from tests.conftest import ISSUER
from tests.factories import Factory, bearer

EMAIL = "ada@acme.test"
ACCOUNTS = "/workspace/acme-corp/api/v1/service-accounts"


@pytest.fixture
def admin(factory: Factory, db: Database) -> str:
    """A workspace admin of acme-corp with a password; returns the email."""
    factory.workspace("acme-corp")
    create_user(
        db, email=EMAIL, workspace_slug="acme-corp", groups=[ADMIN_GROUP], password=PASSWORD
    )
    return EMAIL


@pytest.fixture
def flow(client: TestClient) -> Flow:
    return Flow(client)


def claims_of(client: TestClient, token: str, *, audience: str) -> dict[str, Any]:
    """Claims of a JWT after checking its signature against the published JWKS."""
    header = jwt.get_unverified_header(token)
    keys = {k["kid"]: k for k in client.get("/oidc/jwks").json()["keys"]}
    key = jwt.PyJWK(keys[header["kid"]])
    decoded: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256"], audience=audience, issuer=ISSUER
    )
    return decoded


def assert_error_page(r: httpx.Response, status: int = 400) -> None:
    """Refused with a page of ours, never sent anywhere."""
    assert r.status_code == status, r.text
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")


def assert_redirected_error(r: httpx.Response, flow: Flow, error: str) -> None:
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith(flow.redirect_uri + "?")
    query = query_of(location)
    assert query["error"] == error, query
    assert query["state"] == flow.state
    assert query["iss"] == ISSUER
    assert "code" not in query


def assert_invalid_grant(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    assert r.headers["cache-control"] == "no-store"


# --- the whole flow ---------------------------------------------------------------------------


def test_sign_in_gives_tokens_that_work_on_the_management_api(
    client: TestClient, flow: Flow, admin: str, db: Database
) -> None:
    page = flow.authorize()
    assert page.status_code == 200
    inputs = form_inputs(page.text)
    assert inputs["email"]["type"] == "email"
    assert inputs["password"]["type"] == "password"
    assert {"csrf_token", "ticket"} <= set(hidden_fields(page.text))
    assert page.text.count("<form") == 1

    answer = flow.login(page, admin)
    code = flow.code_of(answer)
    r = flow.exchange(code)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "openid"
    assert body["refresh_token"].startswith("rt_")

    access = claims_of(client, body["access_token"], audience=ISSUER)
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    assert access["isServiceAccount"] == "false"
    assert access["workspace"] == "acme-corp"
    assert access["groups"] == [ADMIN_GROUP]
    assert access["client_id"] == CONSOLE
    assert access["exp"] == access["iat"] + 900

    id_token = claims_of(client, body["id_token"], audience=CONSOLE)
    assert jwt.get_unverified_header(body["id_token"])["typ"] == "JWT"
    assert jwt.get_unverified_header(body["id_token"])["alg"] == "RS256"
    assert id_token["sub"] == access["sub"]
    assert id_token["nonce"] == flow.nonce
    assert id_token["email"] == admin
    assert id_token["auth_time"] <= id_token["iat"]
    assert id_token["sid"]

    listed = client.get(ACCOUNTS, headers=bearer(body["access_token"]))
    assert listed.status_code == 200, listed.text
    created = client.post(
        ACCOUNTS, json={"name": "From the console"}, headers=bearer(body["access_token"])
    )
    assert created.status_code == 201, created.text


def test_the_sign_in_page_is_locked_down(flow: Flow, admin: str) -> None:
    page = flow.authorize()
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "style-src 'sha256-" in csp
    assert "form-action 'self' http://testserver" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "<script" not in page.text
    assert "http" not in page.text.replace(ISSUER, "")  # no third-party asset, no link out
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    cookie = page.headers["set-cookie"].lower()
    assert "centrali_csrf=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/oidc" in cookie

    answer = flow.login(page, admin)
    session_cookie = answer.headers["set-cookie"].lower()
    assert "centrali_session=" in session_cookie
    assert "httponly" in session_cookie
    assert "samesite=lax" in session_cookie
    assert "path=/oidc" in session_cookie


def test_a_signed_in_browser_skips_the_form(client: TestClient, flow: Flow, admin: str) -> None:
    flow.sign_in(admin)
    second = Flow(client)
    again = second.authorize()
    assert again.status_code == 303
    assert second.exchange(second.code_of(again)).status_code == 200


def test_prompt_login_asks_again_and_prompt_none_never_asks(
    client: TestClient, flow: Flow, admin: str
) -> None:
    assert_redirected_error(flow.authorize(prompt="none"), flow, "login_required")
    flow.sign_in(admin)
    assert flow.authorize(prompt="login").status_code == 200
    assert flow.authorize(prompt="none").status_code == 303


def test_state_and_nonce_are_round_tripped_exactly(flow: Flow, admin: str) -> None:
    flow.state = "a state with spaces & symbols/=?"
    flow.nonce = "n-0S6_WzA2Mj"
    tokens = flow.tokens(admin)
    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["nonce"] == (
        flow.nonce
    )


def test_redirect_uri_with_a_query_keeps_it(client: TestClient, db: Database, admin: str) -> None:
    uri = "http://127.0.0.1:9999/cb?tenant=1"
    register_public_client(db, client_id="tool", redirect_uris=[uri])
    flow = Flow(client, client_id="tool", redirect_uri=uri)
    answer = flow.login(flow.authorize(), admin)
    assert answer.headers["location"].startswith(uri + "&code=")
    assert flow.exchange(flow.code_of(answer)).status_code == 200


# --- refusals before the redirect URI is trusted: a page, never a redirect -------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        f"{CALLBACK}/x",
        f"{CALLBACK}?x=1",
        f"{CALLBACK}x",
        CALLBACK.upper(),
        CALLBACK.replace("http://", "https://"),
        f"{CALLBACK}#frag",
        "",
    ],
    ids=["foreign", "sub-path", "extra-query", "suffix", "case", "scheme", "fragment", "missing"],
)
def test_unregistered_redirect_uri_gets_an_error_page(
    flow: Flow, admin: str, redirect_uri: str
) -> None:
    r = flow.authorize(redirect_uri=redirect_uri or None)
    assert_error_page(r)
    assert "redirect_uri" in r.text


@pytest.mark.parametrize(
    "client_id", ["nope", "", "ci_abcdefghijklmnopqrst"], ids=["unknown", "missing", "sa-id"]
)
def test_unknown_client_gets_an_error_page(flow: Flow, client_id: str) -> None:
    assert_error_page(flow.authorize(client_id=client_id or None))


def test_missing_state_gets_an_error_page(flow: Flow) -> None:
    assert_error_page(flow.authorize(state=None))


def test_repeated_redirect_uri_gets_an_error_page(client: TestClient, flow: Flow) -> None:
    params: list[tuple[str, str | int | float | bool | None]] = [
        *flow.params().items(),
        ("redirect_uri", "https://evil.example/cb"),
    ]
    r = client.get("/oidc/authorize", params=params, follow_redirects=False)
    assert_error_page(r)


# --- refusals after it: redirected with error, state and iss ---------------------------------


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"request": "eyJ.x.y"}, "request_not_supported"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"workspace": "Not A Slug"}, "invalid_request"),
    ],
    ids=[
        "token",
        "hybrid",
        "no-response-type",
        "plain-pkce",
        "no-method",
        "no-pkce",
        "bad-challenge",
        "no-openid",
        "unknown-scope",
        "fragment-mode",
        "request-object",
        "prompt-none-and-login",
        "bad-workspace",
    ],
)
def test_invalid_requests_are_sent_back_with_state(
    flow: Flow, overrides: dict[str, str | None], error: str
) -> None:
    assert_redirected_error(flow.authorize(**overrides), flow, error)


def test_post_to_the_authorization_endpoint_works_like_get(
    client: TestClient, flow: Flow, admin: str
) -> None:
    page = client.post("/oidc/authorize", data=flow.params(), follow_redirects=False)
    assert page.status_code == 200
    assert flow.exchange(flow.code_of(flow.login(page, admin))).status_code == 200


# --- the sign-in form ---------------------------------------------------------------------------


def test_wrong_password_and_unknown_email_answer_the_same(flow: Flow, admin: str) -> None:
    page = flow.authorize()
    wrong = flow.login(page, admin, "not the password")
    unknown = flow.login(page, "nobody@acme.test", "not the password")
    malformed = flow.login(page, "not-an-email", "not the password")
    for r in (wrong, unknown, malformed):
        assert r.status_code == 200
        assert "Incorrect email or password." in r.text
        assert "centrali_session" not in r.headers.get("set-cookie", "")
    # The pages differ only in the email typed in and the freshly signed ticket.
    strip = [(admin, ""), ("nobody@acme.test", ""), ("not-an-email", "")]

    def shape(r: httpx.Response) -> str:
        text = r.text.replace(hidden_fields(r.text)["ticket"], "")
        for old, new in strip:
            text = text.replace(old, new)
        return text

    assert shape(wrong) == shape(unknown) == shape(malformed)


def test_user_without_a_password_cannot_sign_in(factory: Factory, flow: Flow, db: Database) -> None:
    factory.workspace("acme-corp")
    create_user(db, email="nopass@acme.test", workspace_slug="acme-corp")
    r = flow.login(flow.authorize(), "nopass@acme.test", "")
    assert "Enter your email and password." in r.text
    r = flow.login(flow.authorize(), "nopass@acme.test", "anything-at-all")
    assert "Incorrect email or password." in r.text


@pytest.mark.parametrize(
    "tamper",
    ["missing-token", "wrong-token", "no-cookie", "bad-ticket", "missing-ticket"],
)
def test_csrf_token_missing_or_wrong_is_refused(
    client: TestClient, flow: Flow, admin: str, tamper: str
) -> None:
    page = flow.authorize()
    data = {**hidden_fields(page.text), "email": admin, "password": PASSWORD}
    if tamper == "missing-token":
        del data["csrf_token"]
    elif tamper == "wrong-token":
        data["csrf_token"] = "x" * 43
    elif tamper == "no-cookie":
        client.cookies.clear()
    elif tamper == "bad-ticket":
        data["ticket"] = data["ticket"][:-4] + "AAAA"
    else:
        del data["ticket"]
    r = client.post("/oidc/login", data=data, follow_redirects=False)
    assert_error_page(r, 403)
    assert "centrali_session" not in r.headers.get("set-cookie", "")


def test_a_ticket_made_for_another_browser_is_refused(
    client: TestClient, settings: Settings, db: Database, admin: str
) -> None:
    """An attacker's own form (ticket + token) posted from the victim's browser: login CSRF."""
    attacker = Flow(client)
    data = {**hidden_fields(attacker.authorize().text), "email": admin, "password": PASSWORD}
    with TestClient(create_app(settings, db=db), base_url=ISSUER) as victim:
        victim.get("/oidc/authorize", params=Flow(victim).params())  # has its own cookie
        r = victim.post("/oidc/login", data=data, follow_redirects=False)
    assert_error_page(r, 403)


def test_a_ticket_cannot_change_the_redirect_uri(
    client: TestClient, flow: Flow, admin: str
) -> None:
    page = flow.authorize()
    data = {**hidden_fields(page.text), "email": admin, "password": PASSWORD}
    data["redirect_uri"] = "https://evil.example/cb"  # ignored: the ticket is signed
    r = client.post("/oidc/login", data=data, follow_redirects=False)
    flow.code_of(r)


@pytest.fixture
def limited_client(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Database]]:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        issuer=ISSUER,
        login_failures_per_account=3,
        login_failures_per_ip=5,
    )
    db = Database(settings.database_url)
    with TestClient(create_app(settings, db=db), base_url=ISSUER) as client:
        create_workspace(db, slug="acme-corp")
        create_user(db, email=EMAIL, workspace_slug="acme-corp", password=PASSWORD)
        yield client, db
    db.dispose()


def test_login_rate_limit_per_account_refuses_even_the_right_password(
    limited_client: tuple[TestClient, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _db = limited_client
    flow = Flow(client)
    page = flow.authorize()
    for _ in range(3):
        assert "Incorrect" in flow.login(page, EMAIL, "wrong password").text
    checked: list[str] = []
    monkeypatch.setattr(
        "centrali.web.routes.authorize.check_password",
        lambda *a, **k: checked.append("checked"),
    )
    r = flow.login(page, EMAIL, PASSWORD)
    assert r.status_code == 429
    assert "Too many sign-in attempts" in r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "location" not in r.headers
    assert checked == []  # refused before the password was looked at
    # Another account from the same address is not blocked by this account's budget.
    other = flow.login(page, "someone@acme.test", "wrong password")
    assert other.status_code == 200


def test_login_rate_limit_per_address(limited_client: tuple[TestClient, Database]) -> None:
    client, _db = limited_client
    flow = Flow(client)
    page = flow.authorize()
    for i in range(5):
        assert flow.login(page, f"user{i}@acme.test", "wrong password").status_code == 200
    r = flow.login(page, EMAIL, PASSWORD)
    assert r.status_code == 429
    assert "retry-after" in r.headers


@pytest.fixture
def peer_client(
    database_url: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[TestClient, CentraliApp]]]:
    """``peer_client(**settings)``: an app whose requests come from the address in the
    ``X-Test-Peer`` header (one limiter, many addresses), with a user EMAIL of acme-corp."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> tuple[TestClient, CentraliApp]:
            settings = Settings(
                database_url=database_url, data_dir=tmp_path, issuer=ISSUER, **overrides
            )
            db = Database(settings.database_url)
            stack.callback(db.dispose)
            app = create_app(settings, db=db)
            client = stack.enter_context(TestClient(PeerAddress(app), base_url=ISSUER))
            create_workspace(db, slug="acme-corp")
            create_user(db, email=EMAIL, workspace_slug="acme-corp", password=PASSWORD)
            return client, app

        yield make


def login_from(flow: Flow, page: httpx.Response, ip: str, email: str, password: str) -> int:
    flow.client.headers[PEER_HEADER] = ip
    return flow.login(page, email, password).status_code


def test_login_limit_per_address_counts_an_ipv6_address_by_its_64(
    peer_client: Callable[..., tuple[TestClient, CentraliApp]],
) -> None:
    client, _app = peer_client(
        login_failures_per_ip=3, login_failures_per_account=0, login_failures_global=0
    )
    flow = Flow(client)
    page = flow.authorize()
    rotated = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"]
    for i, ip in enumerate(rotated):  # one /64, a new address (and email) each time
        assert login_from(flow, page, ip, f"u{i}@x.test", "wrong") == 200
    assert login_from(flow, page, "2001:db8:1:2::abcd", EMAIL, PASSWORD) == 429
    assert login_from(flow, page, "2001:db8:1:3::1", EMAIL, PASSWORD) == 303  # another /64
    for _ in range(3):  # IPv4 counts by address
        assert login_from(flow, page, "198.51.100.1", "v4@x.test", "wrong") == 200
    assert login_from(flow, page, "198.51.100.1", EMAIL, PASSWORD) == 429
    flow = Flow(client)  # signed in now: a fresh browser for the form
    client.cookies.clear()
    page = flow.authorize()
    assert login_from(flow, page, "198.51.100.2", EMAIL, PASSWORD) == 303


def test_a_global_budget_caps_failed_sign_ins_from_everywhere(
    peer_client: Callable[..., tuple[TestClient, CentraliApp]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _app = peer_client(
        login_failures_per_ip=0, login_failures_per_account=0, login_failures_global=3
    )
    flow = Flow(client)
    page = flow.authorize()
    for i in range(3):  # a spray: every address and every email new
        assert login_from(flow, page, f"2001:db8:{i}::1", f"user{i}@x.test", "wrong") == 200
    checked: list[str] = []
    monkeypatch.setattr(
        "centrali.web.routes.authorize.check_password", lambda *a, **k: checked.append("x")
    )
    r = flow.login(page, EMAIL, PASSWORD)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 20
    assert checked == []


def test_a_right_password_does_not_spend_the_global_budget(
    peer_client: Callable[..., tuple[TestClient, CentraliApp]],
) -> None:
    client, _app = peer_client(login_failures_global=2)
    for i in range(4):
        client.cookies.clear()
        flow = Flow(client)
        assert login_from(flow, flow.authorize(), f"192.0.2.{i}", EMAIL, PASSWORD) == 303


def test_sign_ins_past_the_password_check_bound_get_503_at_once(
    peer_client: Callable[..., tuple[TestClient, CentraliApp]],
) -> None:
    client, app = peer_client(login_failures_per_ip=1, login_failures_per_account=0)
    flow = Flow(client)
    page = flow.authorize()
    gate = app.app.state.password_gate
    assert isinstance(gate, PasswordGate) and gate.bound == 4 + 16  # the default: 4 at once

    class Full:
        async def run(self, *args: Any, **kwargs: Any) -> Any:
            raise PasswordGateFull

    app.app.state.password_gate = Full()
    try:
        r = flow.login(page, EMAIL, PASSWORD)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "busy" in r.text
        r = flow.login(page, EMAIL, PASSWORD)
        assert r.status_code == 503  # not 429: a refusal spends no budget
    finally:
        app.app.state.password_gate = gate
    flow.code_of(flow.login(page, EMAIL, PASSWORD))


# --- the login ticket and the authorization endpoint's limit ---------------------------------


def test_a_login_ticket_is_an_hmac_of_the_stores_key_read_by_every_instance(
    settings: Settings, db: Database, client: TestClient, admin: str
) -> None:
    """No private key signs what an unauthenticated request asks for; another instance on
    the same store reads the ticket (one key per store)."""
    flow = Flow(client)
    page = flow.authorize()
    ticket = hidden_fields(page.text)["ticket"]
    assert jwt.get_unverified_header(ticket) == {"alg": "HS256", "typ": "centrali-login+jwt"}
    data = {**hidden_fields(page.text), "email": admin, "password": PASSWORD}
    with TestClient(create_app(settings, db=db), base_url=ISSUER) as other:
        other.cookies.update(client.cookies)
        flow.code_of(other.post("/oidc/login", data=data, follow_redirects=False))
    key = load_ticket_key(db, None)
    assert jwt.decode(ticket, key, algorithms=["HS256"], options={"verify_aud": False})


def test_a_ticket_under_another_key_is_refused(client: TestClient, flow: Flow, admin: str) -> None:
    page = flow.authorize()
    fields = hidden_fields(page.text)
    claims = jwt.decode(fields["ticket"], options={"verify_signature": False})
    forged = jwt.encode(claims, b"k" * 32, algorithm="HS256", headers={"typ": "centrali-login+jwt"})
    data = {**fields, "ticket": forged, "email": admin, "password": PASSWORD}
    assert_error_page(client.post("/oidc/login", data=data, follow_redirects=False), 403)


def test_the_ticket_key_is_made_once_per_store_and_kept_like_the_signing_keys(
    db: Database,
) -> None:
    master = bytes(range(32))
    with db.read() as session:
        original = session.get(ServerSetting, TICKET_KEY_SETTING)
        assert original is not None
        kept = original.value
    try:
        first = load_ticket_key(db, None)
        ensure_ticket_key(db, None)  # a second server starting: the first key stays
        assert load_ticket_key(db, None) == first and len(first) == 32
        with db.write() as session:
            session.execute(delete(ServerSetting).where(ServerSetting.name == TICKET_KEY_SETTING))
        ensure_ticket_key(db, master)  # made under a master key: stored encrypted
        with db.read() as session:
            row = session.get(ServerSetting, TICKET_KEY_SETTING)
            assert row is not None and row.value.startswith("enc:v1:")
        key = load_ticket_key(db, master)
        assert len(key) == 32 and key != first
        with pytest.raises(MasterKeyError):
            load_ticket_key(db, None)
    finally:  # the row is kept between tests (conftest): leave it as it was
        with db.write() as session:
            session.execute(delete(ServerSetting).where(ServerSetting.name == TICKET_KEY_SETTING))
            session.add(ServerSetting(name=TICKET_KEY_SETTING, value=kept))


def test_the_authorization_endpoint_is_limited_per_address(
    peer_client: Callable[..., tuple[TestClient, CentraliApp]],
) -> None:
    client, _app = peer_client(authorize_per_ip=3)
    flow = Flow(client)

    def authorize_from(ip: str) -> httpx.Response:
        client.headers[PEER_HEADER] = ip
        return flow.authorize()

    for ip in ("2001:db8:5:5::1", "2001:db8:5:5::2", "2001:db8:5:5:ffff::3"):  # one /64
        assert authorize_from(ip).status_code == 200
    refused = authorize_from("2001:db8:5:5::9")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert "Too many sign-in requests" in refused.text
    client.headers[PEER_HEADER] = "2001:db8:5:5::9"
    r = client.post("/oidc/authorize", data=flow.params(), follow_redirects=False)
    assert r.status_code == 429  # the same budget, whichever method
    assert authorize_from("2001:db8:5:6::1").status_code == 200  # another /64
    assert authorize_from("192.0.2.1").status_code == 200


# --- workspaces ---------------------------------------------------------------------------------


@pytest.fixture
def two_workspaces(factory: Factory, db: Database, admin: str) -> str:
    factory.workspace("beta")
    add_member(db, email=admin, workspace_slug="beta", groups=["developers"])
    return admin


def test_a_user_of_several_workspaces_chooses_one(
    client: TestClient, flow: Flow, two_workspaces: str
) -> None:
    chooser = flow.login(flow.authorize(), two_workspaces)
    assert chooser.status_code == 200
    assert 'value="acme-corp"' in chooser.text
    assert 'value="beta"' in chooser.text
    data = {**hidden_fields(chooser.text), "workspace": "beta"}
    answer = client.post("/oidc/select-workspace", data=data, follow_redirects=False)
    tokens = flow.exchange(flow.code_of(answer)).json()
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["workspace"] == "beta"
    assert access["groups"] == ["developers"]

    bad = client.post(
        "/oidc/select-workspace",
        data={**hidden_fields(chooser.text), "workspace": "gamma"},
        follow_redirects=False,
    )
    assert bad.status_code == 400
    assert "location" not in bad.headers


def test_the_workspace_parameter_picks_one(flow: Flow, two_workspaces: str) -> None:
    tokens = flow.tokens(two_workspaces, workspace="beta")
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["workspace"] == "beta"


def test_a_workspace_the_user_is_not_in_is_access_denied(
    flow: Flow, factory: Factory, admin: str
) -> None:
    factory.workspace("other")
    answer = flow.login(flow.authorize(workspace="other"), admin)
    assert_redirected_error(answer, flow, "access_denied")


def test_a_signed_in_user_of_several_workspaces_sees_the_chooser(
    client: TestClient, flow: Flow, two_workspaces: str
) -> None:
    flow.login(flow.authorize(workspace="beta"), two_workspaces)
    again = Flow(client)
    assert again.authorize().status_code == 200  # the chooser, no password asked
    assert_redirected_error(again.authorize(prompt="none"), again, "interaction_required")


# --- the token endpoint: codes --------------------------------------------------------------


def test_wrong_pkce_verifier_is_invalid_grant(flow: Flow, admin: str) -> None:
    code = flow.sign_in(admin)
    other_verifier, _ = pkce_pair()
    assert_invalid_grant(flow.exchange(code, code_verifier=other_verifier))
    assert_invalid_grant(flow.exchange(code, code_verifier="short"))
    assert_invalid_grant(flow.exchange(code, code_verifier=flow.challenge))


def test_missing_verifier_is_invalid_request(flow: Flow, admin: str) -> None:
    r = flow.exchange(flow.sign_in(admin), code_verifier=None)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_redirect_uri_must_repeat_the_authorization_requests(
    client: TestClient, flow: Flow, admin: str, db: Database
) -> None:
    code = flow.sign_in(admin)
    assert_invalid_grant(flow.exchange(code, redirect_uri=f"{ISSUER}/console/other"))
    r = flow.exchange(code, redirect_uri=None)
    assert r.json()["error"] == "invalid_request"


def test_reused_code_is_refused_and_revokes_what_it_issued(
    client: TestClient, flow: Flow, admin: str
) -> None:
    code = flow.sign_in(admin)
    first = flow.exchange(code)
    assert first.status_code == 200
    tokens = first.json()
    assert_invalid_grant(flow.exchange(code))
    # RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    assert_invalid_grant(flow.refresh(tokens["refresh_token"]))
    r = client.get(ACCOUNTS, headers=bearer(tokens["access_token"]))
    assert r.status_code == 401
    assert r.json()["error"] == "token_revoked"


def test_expired_code_is_invalid_grant(flow: Flow, admin: str, db: Database) -> None:
    code = flow.sign_in(admin)
    with db.write() as session:
        session.execute(
            update(AuthorizationCode).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert_invalid_grant(flow.exchange(code))


def test_code_lives_sixty_seconds(flow: Flow, admin: str, db: Database) -> None:
    before = datetime.now(UTC)
    flow.sign_in(admin)
    with db.read() as session:
        row = session.query(AuthorizationCode).one()
        assert 59 <= (row.expires_at - before).total_seconds() <= 62
        assert len(row.code_hash) == 64  # only the digest is stored


def test_code_of_another_client_is_invalid_grant(
    client: TestClient, flow: Flow, admin: str, db: Database
) -> None:
    register_public_client(db, client_id="tool", redirect_uris=["http://127.0.0.1:1/cb"])
    code = flow.sign_in(admin)
    assert_invalid_grant(flow.exchange(code, client_id="tool"))
    assert flow.exchange(code).status_code == 200  # the failed attempt did not consume it


@pytest.mark.parametrize("code", ["nonsense", "x" * 400, "é"], ids=["unknown", "long", "non-ascii"])
def test_unknown_code_is_invalid_grant(flow: Flow, code: str) -> None:
    assert_invalid_grant(flow.exchange(code))


def test_unknown_public_client_is_invalid_client(flow: Flow, admin: str) -> None:
    code = flow.sign_in(admin)
    r = flow.exchange(code, client_id="nope")
    assert r.status_code == 401
    assert r.json() == {
        "error": "invalid_client",
        "error_description": "Invalid client credentials",
    }


def test_public_client_cannot_use_client_credentials(client: TestClient) -> None:
    r = client.post("/oidc/token", data={"grant_type": "client_credentials", "client_id": CONSOLE})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


def test_service_accounts_keep_their_behaviour(
    client: TestClient, factory: Factory, flow: Flow, admin: str
) -> None:
    account = factory.service_account(factory.admin())
    code = flow.sign_in(admin)
    # A confidential client asking for the user grants: authenticated, then refused.
    r = flow.exchange(code, client_id=account["clientId"], client_secret=account["clientSecret"])
    assert r.status_code == 400
    assert r.json()["error"] == "unauthorized_client"
    r = flow.exchange(code, client_id=account["clientId"], client_secret="sk_wrong")
    assert r.status_code == 401
    # Its id without a secret is not a public client.
    r = flow.exchange(code, client_id=account["clientId"])
    assert r.status_code == 401
    # client_credentials with an id and no secret stays 401 invalid_client.
    r = client.post(
        "/oidc/token",
        data={"grant_type": "client_credentials", "client_id": account["clientId"]},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert factory.sa_token(account)


def test_an_id_token_is_not_an_access_token(client: TestClient, flow: Flow, admin: str) -> None:
    tokens = flow.tokens(admin)
    assert client.get(ACCOUNTS, headers=bearer(tokens["id_token"])).status_code == 401
    r = client.get("/oidc/userinfo", headers=bearer(tokens["id_token"]))
    assert r.status_code == 401


# --- refresh tokens ---------------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token(client: TestClient, flow: Flow, admin: str) -> None:
    first = flow.tokens(admin)
    r = flow.refresh(first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    id_claims = claims_of(client, second["id_token"], audience=CONSOLE)
    assert "nonce" not in id_claims
    assert client.get(ACCOUNTS, headers=bearer(second["access_token"])).status_code == 200
    third = flow.refresh(second["refresh_token"])
    assert third.status_code == 200


def test_refresh_token_reuse_revokes_the_whole_chain(
    client: TestClient, flow: Flow, admin: str
) -> None:
    first = flow.tokens(admin)
    second = flow.refresh(first["refresh_token"]).json()
    third = flow.refresh(second["refresh_token"]).json()
    assert_invalid_grant(flow.refresh(first["refresh_token"]))  # a replay of an old token
    assert_invalid_grant(flow.refresh(third["refresh_token"]))  # the newest one died too
    for tokens in (first, second, third):
        r = client.get(ACCOUNTS, headers=bearer(tokens["access_token"]))
        assert r.status_code == 401
        assert r.json()["error"] == "token_revoked"


def test_refresh_with_another_client_or_scope(flow: Flow, admin: str, db: Database) -> None:
    register_public_client(db, client_id="tool", redirect_uris=["http://127.0.0.1:1/cb"])
    tokens = flow.tokens(admin)
    assert_invalid_grant(flow.refresh(tokens["refresh_token"], client_id="tool"))
    r = flow.refresh(tokens["refresh_token"], scope="openid email")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"
    assert flow.refresh(tokens["refresh_token"], scope="openid").status_code == 200


def test_refresh_after_leaving_the_workspace_is_refused(
    flow: Flow, admin: str, db: Database
) -> None:
    from centrali.store.tables import Membership

    tokens = flow.tokens(admin)
    with db.write() as session:
        session.query(Membership).delete()
    assert_invalid_grant(flow.refresh(tokens["refresh_token"]))


def test_a_new_password_revokes_refresh_tokens_and_sign_ins(
    client: TestClient, flow: Flow, admin: str, db: Database
) -> None:
    tokens = flow.tokens(admin)
    set_password(db, email=admin, password="another long password")
    assert_invalid_grant(flow.refresh(tokens["refresh_token"]))
    assert Flow(client).authorize().status_code == 200  # the form again


# --- userinfo ---------------------------------------------------------------------------------


def test_userinfo(client: TestClient, flow: Flow, admin: str, factory: Factory) -> None:
    tokens = flow.tokens(admin)
    r = client.get("/oidc/userinfo", headers=bearer(tokens["access_token"]))
    assert r.status_code == 200, r.text
    sub = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sub"]
    assert r.json() == {"sub": sub, "email": admin, "workspace": "acme-corp"}
    assert client.post("/oidc/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    # The CLI's user tokens work too.
    assert client.get("/oidc/userinfo", headers=bearer(factory.admin())).status_code == 200


def test_userinfo_refusals(client: TestClient, factory: Factory) -> None:
    factory.workspace("acme-corp")
    r = client.get("/oidc/userinfo")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="centrali"'
    r = client.get("/oidc/userinfo", headers=bearer("not.a.token"))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    account = factory.service_account(factory.admin())
    r = client.get("/oidc/userinfo", headers=bearer(factory.sa_token(account)))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_token"
    expired = factory.user_token(now=time.time() - 100_000)
    r = client.get("/oidc/userinfo", headers=bearer(expired))
    assert r.status_code == 401
    assert "expired" in r.json()["error_description"]


def test_userinfo_is_in_the_openapi_document(client: TestClient) -> None:
    """A JSON API, unlike the sign-in pages around it: both methods, the claims it answers,
    and its RFC 6750 refusals with their challenge."""
    document = client.get("/openapi.json").json()
    path = document["paths"]["/oidc/userinfo"]
    assert set(path) == {"get", "post"}
    assert {path["get"]["operationId"], path["post"]["operationId"]} == {
        "userinfo",
        "userinfo_post",
    }
    for operation in path.values():
        claims = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert claims["required"] == ["sub", "email", "workspace"]
        for code in ("400", "401", "403"):
            refusal = operation["responses"][code]
            assert "WWW-Authenticate" in refusal["headers"], code
            schema = refusal["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/OAuthError"}
    form = path["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert form["schema"]["properties"] == {"access_token": {"type": "string"}}
    assert "requestBody" not in path["get"]
    assert "OAuthError" in document["components"]["schemas"]
    # the sign-in pages around it stay out
    assert "/oidc/authorize" not in document["paths"]
    assert "/oidc/logout" not in document["paths"]


# --- logout ---------------------------------------------------------------------------------------


def test_logout_with_id_token_hint_ends_the_sign_in_and_the_refresh_chain(
    client: TestClient, flow: Flow, admin: str
) -> None:
    tokens = flow.tokens(admin)
    after = f"{ISSUER}/console/signed-out"
    r = client.get(
        "/oidc/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": after,
            "state": "s1",
            "client_id": CONSOLE,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"{after}?state=s1"
    assert "centrali_session=" in r.headers["set-cookie"]
    assert_invalid_grant(flow.refresh(tokens["refresh_token"]))
    assert flow.authorize().status_code == 200  # the form again
    assert_redirected_error(flow.authorize(prompt="none"), flow, "login_required")


def test_logout_refuses_an_unregistered_post_logout_redirect_uri(
    client: TestClient, flow: Flow, admin: str
) -> None:
    tokens = flow.tokens(admin)
    for params in (
        {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example"},
        {"client_id": CONSOLE, "post_logout_redirect_uri": CALLBACK},
        {"post_logout_redirect_uri": f"{ISSUER}/console/signed-out"},  # no client named
        {"id_token_hint": "not-a-token"},
        {"id_token_hint": tokens["access_token"]},  # an access token is not an ID token
        {"id_token_hint": tokens["id_token"], "client_id": "tool"},
    ):
        r = client.get("/oidc/logout", params=params, follow_redirects=False)
        assert_error_page(r)
    assert Flow(client).authorize().status_code == 303  # still signed in


def test_logout_without_a_hint_asks_first(client: TestClient, flow: Flow, admin: str) -> None:
    flow.sign_in(admin)
    confirm = client.get("/oidc/logout", follow_redirects=False)
    assert confirm.status_code == 200
    assert Flow(client).authorize().status_code == 303  # not signed out by a mere GET
    forged = client.post("/oidc/logout", data={"csrf_token": "x" * 43}, follow_redirects=False)
    assert forged.status_code == 200  # asked again
    assert Flow(client).authorize().status_code == 303
    done = client.post("/oidc/logout", data=hidden_fields(confirm.text), follow_redirects=False)
    assert done.status_code == 200
    assert "Signed out" in done.text
    assert Flow(client).authorize().status_code == 200


def test_logout_when_not_signed_in_goes_to_the_registered_uri(client: TestClient) -> None:
    after = f"{ISSUER}/console/signed-out"
    r = client.get(
        "/oidc/logout",
        params={"client_id": CONSOLE, "post_logout_redirect_uri": after},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == after


# --- discovery and registered clients -----------------------------------------------------------


def test_discovery_names_the_user_endpoints(client: TestClient) -> None:
    doc = client.get("/.well-known/openid-configuration").json()
    assert doc["authorization_endpoint"] == f"{ISSUER}/oidc/authorize"
    assert doc["userinfo_endpoint"] == f"{ISSUER}/oidc/userinfo"
    assert doc["end_session_endpoint"] == f"{ISSUER}/oidc/logout"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        doc["grant_types_supported"]
    )
    assert "none" in doc["token_endpoint_auth_methods_supported"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["subject_types_supported"] == ["public"]
    for path in ("authorization_endpoint", "userinfo_endpoint", "end_session_endpoint"):
        assert client.get(doc[path].removeprefix(ISSUER)).status_code != 404


def test_a_registered_public_client_signs_in_with_its_own_redirect_uri(
    client: TestClient, db: Database, admin: str
) -> None:
    uri = "http://127.0.0.1:8765/callback"
    register_public_client(db, client_id="cli-tool", redirect_uris=[uri])
    tool = Flow(client, client_id="cli-tool", redirect_uri=uri)
    tokens = tool.tokens(admin)
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["client_id"] == "cli-tool"
    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["aud"] == "cli-tool"
    # It may not use the console's redirect URI.
    assert_error_page(Flow(client, client_id="cli-tool").authorize())


# --- races ------------------------------------------------------------------------------------


def test_concurrent_uses_of_one_refresh_token_leave_no_live_token(
    client: TestClient, flow: Flow, admin: str
) -> None:
    """Two refreshes with the same token at once: at most one gets tokens, and whatever it got
    dies with the chain (the second is a replay)."""
    from concurrent.futures import ThreadPoolExecutor

    first = flow.tokens(admin)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: flow.refresh(first["refresh_token"]), range(4)))
    winners = [r.json() for r in answers if r.status_code == 200]
    assert len(winners) <= 1
    assert all(r.status_code in (200, 400) for r in answers)
    for won in winners:
        assert_invalid_grant(flow.refresh(won["refresh_token"]))
        r = client.get(ACCOUNTS, headers=bearer(won["access_token"]))
        assert r.status_code == 401


def test_concurrent_redemptions_of_one_code_leave_no_live_token(
    client: TestClient, flow: Flow, admin: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    code = flow.sign_in(admin)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: flow.exchange(code), range(4)))
    winners = [r.json() for r in answers if r.status_code == 200]
    assert len(winners) <= 1
    for won in winners:
        assert_invalid_grant(flow.refresh(won["refresh_token"]))


# --- regressions from review ------------------------------------------------------------------


def test_a_narrowed_refresh_keeps_the_chain_scope(flow: Flow, admin: str) -> None:
    """RFC 6749 §6: the new refresh token has the old one's scope, whatever the access
    token was narrowed to."""
    tokens = flow.tokens(admin, scope="openid email")
    narrowed = flow.refresh(tokens["refresh_token"], scope="openid")
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "openid"
    wide = flow.refresh(narrowed.json()["refresh_token"], scope="openid email")
    assert wide.status_code == 200, wide.text
    assert wide.json()["scope"] == "openid email"


def test_another_users_id_token_hint_does_not_sign_this_browser_out(
    client: TestClient, flow: Flow, admin: str, db: Database, factory: Factory
) -> None:
    """A foreign page holding its own user's ID token cannot end the victim's sign-in, nor
    drop the victim's session cookie."""
    create_user(db, email="mallory@acme.test", workspace_slug="acme-corp", password=PASSWORD)
    with TestClient(client.app, base_url=ISSUER) as other:
        mallory = Flow(other).tokens("mallory@acme.test")
    flow.sign_in(admin)
    r = client.get(
        "/oidc/logout", params={"id_token_hint": mallory["id_token"]}, follow_redirects=False
    )
    assert r.status_code == 200, r.text
    assert "centrali_session=" not in r.headers.get("set-cookie", "")
    assert Flow(client).authorize().status_code == 303  # still signed in


def test_logout_finds_the_chain_after_old_sessions_are_purged(
    client: TestClient, flow: Flow, admin: str, db: Database
) -> None:
    """A later sign-in purges expired sessions, but not those a live refresh chain still
    hangs from: logout must still revoke it."""
    from centrali.store.tables import BrowserSession

    tokens = flow.tokens(admin)
    with db.write() as session:  # the sign-in's session is past its end, its chain is not
        session.execute(
            update(BrowserSession).values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    create_user(db, email="bob@acme.test", workspace_slug="acme-corp", password=PASSWORD)
    with TestClient(client.app, base_url=ISSUER) as other:
        Flow(other).tokens("bob@acme.test")  # a sign-in: purges expired sessions
    r = client.get(
        "/oidc/logout", params={"id_token_hint": tokens["id_token"]}, follow_redirects=False
    )
    assert r.status_code == 200, r.text
    assert_invalid_grant(flow.refresh(tokens["refresh_token"]))


def test_a_public_client_revokes_its_refresh_token_chain(
    client: TestClient, flow: Flow, admin: str
) -> None:
    """RFC 7009: a server that issues refresh tokens revokes them; a public client names
    itself by client_id alone. The chain dies, and the access tokens it issued with it."""
    tokens = flow.tokens(admin)
    r = client.post("/oidc/revoke", data={"token": tokens["refresh_token"], "client_id": CONSOLE})
    assert r.status_code == 200, r.text
    assert_invalid_grant(flow.refresh(tokens["refresh_token"]))
    r = client.get(ACCOUNTS, headers=bearer(tokens["access_token"]))
    assert r.status_code == 401
    assert r.json()["error"] == "token_revoked"
    # Again, and an unknown refresh token: nothing to do, 200 (§2.2).
    for token in (tokens["refresh_token"], "rt_" + "x" * 43):
        r = client.post("/oidc/revoke", data={"token": token, "client_id": CONSOLE})
        assert r.status_code == 200, r.text


def test_refresh_tokens_are_revoked_only_by_their_own_client(
    client: TestClient, flow: Flow, admin: str, db: Database, factory: Factory
) -> None:
    register_public_client(db, client_id="tool", redirect_uris=["http://127.0.0.1:1/cb"])
    tokens = flow.tokens(admin)
    r = client.post("/oidc/revoke", data={"token": tokens["refresh_token"], "client_id": "tool"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "unauthorized_client"
    account = factory.service_account(factory.admin())
    r = client.post(
        "/oidc/revoke",
        data={"token": tokens["refresh_token"]},
        auth=(account["clientId"], account["clientSecret"]),
    )
    assert r.status_code == 400, r.text
    r = client.post("/oidc/revoke", data={"token": tokens["refresh_token"], "client_id": "nobody"})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert flow.refresh(tokens["refresh_token"]).status_code == 200  # still alive

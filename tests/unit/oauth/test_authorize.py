"""centrali.oauth.authorize: the authorization request's checks and their order, the answers,
redirect-URI registration rules, the workspace choice and the login ticket."""

from __future__ import annotations

import warnings
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from centrali.oauth.authorize import (
    AuthorizationRequest,
    AuthorizePageError,
    AuthorizeRedirectError,
    check_redirect_uri,
    choose_workspace,
    csrf_matches,
    needs_fresh_login,
    read_login_ticket,
    response_url,
    sign_login_ticket,
    validate_authorization_request,
)
from centrali.oauth.keys import SigningKey
from centrali.oauth.tokens import InvalidTokenError, TokenExpiredError
from centrali.oauth.user_ports import PublicClient
from tests.unit.oauth.fakes import ISSUER, NOW

REDIRECT = "https://app.example/cb"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
CLIENT = PublicClient("app", (REDIRECT, "https://app.example/cb2?x=1"))


class Clients:
    def __init__(self, *clients: PublicClient) -> None:
        self.clients = {c.client_id: c for c in clients}
        self.lookups: list[str] = []

    def find_public_client(self, client_id: str) -> PublicClient | None:
        self.lookups.append(client_id)
        return self.clients.get(client_id)


def params(**overrides: str | None) -> list[tuple[str, str]]:
    base: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": "st",
        "nonce": "nn",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    base.update(overrides)
    return [(k, v) for k, v in base.items() if v is not None]


def validate(pairs: list[tuple[str, str]]) -> AuthorizationRequest:
    return validate_authorization_request(pairs, Clients(CLIENT))


def test_a_valid_request() -> None:
    request = validate(params(scope="openid email openid", prompt="login", max_age="30"))
    assert request == AuthorizationRequest(
        client_id="app",
        redirect_uri=REDIRECT,
        scope="openid email",
        state="st",
        code_challenge=CHALLENGE,
        nonce="nn",
        prompt=frozenset({"login"}),
        max_age=30,
    )


@pytest.mark.parametrize(
    "pairs",
    [
        params(client_id=None),
        params(client_id="other"),
        params(client_id="bad id"),
        params(client_id="app") + [("client_id", "app")],
        params(redirect_uri=None),
        params(redirect_uri="https://evil.example/cb"),
        params(redirect_uri=REDIRECT + "/"),
        params() + [("redirect_uri", "https://evil.example/cb")],
        params(state=None),
        params(state="x" * 1025),
        params() + [("state", "again")],
        # A bad client beats everything else, even a bad response_type.
        params(client_id="other", response_type="token"),
    ],
    ids=[
        "no-client",
        "unknown-client",
        "malformed-client",
        "repeated-client",
        "no-redirect",
        "foreign-redirect",
        "redirect-suffix",
        "repeated-redirect",
        "no-state",
        "long-state",
        "repeated-state",
        "client-first",
    ],
)
def test_untrusted_targets_are_page_errors(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(AuthorizePageError):
        validate(pairs)


def test_blank_parameters_count_as_missing() -> None:
    with pytest.raises(AuthorizePageError):
        validate(params(state=""))


@pytest.mark.parametrize(
    ("pairs", "error"),
    [
        (params(response_type=None), "invalid_request"),
        (params(response_type="token"), "unsupported_response_type"),
        (params(request="x"), "request_not_supported"),
        (params(request_uri="https://x"), "request_uri_not_supported"),
        (params(response_mode="form_post"), "invalid_request"),
        (params(scope=None), "invalid_scope"),
        (params(scope="email"), "invalid_scope"),
        (params(scope="openid admin"), "invalid_scope"),
        (params(code_challenge=None), "invalid_request"),
        (params(code_challenge_method=None), "invalid_request"),
        (params(code_challenge_method="plain"), "invalid_request"),
        (params(code_challenge="x" * 43 + "="), "invalid_request"),
        (params(nonce="n" * 513), "invalid_request"),
        (params(prompt="none login"), "invalid_request"),
        (params(prompt="unknown"), "invalid_request"),
        (params(workspace="Bad_Slug"), "invalid_request"),
        (params(max_age="-1"), "invalid_request"),
        (params(max_age="1e3"), "invalid_request"),
        (params() + [("scope", "openid")], "invalid_request"),
    ],
    ids=[
        "no-response-type",
        "token",
        "request",
        "request-uri",
        "form-post",
        "no-scope",
        "no-openid",
        "unknown-scope",
        "no-challenge",
        "no-method",
        "plain",
        "bad-challenge",
        "long-nonce",
        "prompt-none-plus",
        "prompt-unknown",
        "bad-workspace",
        "negative-max-age",
        "float-max-age",
        "repeated-scope",
    ],
)
def test_other_errors_are_redirected_with_state(pairs: list[tuple[str, str]], error: str) -> None:
    with pytest.raises(AuthorizeRedirectError) as info:
        validate(pairs)
    assert info.value.error == error
    query = parse_qs(urlsplit(info.value.url(ISSUER)).query)
    assert query["error"] == [error]
    assert query["state"] == ["st"]
    assert query["iss"] == [ISSUER]
    assert query["error_description"]


def test_the_client_is_looked_up_only_for_a_plausible_id() -> None:
    clients = Clients(CLIENT)
    with pytest.raises(AuthorizePageError):
        validate_authorization_request(params(client_id="a\x00b"), clients)
    assert clients.lookups == []


def test_optional_parameters_are_kept() -> None:
    request = validate(params(workspace="beta", login_hint="ada@x.test", nonce=None))
    assert request.workspace == "beta"
    assert request.login_hint == "ada@x.test"
    assert request.nonce is None
    assert validate(params(login_hint="x" * 400)).login_hint is None


def test_response_urls() -> None:
    request = validate(params(redirect_uri="https://app.example/cb2?x=1"))
    url = request.code_url("c0de", ISSUER)
    assert url.startswith("https://app.example/cb2?x=1&code=c0de&state=st&iss=")
    assert response_url(REDIRECT, {"a": "1", "b": None}) == f"{REDIRECT}?a=1"


def test_needs_fresh_login() -> None:
    request = validate(params())
    assert not needs_fresh_login(request, NOW - 10_000, NOW)
    assert needs_fresh_login(validate(params(prompt="login")), NOW, NOW)
    assert needs_fresh_login(validate(params(max_age="60")), NOW - 61, NOW)
    assert not needs_fresh_login(validate(params(max_age="60")), NOW - 59, NOW)


# --- the workspace choice -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "member_of", "expected"),
    [
        ({}, ["a"], "a"),
        ({}, ["a", "b"], None),
        ({"workspace": "b"}, ["a", "b"], "b"),
        ({"prompt": "select_account"}, ["a", "b"], None),
        ({"prompt": "select_account", "workspace": "b"}, ["a", "b"], None),
        ({"prompt": "select_account"}, ["a"], "a"),
    ],
    ids=["one", "several", "named", "select", "select-beats-named", "select-one"],
)
def test_choose_workspace(
    extra: dict[str, str], member_of: list[str], expected: str | None
) -> None:
    assert choose_workspace(validate(params(**extra)), member_of) == expected


@pytest.mark.parametrize(
    ("extra", "member_of", "error"),
    [
        ({}, [], "access_denied"),
        ({"workspace": "c"}, ["a", "b"], "access_denied"),
        ({"prompt": "none"}, ["a", "b"], "interaction_required"),
    ],
    ids=["none", "not-a-member", "prompt-none"],
)
def test_choose_workspace_refusals(extra: dict[str, str], member_of: list[str], error: str) -> None:
    with pytest.raises(AuthorizeRedirectError) as info:
        choose_workspace(validate(params(**extra)), member_of)
    assert info.value.error == error


# --- redirect URIs at registration ------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "https://app.example:8443/cb?tenant=1",
        "http://127.0.0.1:9999/cb",
        "http://localhost/cb",
        "http://[::1]:8080/cb",
        "http://127.1.2.3/cb",
        "com.example.app:/oauth2redirect",
    ],
    ids=["https", "https-port-query", "loopback-v4", "localhost", "loopback-v6", "127/8", "native"],
)
def test_acceptable_redirect_uris(uri: str) -> None:
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example/cb",
        "https://app.example/cb#x",
        "https://user:pw@app.example/cb",
        "/relative/cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "myapp:/cb",
        "https://app.example/c b",
        "https:///cb",
        "https://app.example/" + "x" * 2100,
        "https://app.example/\u00e9",
    ],
    ids=[
        "http-remote",
        "fragment",
        "credentials",
        "relative",
        "javascript",
        "data",
        "scheme-without-dot",
        "space",
        "no-host",
        "too-long",
        "non-ascii",
    ],
)
def test_unacceptable_redirect_uris(uri: str) -> None:
    with pytest.raises(ValueError):
        check_redirect_uri(uri)


# --- the login ticket -------------------------------------------------------------------------


def test_csrf_matches() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd")
    assert not csrf_matches(None, "abc")
    assert not csrf_matches("abc", None)
    assert not csrf_matches("", "")


KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def test_ticket_round_trip() -> None:
    request = validate(params(workspace="beta", prompt="login", max_age="5", login_hint="a@b.c"))
    ticket = sign_login_ticket(request, csrf="tok", key=KEY, issuer=ISSUER, now=NOW)
    header = jwt.get_unverified_header(ticket)
    assert header == {"alg": "HS256", "typ": "centrali-login+jwt"}  # no kid: no signing key
    back = read_login_ticket(ticket, csrf="tok", key=KEY, issuer=ISSUER, now=NOW + 599)
    assert back == request


def _read(ticket: str, **overrides: Any) -> AuthorizationRequest:
    kwargs: dict[str, Any] = {"csrf": "tok", "key": KEY, "issuer": ISSUER, "now": NOW}
    kwargs.update(overrides)
    return read_login_ticket(ticket, **kwargs)


def test_ticket_refusals() -> None:
    request = validate(params())
    ticket = sign_login_ticket(request, csrf="tok", key=KEY, issuer=ISSUER, now=NOW)
    with pytest.raises(InvalidTokenError):
        _read(ticket, csrf="other")
    with pytest.raises(TokenExpiredError):
        _read(ticket, now=NOW + 600)
    with pytest.raises(InvalidTokenError):
        _read(ticket, issuer="https://other.example")
    with pytest.raises(InvalidTokenError):
        _read("garbage")
    with pytest.raises(InvalidTokenError):
        _read("\ud800" + ticket)
    with pytest.raises(InvalidTokenError):
        _read(ticket[:-3] + "AAA")
    with pytest.raises(InvalidTokenError):
        _read(ticket + "A" * 20_000)
    with pytest.raises(InvalidTokenError):  # another store's key
        _read(ticket, key=OTHER_KEY)


def _forge(key: bytes, claims: dict[str, Any], typ: str = "centrali-login+jwt") -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers={"typ": typ})


def test_ticket_shape_refusals(signing_key: SigningKey) -> None:
    from centrali.oauth.authorize import csrf_digest

    base = {
        "iss": ISSUER,
        "aud": f"{ISSUER}/oidc/login",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "csrf": csrf_digest("tok"),
        "req": validate(params()).to_claims(),
    }
    with pytest.raises(InvalidTokenError):
        _read(_forge(KEY, base, typ="JWT"))  # not a ticket
    with pytest.raises(InvalidTokenError):
        _read(_forge(KEY, {**base, "req": "x"}))
    with pytest.raises(InvalidTokenError):
        _read(_forge(KEY, {**base, "req": {"client_id": "app"}}))
    with pytest.raises(InvalidTokenError):
        _read(_forge(KEY, {k: v for k, v in base.items() if k != "csrf"}))
    assert _read(_forge(KEY, base)).client_id == "app"
    with pytest.raises(InvalidTokenError):
        _read(_forge(KEY, {k: v for k, v in base.items() if k != "exp"}))
    with warnings.catch_warnings():  # PyJWT finds 32 bytes short for HS384: that is the point
        warnings.simplefilter("ignore")
        hs384 = jwt.encode(base, KEY, algorithm="HS384", headers={"typ": "centrali-login+jwt"})
    with pytest.raises(InvalidTokenError):  # the right key, another algorithm
        _read(hs384)
    # What the access-token key signs is no ticket, whatever it says.
    signed = jwt.encode(
        base,
        signing_key.private_key,
        algorithm=signing_key.alg,
        headers={"kid": signing_key.kid, "typ": "centrali-login+jwt"},
    )
    with pytest.raises(InvalidTokenError):
        _read(signed)
    unsigned = jwt.encode(base, None, algorithm="none", headers={"typ": "centrali-login+jwt"})
    with pytest.raises(InvalidTokenError):
        _read(unsigned)

"""centrali.oauth.token_endpoint: form parsing and the order of the checks (RFC 6749 §3.2, §5)."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest

from centrali.oauth.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuthError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from centrali.oauth.grants import IssuerConfig, TokenResponse
from centrali.oauth.keys import KeySet
from centrali.oauth.token_endpoint import (
    TokenRequest,
    complete_token_request,
    parse_form,
    prepare_token_request,
)
from centrali.oauth.tokens import verify_access_token
from tests.unit.oauth.fakes import (
    AUDIENCE,
    CLIENT_ID,
    ISSUER,
    NOW,
    SECRET,
    FakeClientStore,
    FakeClock,
    make_client,
)

FORM = "application/x-www-form-urlencoded"
TTL = 25200


# --- parse_form -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        FORM,
        f"{FORM}; charset=UTF-8",
        f"{FORM};charset=utf-8",
        "Application/X-WWW-Form-URLEncoded",
        f"  {FORM}  ",
    ],
    ids=["plain", "charset", "charset-no-space", "mixed-case", "padded"],
)
def test_form_content_types_are_accepted(content_type: str) -> None:
    assert parse_form(content_type, b"grant_type=client_credentials") == {
        "grant_type": "client_credentials"
    }


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "multipart/form-data; boundary=x",
        "text/plain",
        f"{FORM}x",
        "application/x-www-form",
    ],
    ids=["missing", "empty", "json", "multipart", "text", "suffixed", "truncated"],
)
def test_other_content_types_are_invalid_request(content_type: str | None) -> None:
    with pytest.raises(InvalidRequestError):
        parse_form(content_type, b"grant_type=client_credentials")


def test_json_body_is_invalid_request() -> None:
    with pytest.raises(InvalidRequestError):
        parse_form("application/json", b'{"grant_type": "client_credentials"}')


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"", {}, id="empty-body"),
        pytest.param(b"scope=openid+profile", {"scope": "openid profile"}, id="plus-is-space"),
        pytest.param(b"scope=openid%20profile", {"scope": "openid profile"}, id="pct-space"),
        pytest.param(b"client_secret=a%2Bb%26c%3Dd", {"client_secret": "a+b&c=d"}, id="reserved"),
        pytest.param(b"name=%C3%A9", {"name": "é"}, id="utf8-percent"),
        pytest.param("name=é".encode(), {"name": "é"}, id="utf8-raw"),
        pytest.param(b"a=1&b=2", {"a": "1", "b": "2"}, id="two"),
    ],
)
def test_form_values_are_decoded(body: bytes, expected: dict[str, str]) -> None:
    assert parse_form(FORM, body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"grant_type=client_credentials&scope=", {}, id="empty-value"),
        pytest.param(b"grant_type=client_credentials&scope", {}, id="no-equals"),
        pytest.param(b"grant_type=client_credentials&client_secret=&client_id=", {}, id="two"),
    ],
)
def test_blank_parameters_are_treated_as_omitted(body: bytes, expected: dict[str, str]) -> None:
    assert parse_form(FORM, body) == {"grant_type": "client_credentials", **expected}


@pytest.mark.parametrize(
    "body",
    [
        b"grant_type=client_credentials&grant_type=client_credentials",
        b"grant_type=client_credentials&scope=openid&scope=profile",
        b"grant_type=client_credentials&scope=&scope=openid",
        b"client_id=a&client_id=a",
    ],
    ids=["grant_type", "scope", "blank-then-value", "client_id"],
)
def test_repeated_parameter_is_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        parse_form(FORM, body)


@pytest.mark.parametrize(
    "body",
    [b"client_id=%FF", b"client_id=%C3%28", b"client_id=\xff\xfe", b"%E9=1"],
    ids=["pct-ff", "pct-bad-continuation", "raw-bytes", "bad-name"],
)
def test_non_utf8_body_is_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        parse_form(FORM, body)


def test_too_many_parameters_is_invalid_request() -> None:
    body = urlencode({f"p{i}": "x" for i in range(200)}).encode()
    with pytest.raises(InvalidRequestError):
        parse_form(FORM, body)


def test_a_full_request_with_a_few_extra_parameters_parses() -> None:
    params = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}
    params.update({f"extra{i}": "x" for i in range(10)})
    assert parse_form(FORM, urlencode(params).encode()) == params


# --- prepare_token_request, complete_token_request ---------------------------------------------


@pytest.fixture
def config(key_set: KeySet) -> IssuerConfig:
    return IssuerConfig(keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL)


def _handle(
    form: dict[str, str],
    config: IssuerConfig,
    store: FakeClientStore,
    authorization: str | None = None,
    clock: FakeClock | None = None,
) -> TokenResponse:
    return complete_token_request(
        prepare_token_request(TokenRequest(form=form, authorization=authorization)),
        clients=store,
        config=config,
        clock=clock or FakeClock(),
    )


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


GOOD = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}


def test_valid_post_request_returns_a_verifiable_token(
    config: IssuerConfig, key_set: KeySet
) -> None:
    store = FakeClientStore([make_client()])
    response = _handle(GOOD, config, store)
    assert response.body()["token_type"] == "Bearer"
    assert response.expires_in == TTL
    assert response.scope == "openid"
    verified = verify_access_token(
        response.access_token, keys=key_set, issuer=ISSUER, audience=AUDIENCE, now=NOW
    )
    assert (verified.subject, verified.issued_at) == (CLIENT_ID, int(NOW))


def test_valid_basic_request_returns_a_token(config: IssuerConfig) -> None:
    store = FakeClientStore([make_client()])
    response = _handle(
        {"grant_type": "client_credentials"}, config, store, _basic(CLIENT_ID, SECRET)
    )
    assert response.scope == "openid"
    assert store.lookups == [CLIENT_ID]


@pytest.mark.parametrize(
    ("form", "authorization", "error"),
    [
        pytest.param({}, None, InvalidRequestError, id="nothing"),
        pytest.param(
            {"client_id": CLIENT_ID, "client_secret": SECRET},
            None,
            InvalidRequestError,
            id="good-credentials",
        ),
        pytest.param({"client_id": CLIENT_ID}, None, InvalidRequestError, id="id-only"),
        pytest.param({}, "Basic %%%", InvalidRequestError, id="malformed-basic"),
        pytest.param(
            {"grant_type": "password", "username": "u", "password": "p"},
            None,
            UnsupportedGrantTypeError,
            id="password-no-client",
        ),
        pytest.param(
            {"grant_type": "password", "client_id": CLIENT_ID, "client_secret": "sk_wrong"},
            None,
            UnsupportedGrantTypeError,
            id="password-wrong-secret",
        ),
        pytest.param(
            {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"},
            _basic("ci_unknown", "sk_x"),
            UnsupportedGrantTypeError,
            id="device-code-unknown-client",
        ),
        pytest.param(
            {**GOOD, "grant_type": "CLIENT_CREDENTIALS"},
            None,
            UnsupportedGrantTypeError,
            id="grant-type-case",
        ),
    ],
)
def test_grant_type_is_checked_before_the_client_is_looked_up(
    config: IssuerConfig,
    form: dict[str, str],
    authorization: str | None,
    error: type[OAuthError],
) -> None:
    store = FakeClientStore([make_client()])
    with pytest.raises(error) as info:
        _handle(form, config, store, authorization)
    assert type(info.value) is error
    assert store.lookups == []


@pytest.mark.parametrize(
    ("form", "authorization"),
    [
        pytest.param({"grant_type": "client_credentials"}, None, id="no-client-auth"),
        pytest.param({**GOOD, "client_secret": "sk_wrong"}, None, id="wrong-secret"),
        pytest.param({**GOOD, "client_id": "ci_unknown"}, None, id="unknown-client"),
        pytest.param(
            {"grant_type": "client_credentials", "client_id": CLIENT_ID}, None, id="no-secret"
        ),
        pytest.param(
            {"grant_type": "client_credentials"}, _basic(CLIENT_ID, "sk_wrong"), id="basic-wrong"
        ),
    ],
)
def test_client_authentication_failures_are_invalid_client(
    config: IssuerConfig, form: dict[str, str], authorization: str | None
) -> None:
    with pytest.raises(InvalidClientError):
        _handle(form, config, FakeClientStore([make_client()]), authorization)


def test_inactive_client_is_invalid_client(config: IssuerConfig) -> None:
    with pytest.raises(InvalidClientError):
        _handle(GOOD, config, FakeClientStore([make_client(active=False)]))


def test_basic_and_body_secret_together_is_invalid_request(config: IssuerConfig) -> None:
    store = FakeClientStore([make_client()])
    with pytest.raises(InvalidRequestError):
        _handle(GOOD, config, store, _basic(CLIENT_ID, SECRET))
    assert store.lookups == []


def test_client_not_allowed_the_grant_is_unauthorized_client(config: IssuerConfig) -> None:
    store = FakeClientStore([make_client(grant_types=("authorization_code",))])
    with pytest.raises(UnauthorizedClientError):
        _handle(GOOD, config, store)


@pytest.mark.parametrize(
    ("client_grants", "extra"),
    [
        pytest.param(("authorization_code",), {}, id="grant-not-allowed"),
        pytest.param(("client_credentials",), {"scope": "admin"}, id="bad-scope"),
    ],
)
def test_client_authentication_comes_before_grant_and_scope_checks(
    config: IssuerConfig, client_grants: tuple[str, ...], extra: dict[str, str]
) -> None:
    store = FakeClientStore([make_client(grant_types=client_grants)])
    with pytest.raises(InvalidClientError):
        _handle({**GOOD, "client_secret": "sk_wrong", **extra}, config, store)


def test_grant_check_comes_before_scope_check(config: IssuerConfig) -> None:
    store = FakeClientStore([make_client(grant_types=("authorization_code",))])
    with pytest.raises(UnauthorizedClientError):
        _handle({**GOOD, "scope": "admin"}, config, store)


@pytest.mark.parametrize(
    "scope", ["admin", "openid admin", "profile"], ids=["unknown", "one-unknown", "not-allowed"]
)
def test_scope_not_allowed_for_the_client_is_invalid_scope(
    config: IssuerConfig, scope: str
) -> None:
    with pytest.raises(InvalidScopeError):
        _handle({**GOOD, "scope": scope}, config, FakeClientStore([make_client()]))


def test_omitted_scope_grants_the_clients_scope(config: IssuerConfig) -> None:
    store = FakeClientStore([make_client(scopes=("openid", "email"))])
    response = _handle(GOOD, config, store)
    assert response.scope == "openid email"


def test_clock_sleeps_until_tokens_valid_after(config: IssuerConfig) -> None:
    clock = FakeClock(1_700_000_000.4)
    store = FakeClientStore([make_client(tokens_valid_after=1_700_000_001)])
    _handle(GOOD, config, store, clock=clock)
    assert clock.sleeps == [pytest.approx(0.6)]


def test_clock_does_not_sleep_for_a_client_never_revoked(config: IssuerConfig) -> None:
    clock = FakeClock()
    _handle(GOOD, config, FakeClientStore([make_client()]), clock=clock)
    assert clock.sleeps == []

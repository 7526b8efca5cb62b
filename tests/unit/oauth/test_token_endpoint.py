"""centrali.oauth.token_endpoint: form parsing and the order of the checks (RFC 6749 §3.2, §5),
with the client authenticated by the client_auth pipeline as the HTTP layer does it:

prepare_token_request (grant_type) → ClientAuthenticator.authenticate (credentials, limits,
lookup, verification) → complete_token_request (grant allowed, scope, issue)."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from centrali.oauth.client_auth import (
    BASIC,
    INACTIVE_CLIENT,
    NO_CREDENTIALS,
    NONE,
    POST,
    UNKNOWN_CLIENT,
    WRONG_SECRET,
    Authenticated,
    ClientAuthenticator,
    ClientAuthRequest,
)
from centrali.oauth.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuthError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from centrali.oauth.grants import GRANTS, IssuerConfig, TokenResponse
from centrali.oauth.introspection import TokenStanding, token_is_live
from centrali.oauth.keys import KeySet, SigningKey
from centrali.oauth.token_endpoint import (
    TokenRequest,
    complete_token_request,
    complete_user_grant_request,
    needs_user_store,
    parse_form,
    prepare_token_request,
)
from centrali.oauth.tokens import verify_access_token
from centrali.oauth.user_ports import PublicClient, UserGrantContext
from tests.unit.oauth.fakes import (
    AUDIENCE,
    CLIENT_ID,
    IP,
    ISSUER,
    NOW,
    SECRET,
    SECRET_ID,
    FakeClientStore,
    FakeClock,
    FakePublicClients,
    RecordingLimiter,
    make_client,
    pyjwt_decode_at,
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


# --- prepare_token_request, the pipeline, complete_token_request ----------------------------

APP = PublicClient("app", ("https://app.example/cb",))


@pytest.fixture
def config(key_set: KeySet) -> IssuerConfig:
    return IssuerConfig(keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL)


def _handle(
    form: dict[str, str],
    config: IssuerConfig,
    store: FakeClientStore,
    authorization: str | None = None,
    clock: FakeClock | None = None,
    limiter: RecordingLimiter | None = None,
) -> TokenResponse:
    """The token endpoint as the HTTP layer runs it, for a confidential client."""
    clock = clock or FakeClock()
    prepared = prepare_token_request(TokenRequest(form=form, authorization=authorization))
    authenticator = ClientAuthenticator(
        clients=store, public_clients=FakePublicClients([APP]), limiter=limiter
    )
    request = ClientAuthRequest(
        form=prepared.form,
        authorization=authorization,
        ip=IP,
        allow_none=prepared.allows_public_client,
    )

    async def grant(authenticated: Authenticated) -> TokenResponse:
        return complete_token_request(prepared, authenticated, config=config, clock=clock)

    return asyncio.run(authenticator.authenticate(request, clock.now(), grant))


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


GOOD = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}


@pytest.mark.parametrize(
    ("grant_type", "public"),
    [
        pytest.param("client_credentials", False, id="client_credentials"),
        pytest.param("authorization_code", True, id="authorization_code"),
        pytest.param("refresh_token", True, id="refresh_token"),
    ],
)
def test_prepare_knows_the_grant_and_whether_a_public_client_may_use_it(
    grant_type: str, public: bool
) -> None:
    form = {"grant_type": grant_type, "client_id": "anyone"}
    prepared = prepare_token_request(TokenRequest(form=form, authorization=None))
    assert prepared.grant is GRANTS[grant_type]
    assert prepared.form == form
    assert prepared.allows_public_client is public


@pytest.mark.parametrize(
    ("authenticated", "needed"),
    [
        pytest.param(Authenticated(make_client(), POST, ("secret", SECRET_ID)), False, id="post"),
        pytest.param(Authenticated(make_client(), BASIC, ("secret", SECRET_ID)), False, id="basic"),
        pytest.param(Authenticated(APP, NONE), True, id="none"),
    ],
)
def test_only_a_public_clients_grant_needs_the_user_store(
    authenticated: Authenticated, needed: bool
) -> None:
    assert needs_user_store(authenticated) is needed


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
    assert store.lookups == [CLIENT_ID]


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
    limiter = RecordingLimiter()
    with pytest.raises(error) as info:
        _handle(form, config, store, authorization, limiter=limiter)
    assert type(info.value) is error
    assert store.lookups == []
    assert limiter.events == []


@pytest.mark.parametrize(
    ("form", "authorization", "reason"),
    [
        pytest.param(
            {"grant_type": "client_credentials"}, None, NO_CREDENTIALS, id="no-client-auth"
        ),
        pytest.param({**GOOD, "client_secret": "sk_wrong"}, None, WRONG_SECRET, id="wrong-secret"),
        pytest.param(
            {**GOOD, "client_id": "ci_unknown"}, None, UNKNOWN_CLIENT, id="unknown-client"
        ),
        pytest.param(
            {"grant_type": "client_credentials", "client_id": CLIENT_ID},
            None,
            NO_CREDENTIALS,
            id="no-secret",
        ),
        pytest.param(
            {"grant_type": "client_credentials"},
            _basic(CLIENT_ID, "sk_wrong"),
            WRONG_SECRET,
            id="basic-wrong",
        ),
        pytest.param(
            {"grant_type": "client_credentials", "client_id": "app"},
            None,
            NO_CREDENTIALS,
            id="public-client-naming-itself",
        ),
    ],
)
def test_client_authentication_failures_are_invalid_client(
    config: IssuerConfig, form: dict[str, str], authorization: str | None, reason: str
) -> None:
    with pytest.raises(InvalidClientError) as info:
        _handle(form, config, FakeClientStore([make_client()]), authorization)
    assert info.value.detail == reason


def test_inactive_client_is_invalid_client(config: IssuerConfig) -> None:
    with pytest.raises(InvalidClientError) as info:
        _handle(GOOD, config, FakeClientStore([make_client(active=False)]))
    assert info.value.detail == INACTIVE_CLIENT


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


@pytest.mark.parametrize(
    ("form", "error", "refunded"),
    [
        pytest.param(GOOD, None, False, id="issued"),
        pytest.param({**GOOD, "scope": "admin"}, InvalidScopeError, True, id="invalid-scope"),
        pytest.param(
            {**GOOD, "grant_type": "authorization_code", "code": "c"},
            UnauthorizedClientError,
            True,
            id="confidential-client-asks-for-a-user-grant",
        ),
        pytest.param(
            {**GOOD, "client_secret": "sk_wrong"}, InvalidClientError, False, id="wrong-secret"
        ),
    ],
)
def test_a_grant_that_fails_after_authentication_gives_the_issuance_token_back(
    config: IssuerConfig, form: dict[str, str], error: type[OAuthError] | None, refunded: bool
) -> None:
    limiter = RecordingLimiter()
    store = FakeClientStore([make_client()])
    if error is None:
        _handle(form, config, store, limiter=limiter)
    else:
        with pytest.raises(error):
            _handle(form, config, store, limiter=limiter)
    assert (("refund", True) in limiter.events) is refunded


def test_a_public_client_never_reaches_a_client_grant(config: IssuerConfig) -> None:
    prepared = prepare_token_request(
        TokenRequest(form={"grant_type": "client_credentials"}, authorization=None)
    )
    with pytest.raises(InvalidClientError):
        complete_token_request(prepared, Authenticated(APP, NONE), config=config, clock=FakeClock())


def test_a_user_grant_request_is_only_for_the_user_grants(config: IssuerConfig) -> None:
    prepared = prepare_token_request(TokenRequest(form=GOOD, authorization=None))
    users = UserGrantContext(store=None, access_ttl=900, refresh_ttl=3600)  # type: ignore[arg-type]
    with pytest.raises(UnauthorizedClientError):
        complete_user_grant_request(prepared, APP, config=config, clock=FakeClock(), users=users)


# --- re-activated in the second of a revoke ---------------------------------------------------


def test_reactivation_in_the_second_of_a_revoke_issues_at_once(
    config: IssuerConfig,
    key_set: KeySet,
    signing_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    second = int(NOW)
    # Issued at .1, revoked at .2 (the epoch moves on), refused at .3, re-activated and
    # asking again at .5: all in one second.
    before = _handle(GOOD, config, FakeClientStore([make_client()]), clock=FakeClock(NOW + 0.1))
    cutoff = second * 1000 + 200
    revoked = make_client(active=False, tokens_cutoff_ms=cutoff, tokens_epoch=1)
    with pytest.raises(InvalidClientError) as info:
        _handle(GOOD, config, FakeClientStore([revoked]), clock=FakeClock(NOW + 0.3))
    assert info.value.detail == INACTIVE_CLIENT
    now = NOW + 0.5
    clock = FakeClock(now)  # has no sleep(): the grant cannot wait
    after = _handle(GOOD, config, FakeClientStore([replace(revoked, active=True)]), clock=clock)
    assert clock.now() == now

    claims_before, claims_after = _claims(before.access_token), _claims(after.access_token)
    assert claims_before["iat"] == claims_after["iat"] == second  # the same whole second
    assert (claims_before["accountEpoch"], claims_after["accountEpoch"]) == (0, 1)

    # Any verifier without leeway accepts it at that very moment: PyJWT, and ours.
    claims = pyjwt_decode_at(
        after.access_token, signing_key.public_key, signing_key.alg, now, monkeypatch
    )
    assert claims["sub"] == CLIENT_ID
    standing = TokenStanding(
        workspace="acme-corp", active=True, tokens_cutoff_ms=cutoff, tokens_epoch=1
    )
    fresh = verify_access_token(
        after.access_token, keys=key_set, issuer=ISSUER, audience=AUDIENCE, now=now, leeway=0
    )
    old = verify_access_token(
        before.access_token, keys=key_set, issuer=ISSUER, audience=AUDIENCE, now=now, leeway=0
    )
    assert token_is_live(fresh, standing)
    assert not token_is_live(old, standing)

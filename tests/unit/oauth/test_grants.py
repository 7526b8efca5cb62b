"""centrali.oauth.grants: client_credentials (RFC 6749 §4.4) and scope resolution (§3.3)."""

from __future__ import annotations

import jwt
import pytest

from centrali.oauth.errors import InvalidScopeError, UnauthorizedClientError
from centrali.oauth.grants import (
    GRANTS,
    ClientCredentialsGrant,
    IssuerConfig,
    TokenResponse,
    resolve_scope,
)
from centrali.oauth.keys import KeySet
from centrali.oauth.tokens import verify_access_token
from tests.unit.oauth.fakes import AUDIENCE, CLIENT_ID, ISSUER, NOW, FakeClock, make_client

TTL = 25200


@pytest.fixture
def config(key_set: KeySet) -> IssuerConfig:
    return IssuerConfig(keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL)


@pytest.mark.parametrize(
    ("requested", "allowed", "granted"),
    [
        pytest.param(None, ("openid",), "openid", id="omitted-gives-all-one"),
        pytest.param(None, ("openid", "profile"), "openid profile", id="omitted-gives-all"),
        pytest.param("openid", ("openid", "profile"), "openid", id="subset"),
        pytest.param("profile openid", ("openid", "profile"), "profile openid", id="order-kept"),
        pytest.param("openid openid", ("openid",), "openid", id="duplicates-dropped"),
        pytest.param("  openid\tprofile ", ("openid", "profile"), "openid profile", id="spaces"),
    ],
)
def test_resolve_scope_grants(
    requested: str | None, allowed: tuple[str, ...], granted: str
) -> None:
    assert resolve_scope(requested, allowed) == granted


@pytest.mark.parametrize(
    ("requested", "allowed"),
    [
        pytest.param("admin", ("openid",), id="unknown"),
        pytest.param("openid admin", ("openid",), id="one-unknown"),
        pytest.param("profile", ("openid",), id="known-but-not-allowed"),
        pytest.param("OPENID", ("openid",), id="case-sensitive"),
        pytest.param("   ", ("openid",), id="only-spaces"),
        pytest.param("openid", (), id="client-has-no-scope"),
    ],
)
def test_resolve_scope_refuses(requested: str, allowed: tuple[str, ...]) -> None:
    with pytest.raises(InvalidScopeError) as info:
        resolve_scope(requested, allowed)
    assert info.value.body()["error"] == "invalid_scope"
    assert info.value.status_code == 400


def test_registry_holds_client_credentials_and_the_user_grants() -> None:
    assert set(GRANTS) == {"client_credentials", "authorization_code", "refresh_token"}
    assert all(name == grant.grant_type for name, grant in GRANTS.items())


def test_client_credentials_issues_a_token_for_the_client(
    config: IssuerConfig, key_set: KeySet
) -> None:
    client = make_client(groups=("api-users", "developers"), scopes=("openid", "profile"))
    response = ClientCredentialsGrant().handle(client, {}, config, FakeClock())
    assert response.token_type == "Bearer"
    assert response.expires_in == TTL
    assert response.scope == "openid profile"
    verified = verify_access_token(
        response.access_token, keys=key_set, issuer=ISSUER, audience=AUDIENCE, now=NOW
    )
    assert verified.subject == CLIENT_ID
    assert verified.client_id == CLIENT_ID
    assert verified.workspace == "acme-corp"
    assert verified.is_service_account is True
    assert verified.groups == ("api-users", "developers")
    assert verified.scope == "openid profile"
    assert verified.issued_at == int(NOW)
    assert verified.expires_at == int(NOW) + TTL


def test_requested_scope_is_granted_and_put_in_the_token(config: IssuerConfig) -> None:
    client = make_client(scopes=("openid", "profile"))
    response = ClientCredentialsGrant().handle(client, {"scope": "profile"}, config, FakeClock())
    assert response.scope == "profile"
    assert jwt.decode(response.access_token, options={"verify_signature": False})["scope"] == (
        "profile"
    )


def test_client_with_no_groups_gets_an_empty_groups_claim(config: IssuerConfig) -> None:
    response = ClientCredentialsGrant().handle(make_client(groups=()), {}, config, FakeClock())
    claims = jwt.decode(response.access_token, options={"verify_signature": False})
    assert claims["groups"] == []
    assert claims["isServiceAccount"] == "true"


def test_grant_not_registered_for_the_client_is_unauthorized_client(config: IssuerConfig) -> None:
    client = make_client(grant_types=("authorization_code",))
    with pytest.raises(UnauthorizedClientError) as info:
        ClientCredentialsGrant().handle(client, {}, config, FakeClock())
    assert info.value.body()["error"] == "unauthorized_client"
    assert info.value.status_code == 400


def test_scope_not_allowed_is_invalid_scope(config: IssuerConfig) -> None:
    with pytest.raises(InvalidScopeError):
        ClientCredentialsGrant().handle(make_client(), {"scope": "admin"}, config, FakeClock())


@pytest.mark.parametrize(
    ("now", "valid_after", "sleeps", "iat"),
    [
        pytest.param(1000.25, 1001, [0.75], 1001, id="before-cutoff-waits"),
        pytest.param(1001.0, 1001, [], 1001, id="at-cutoff"),
        pytest.param(1500.0, 1001, [], 1500, id="after-cutoff"),
        pytest.param(1000.0, 0, [], 1000, id="never-revoked"),
    ],
)
def test_no_token_is_minted_before_tokens_valid_after(
    config: IssuerConfig, now: float, valid_after: int, sleeps: list[float], iat: int
) -> None:
    clock = FakeClock(now)
    client = make_client(tokens_valid_after=valid_after)
    response = ClientCredentialsGrant().handle(client, {}, config, clock)
    assert clock.sleeps == pytest.approx(sleeps)
    claims = jwt.decode(response.access_token, options={"verify_signature": False})
    assert claims["iat"] == iat
    assert claims["iat"] >= valid_after


def test_token_response_body_is_exactly_the_rfc6749_fields() -> None:
    body = TokenResponse(access_token="abc", expires_in=600, scope="openid").body()
    assert body == {
        "access_token": "abc",
        "token_type": "Bearer",
        "expires_in": 600,
        "scope": "openid",
    }

"""centrali.oauth.grants: client_credentials (RFC 6749 §4.4), scope resolution (§3.3), the
revocation cut-off and token reuse."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

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
from centrali.oauth.reuse import TokenReuseCache, reuse_key
from centrali.oauth.tokens import verify_access_token
from tests.unit.oauth.fakes import (
    AUDIENCE,
    CLIENT_ID,
    ISSUER,
    NOW,
    SECRET,
    SECRET_ID,
    FakeClock,
    make_client,
    stored,
)

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
    ("now", "epoch"),
    [
        pytest.param(1000.25, 0, id="never-revoked"),
        pytest.param(1000.75, 3, id="revoked-three-times"),
    ],
)
def test_a_token_carries_the_accounts_epoch_and_a_whole_second_iat(
    config: IssuerConfig, now: float, epoch: int
) -> None:
    clock = FakeClock(now)  # the grant never waits, whatever the cut-off
    client = make_client(tokens_epoch=epoch, tokens_cutoff_ms=int(now * 1000))
    response = ClientCredentialsGrant().handle(client, {}, config, clock)
    assert clock.now() == now
    claims = jwt.decode(response.access_token, options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (int(now), int(now) + TTL)
    assert claims["accountEpoch"] == epoch
    assert response.expires_in == TTL


# --- reuse ---------------------------------------------------------------------------------------


@pytest.fixture
def reusing(key_set: KeySet) -> IssuerConfig:
    return IssuerConfig(
        keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, reuse=TokenReuseCache(60)
    )


def _jti(response: TokenResponse) -> str:
    return str(jwt.decode(response.access_token, options={"verify_signature": False})["jti"])


def test_a_repeat_request_in_the_window_gets_the_same_token(reusing: IssuerConfig) -> None:
    client = make_client()
    first = ClientCredentialsGrant().handle(client, {}, reusing, FakeClock(NOW))
    again = ClientCredentialsGrant().handle(client, {}, reusing, FakeClock(NOW + 10.5))
    assert again.access_token == first.access_token
    assert again.expires_in == TTL - 10


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"tokens_epoch": 1}, id="revoked-and-reactivated"),
        pytest.param(
            {"secrets": (stored(SECRET, SECRET_ID), stored("sk_new", 2))}, id="new-secret"
        ),
        pytest.param({"secrets": (stored("sk_new", 2),)}, id="secret-rotated"),
        pytest.param({"groups": ("admins",)}, id="groups"),
        pytest.param({"workspace": "globex"}, id="workspace"),
    ],
)
def test_a_change_of_the_clients_credential_state_is_never_answered_from_memory(
    reusing: IssuerConfig, changed: dict[str, Any]
) -> None:
    client = make_client()
    first = ClientCredentialsGrant().handle(client, {}, reusing, FakeClock(NOW))
    again = ClientCredentialsGrant().handle(
        replace(client, **changed), {}, reusing, FakeClock(NOW + 1)
    )
    assert _jti(again) != _jti(first)


def test_the_reuse_key_holds_the_secret_ids_and_the_epoch() -> None:
    client = make_client(secrets=(stored(SECRET, 4), stored("sk_other", 9)), tokens_epoch=1_234)
    assert reuse_key(client, "openid") == (
        CLIENT_ID,
        "openid",
        (4, 9),
        1_234,
        "acme-corp",
        ("api-users",),
    )


def test_a_held_token_with_less_than_a_second_left_is_not_reused(key_set: KeySet) -> None:
    config = IssuerConfig(
        keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=2, reuse=TokenReuseCache(60)
    )
    first = ClientCredentialsGrant().handle(make_client(), {}, config, FakeClock(NOW))
    again = ClientCredentialsGrant().handle(make_client(), {}, config, FakeClock(NOW + 1.5))
    assert _jti(again) != _jti(first)


def test_token_response_body_is_exactly_the_rfc6749_fields() -> None:
    body = TokenResponse(access_token="abc", expires_in=600, scope="openid").body()
    assert body == {
        "access_token": "abc",
        "token_type": "Bearer",
        "expires_in": 600,
        "scope": "openid",
    }

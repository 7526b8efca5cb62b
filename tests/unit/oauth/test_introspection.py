"""centrali.oauth.introspection: introspection (RFC 7662) and revocation (RFC 7009) decisions,
with a dict-backed TokenStateStore."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import jwt
import pytest

from centrali.oauth.client_auth import POST, ClientCredentials
from centrali.oauth.errors import InvalidClientError, InvalidRequestError, UnauthorizedClientError
from centrali.oauth.grants import IssuerConfig
from centrali.oauth.introspection import (
    INACTIVE,
    Introspection,
    Revocation,
    TokenActionRequest,
    TokenStanding,
    introspect,
    read_token_request,
    revoke,
    token_is_live,
)
from centrali.oauth.keys import KeySet, SigningKey
from centrali.oauth.tokens import TokenSubject, VerifiedToken, issue_access_token
from tests.unit.oauth.fakes import AUDIENCE, CLIENT_ID, ISSUER, NOW, SECRET, make_client

TTL = 25200
OTHER_ID = "ci_zyxwvutsrqponmlkjihg"
SUBJECT = TokenSubject(
    subject=CLIENT_ID,
    client_id=CLIENT_ID,
    workspace="acme-corp",
    is_service_account=True,
    groups=("api-users",),
    scope="openid",
)
USER = TokenSubject(
    subject="3f0c5e4e-0000-4000-8000-000000000001",
    client_id="centrali-cli",
    workspace="acme-corp",
    is_service_account=False,
    groups=("developers",),
    scope="openid",
)
LIVE = TokenStanding(workspace="acme-corp", active=True)


class FakeTokenStateStore:
    """A TokenStateStore over dicts: standings by subject, revocations by jti."""

    def __init__(self, standings: dict[str, TokenStanding] | None = None) -> None:
        self.standings = dict(standings or {})
        self.revoked: dict[str, Revocation] = {}
        self.recorded_at: list[int] = []
        self.lookups: list[str] = []

    def token_standing(self, token: VerifiedToken) -> TokenStanding | None:
        self.lookups.append(token.jti)
        standing = self.standings.get(token.subject)
        if standing is None:
            return None
        return replace(standing, jti_revoked=standing.jti_revoked or token.jti in self.revoked)

    def record_revocation(self, revocation: Revocation, *, now: int) -> None:
        self.revoked.setdefault(revocation.jti, revocation)
        self.recorded_at.append(now)


@pytest.fixture
def config(key_set: KeySet) -> IssuerConfig:
    return IssuerConfig(keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=TTL)


@pytest.fixture
def store() -> FakeTokenStateStore:
    return FakeTokenStateStore({CLIENT_ID: LIVE, USER.subject: LIVE})


def mint(config: IssuerConfig, who: TokenSubject = SUBJECT, *, now: float = NOW, **kw: Any) -> str:
    return issue_access_token(
        who,
        keys=kw.get("keys", config.keys),
        issuer=kw.get("issuer", config.issuer),
        audience=kw.get("audience", config.audience),
        ttl=kw.get("ttl", TTL),
        now=now,
    ).token


def request_for(token: str, hint: str | None = None) -> TokenActionRequest:
    return TokenActionRequest(
        token=token, token_type_hint=hint, credentials=ClientCredentials(CLIENT_ID, SECRET, POST)
    )


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


# --- read_token_request ------------------------------------------------------------------------


def test_the_form_gives_token_hint_and_credentials() -> None:
    form = {
        "token": "abc",
        "token_type_hint": "access_token",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }
    request = read_token_request(form, None)
    assert request == TokenActionRequest(
        "abc", "access_token", ClientCredentials(CLIENT_ID, SECRET, POST)
    )


@pytest.mark.parametrize(
    ("hint", "kept"),
    [
        pytest.param("access_token", "access_token", id="access"),
        pytest.param("refresh_token", "refresh_token", id="refresh"),
        pytest.param("id_token", None, id="unknown-ignored"),
        pytest.param(None, None, id="none"),
    ],
)
def test_only_known_hints_are_kept(hint: str | None, kept: str | None) -> None:
    form = {"token": "abc", "client_id": CLIENT_ID, "client_secret": SECRET}
    if hint is not None:
        form["token_type_hint"] = hint
    assert read_token_request(form, None).token_type_hint == kept


def test_missing_token_is_invalid_request_before_any_credential_check() -> None:
    with pytest.raises(InvalidRequestError, match="token"):
        read_token_request({}, None)


def test_no_credentials_is_invalid_client() -> None:
    with pytest.raises(InvalidClientError):
        read_token_request({"token": "abc"}, None)


def test_credentials_by_both_methods_are_invalid_request() -> None:
    basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    with pytest.raises(InvalidRequestError):
        read_token_request({"token": "abc", "client_secret": SECRET}, basic)


# --- introspect --------------------------------------------------------------------------------


def test_a_live_token_introspects_with_its_claims(
    config: IssuerConfig, store: FakeTokenStateStore
) -> None:
    token = mint(config)
    answer = introspect(request_for(token), make_client(), tokens=store, config=config, now=NOW)
    assert answer.active
    body = answer.body()
    assert body == {"active": True, **claims_of(token), "token_type": "Bearer"}
    assert list(body)[0] == "active"


def test_a_user_token_introspects_for_a_service_account_of_its_workspace(
    config: IssuerConfig, store: FakeTokenStateStore
) -> None:
    token = mint(config, USER)
    answer = introspect(request_for(token), make_client(), tokens=store, config=config, now=NOW)
    assert answer.body()["isServiceAccount"] == "false"
    assert answer.body()["sub"] == USER.subject


@pytest.mark.parametrize(
    ("caller", "active"),
    [
        pytest.param(make_client(), True, id="own-client"),
        pytest.param(make_client(client_id=OTHER_ID), True, id="same-workspace"),
        pytest.param(
            make_client(client_id=OTHER_ID, workspace="globex"), False, id="other-workspace"
        ),
        pytest.param(make_client(workspace="globex"), True, id="own-client-elsewhere"),
    ],
)
def test_who_may_see_a_token(
    config: IssuerConfig, store: FakeTokenStateStore, caller: Any, active: bool
) -> None:
    answer = introspect(request_for(mint(config)), caller, tokens=store, config=config, now=NOW)
    assert answer.active is active
    if not active:
        assert store.lookups == []  # a foreign token costs no store lookup


def _bad_signature(config: IssuerConfig, other_key: SigningKey) -> str:
    return mint(config, keys=KeySet.of(other_key))


def _tampered(config: IssuerConfig, _other: SigningKey) -> str:
    header, payload, signature = mint(config).split(".")
    forged = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b"api-users", b"admins!!!")
    ).decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda c, k: mint(c, now=NOW - TTL), id="expired"),
        pytest.param(lambda c, k: mint(c, now=NOW - TTL - 1), id="long-expired"),
        pytest.param(_bad_signature, id="unknown-key"),
        pytest.param(_tampered, id="tampered"),
        pytest.param(lambda c, k: "not-a-jwt", id="malformed"),
        pytest.param(lambda c, k: "", id="empty"),
        pytest.param(lambda c, k: mint(c) + "A" * 8192, id="too-long"),
        pytest.param(lambda c, k: mint(c) + "\udc80", id="lone-surrogate"),
        pytest.param(lambda c, k: mint(c) + "é", id="non-ascii"),
        pytest.param(lambda c, k: mint(c, issuer="https://evil.test"), id="foreign-issuer"),
        pytest.param(lambda c, k: mint(c, audience="https://other.test"), id="foreign-audience"),
        pytest.param(lambda c, k: mint(c, now=NOW + 3600), id="issued-in-the-future"),
    ],
)
def test_tokens_that_do_not_verify_are_inactive(
    config: IssuerConfig, store: FakeTokenStateStore, other_key: SigningKey, make_token: Any
) -> None:
    token = make_token(config, other_key)
    answer = introspect(request_for(token), make_client(), tokens=store, config=config, now=NOW)
    assert answer is INACTIVE
    assert answer.body() == {"active": False}
    assert store.lookups == []


@pytest.mark.parametrize(
    "standing",
    [
        pytest.param(None, id="deleted-account-or-no-longer-a-member"),
        pytest.param(replace(LIVE, active=False), id="revoked-account"),
        pytest.param(replace(LIVE, tokens_valid_after=int(NOW) + 1), id="revoked-after-issue"),
        pytest.param(replace(LIVE, jti_revoked=True), id="revoked-jti"),
        pytest.param(replace(LIVE, workspace="globex"), id="account-of-another-workspace"),
    ],
)
def test_tokens_their_holder_no_longer_holds_are_inactive(
    config: IssuerConfig, standing: TokenStanding | None
) -> None:
    store = FakeTokenStateStore({CLIENT_ID: standing} if standing else {})
    answer = introspect(
        request_for(mint(config)), make_client(), tokens=store, config=config, now=NOW
    )
    assert answer.body() == {"active": False}


def test_a_token_issued_in_the_cutoff_second_is_live() -> None:
    token = VerifiedToken(
        subject=CLIENT_ID,
        client_id=CLIENT_ID,
        workspace="acme-corp",
        is_service_account=True,
        groups=(),
        scope="openid",
        issued_at=100,
        expires_at=200,
        jti="j",
        claims={},
    )
    assert token_is_live(token, replace(LIVE, tokens_valid_after=100))
    assert not token_is_live(token, replace(LIVE, tokens_valid_after=101))


def test_active_answer_cannot_be_overridden_by_claims() -> None:
    answer = Introspection({"active": False, "token_type": "N_A", "sub": "x"})
    assert answer.body() == {"active": True, "sub": "x", "token_type": "Bearer"}


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_the_hint_does_not_change_the_answer(
    config: IssuerConfig, store: FakeTokenStateStore, hint: str | None
) -> None:
    answer = introspect(
        request_for(mint(config), hint), make_client(), tokens=store, config=config, now=NOW
    )
    assert answer.active


# --- revoke ------------------------------------------------------------------------------------


def test_revoking_records_the_jti_until_the_token_expires(
    config: IssuerConfig, store: FakeTokenStateStore
) -> None:
    token = mint(config)
    claims = claims_of(token)
    revoke(request_for(token), make_client(), tokens=store, config=config, now=NOW + 5.7)
    assert store.revoked == {
        claims["jti"]: Revocation(
            jti=claims["jti"], client_id=CLIENT_ID, workspace="acme-corp", expires_at=claims["exp"]
        )
    }
    assert store.recorded_at == [int(NOW + 5)]
    # From then on the token introspects as inactive; the store says why.
    after = introspect(request_for(token), make_client(), tokens=store, config=config, now=NOW)
    assert after.body() == {"active": False}


def test_revoking_twice_is_fine(config: IssuerConfig, store: FakeTokenStateStore) -> None:
    token = mint(config)
    for _ in range(2):
        revoke(request_for(token), make_client(), tokens=store, config=config, now=NOW)
    assert len(store.revoked) == 1


def test_revoking_one_token_leaves_the_others(
    config: IssuerConfig, store: FakeTokenStateStore
) -> None:
    first, second = mint(config), mint(config)
    revoke(request_for(first), make_client(), tokens=store, config=config, now=NOW)
    answer = introspect(request_for(second), make_client(), tokens=store, config=config, now=NOW)
    assert answer.active


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda c, k: mint(c, now=NOW - TTL), id="expired"),
        pytest.param(_bad_signature, id="unknown-key"),
        pytest.param(lambda c, k: "not-a-jwt", id="malformed"),
        pytest.param(lambda c, k: mint(c) + "A" * 8192, id="too-long"),
    ],
)
def test_revoking_a_token_that_does_not_verify_does_nothing(
    config: IssuerConfig, store: FakeTokenStateStore, other_key: SigningKey, make_token: Any
) -> None:
    token = make_token(config, other_key)
    revoke(request_for(token), make_client(), tokens=store, config=config, now=NOW)
    assert store.revoked == {}


@pytest.mark.parametrize(
    "who",
    [
        pytest.param(replace(SUBJECT, subject=OTHER_ID, client_id=OTHER_ID), id="other-client"),
        pytest.param(USER, id="user-token"),
    ],
)
def test_revoking_a_token_of_another_client_is_unauthorized_client(
    config: IssuerConfig, store: FakeTokenStateStore, who: TokenSubject
) -> None:
    with pytest.raises(UnauthorizedClientError) as caught:
        revoke(request_for(mint(config, who)), make_client(), tokens=store, config=config, now=NOW)
    assert caught.value.status_code == 400
    assert caught.value.body() == {
        "error": "unauthorized_client",
        "error_description": "The token was not issued to this client",
    }
    assert store.revoked == {}


def test_a_token_without_a_jti_has_nothing_to_record(
    config: IssuerConfig, store: FakeTokenStateStore, signing_key: SigningKey
) -> None:
    claims = claims_of(mint(config))
    del claims["jti"]
    token = jwt.encode(
        claims,
        signing_key.private_key,
        algorithm=signing_key.alg,
        headers={"kid": signing_key.kid, "typ": "at+jwt"},
    )
    revoke(request_for(token), make_client(), tokens=store, config=config, now=NOW)
    assert store.revoked == {}

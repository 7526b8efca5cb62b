"""centrali.oauth.introspection: introspection (RFC 7662) and revocation (RFC 7009) decisions,
with a dict-backed TokenStateStore; the caller authenticated by the client_auth pipeline, as
the HTTP layer does it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import jwt
import pytest

from centrali.oauth.client_auth import (
    NO_CREDENTIALS,
    UNKNOWN_CLIENT,
    WRONG_SECRET,
    Authenticated,
    ClientAuthenticator,
    ClientAuthRequest,
)
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
from centrali.oauth.user_ports import PublicClient
from tests.unit.oauth.fakes import (
    AUDIENCE,
    CLIENT_ID,
    IP,
    ISSUER,
    NOW,
    SECRET,
    FakeClientStore,
    FakePublicClients,
    RecordingLimiter,
    make_client,
)

T = TypeVar("T")

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
    return TokenActionRequest(token=token, token_type_hint=hint)


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


# --- read_token_request ------------------------------------------------------------------------


def test_the_form_gives_token_and_hint() -> None:
    form = {
        "token": "abc",
        "token_type_hint": "access_token",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }
    assert read_token_request(form) == TokenActionRequest("abc", "access_token")


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
    form = {"token": "abc"}
    if hint is not None:
        form["token_type_hint"] = hint
    assert read_token_request(form).token_type_hint == kept


def test_missing_token_is_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="token"):
        read_token_request({"client_id": CLIENT_ID, "client_secret": SECRET})


def test_the_form_is_read_without_credentials() -> None:
    # The credentials are the authentication pipeline's, not the form reader's.
    assert read_token_request({"token": "abc"}) == TokenActionRequest("abc", None)


# --- through the authentication pipeline, as the endpoints run it ------------------------------

CLI = PublicClient("centrali-cli", ("http://127.0.0.1/cb",))


def _endpoint(
    form: dict[str, str],
    authorization: str | None,
    work: Callable[[TokenActionRequest, Authenticated], T],
    *,
    allow_public: bool = False,
    clients: FakeClientStore | None = None,
    limiter: RecordingLimiter | None = None,
) -> T:
    """Form read, ``token`` present, client authenticated, then ``work``, in that order."""
    token_request = read_token_request(form)
    authenticator = ClientAuthenticator(
        clients=clients or FakeClientStore([make_client()]),
        public_clients=FakePublicClients([CLI]),
        limiter=limiter,
    )
    request = ClientAuthRequest(form, authorization, IP, allow_public)

    async def then(caller: Authenticated) -> T:
        return work(token_request, caller)

    return asyncio.run(authenticator.authenticate(request, NOW, then))


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_introspection_through_the_pipeline(
    config: IssuerConfig, store: FakeTokenStateStore
) -> None:
    token = mint(config)

    def work(request: TokenActionRequest, caller: Authenticated) -> Introspection:
        return introspect(request, caller.confidential, tokens=store, config=config, now=NOW)

    for form, authorization in (
        ({"token": token, "client_id": CLIENT_ID, "client_secret": SECRET}, None),
        ({"token": token}, _basic(CLIENT_ID, SECRET)),
    ):
        assert _endpoint(form, authorization, work).active


@pytest.mark.parametrize(
    ("form", "authorization", "allow_public", "reason"),
    [
        pytest.param({}, None, False, NO_CREDENTIALS, id="no-credentials"),
        pytest.param({"client_id": CLIENT_ID}, None, False, NO_CREDENTIALS, id="no-secret"),
        pytest.param({}, _basic(CLIENT_ID, "sk_wrong"), False, WRONG_SECRET, id="wrong-secret"),
        pytest.param(
            {"client_id": "centrali-cli"}, None, False, NO_CREDENTIALS, id="public-introspecting"
        ),
        pytest.param({"client_id": "nope"}, None, True, UNKNOWN_CLIENT, id="unknown-public"),
    ],
)
def test_an_unauthenticated_caller_learns_nothing_about_the_token(
    config: IssuerConfig,
    store: FakeTokenStateStore,
    form: dict[str, str],
    authorization: str | None,
    allow_public: bool,
    reason: str,
) -> None:
    def work(request: TokenActionRequest, caller: Authenticated) -> Introspection:
        return introspect(request, caller.confidential, tokens=store, config=config, now=NOW)

    with pytest.raises(InvalidClientError) as info:
        _endpoint({"token": mint(config), **form}, authorization, work, allow_public=allow_public)
    assert info.value.detail == reason
    assert store.lookups == []


def test_credentials_by_both_methods_are_invalid_request(
    config: IssuerConfig, store: FakeTokenStateStore
) -> None:
    clients = FakeClientStore([make_client()])

    def work(request: TokenActionRequest, caller: Authenticated) -> None:
        raise AssertionError("not reached")

    with pytest.raises(InvalidRequestError):
        _endpoint(
            {"token": "abc", "client_secret": SECRET},
            _basic(CLIENT_ID, SECRET),
            work,
            clients=clients,
        )
    assert clients.lookups == []


def test_missing_token_is_refused_before_the_client_is_authenticated() -> None:
    clients, limiter = FakeClientStore([make_client()]), RecordingLimiter()

    def work(request: TokenActionRequest, caller: Authenticated) -> None:
        raise AssertionError("not reached")

    with pytest.raises(InvalidRequestError):
        _endpoint(
            {"client_id": CLIENT_ID, "client_secret": SECRET},
            None,
            work,
            clients=clients,
            limiter=limiter,
        )
    assert (clients.lookups, limiter.events) == ([], [])


@pytest.mark.parametrize(
    ("who", "recorded"),
    [
        pytest.param(USER, True, id="own-token"),
        pytest.param(replace(USER, client_id="app"), False, id="another-clients-token"),
        pytest.param(SUBJECT, False, id="a-service-accounts-token"),
    ],
)
def test_a_public_client_may_revoke_its_own_tokens_by_naming_itself(
    config: IssuerConfig, store: FakeTokenStateStore, who: TokenSubject, recorded: bool
) -> None:
    token = mint(config, who)

    def work(request: TokenActionRequest, caller: Authenticated) -> None:
        revoke(request, caller.client, tokens=store, config=config, now=NOW)

    form = {"token": token, "client_id": "centrali-cli"}
    if recorded:
        _endpoint(form, None, work, allow_public=True)
        assert claims_of(token)["jti"] in store.revoked
    else:
        with pytest.raises(UnauthorizedClientError):
            _endpoint(form, None, work, allow_public=True)
        assert store.revoked == {}


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
        pytest.param(replace(LIVE, tokens_cutoff_ms=int(NOW) * 1000 + 1), id="revoked-after-issue"),
        pytest.param(replace(LIVE, tokens_cutoff_ms=int(NOW) * 1000), id="revoked-at-issue"),
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


@pytest.mark.parametrize(
    ("issued_at", "cutoff_ms", "live"),
    [
        pytest.param(100, 0, True, id="never-revoked"),
        pytest.param(100, 99_999, True, id="issued-the-second-after-the-cutoff"),
        pytest.param(100, 100_000, False, id="issued-at-the-cutoff"),
        pytest.param(100, 100_500, False, id="issued-before-the-cutoff"),
        pytest.param(100.501, 100_500, True, id="issued-just-after-a-cutoff-in-its-second"),
        pytest.param(100.5, 100_500, False, id="fraction-at-the-cutoff"),
    ],
)
def test_the_cutoff_kills_tokens_issued_at_or_before_its_millisecond(
    issued_at: float, cutoff_ms: int, live: bool
) -> None:
    token = VerifiedToken(
        subject=CLIENT_ID,
        client_id=CLIENT_ID,
        workspace="acme-corp",
        is_service_account=True,
        groups=(),
        scope="openid",
        issued_at=issued_at,
        expires_at=200,
        jti="j",
        claims={},
    )
    assert token_is_live(token, replace(LIVE, tokens_cutoff_ms=cutoff_ms)) is live


def test_a_token_reissued_after_a_revoke_in_its_second_introspects_as_live(
    config: IssuerConfig,
) -> None:
    """Revoked and re-activated in one second: the token from before (epoch 0) is dead, the
    one issued after (epoch 1, the same iat second) is live; the cut-off plays no part for
    tokens with an epoch."""
    cutoff = int(NOW) * 1000 + 200

    def issued(epoch: int, now: float) -> str:
        return issue_access_token(
            replace(SUBJECT, epoch=epoch),
            keys=config.keys,
            issuer=config.issuer,
            audience=config.audience,
            ttl=TTL,
            now=now,
        ).token

    old, new = issued(0, NOW + 0.1), issued(1, NOW + 0.5)
    store = FakeTokenStateStore({CLIENT_ID: replace(LIVE, tokens_cutoff_ms=cutoff, tokens_epoch=1)})
    answers = [
        introspect(request_for(t), make_client(), tokens=store, config=config, now=NOW + 0.5)
        for t in (old, new)
    ]
    assert [a.active for a in answers] == [False, True]
    assert answers[1].body()["accountEpoch"] == 1


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

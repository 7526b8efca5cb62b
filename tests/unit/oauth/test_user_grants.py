"""The user grants of centrali.oauth.grants (authorization_code, refresh_token) and client
authentication ``none``, over a dict-backed UserGrantStore; every request goes through the
client_auth pipeline, then complete_user_grant_request (public client) or
complete_token_request (confidential), as the HTTP layer runs them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import jwt
import pytest

from centrali.oauth.client_auth import (
    NO_CREDENTIALS,
    NONE,
    POST,
    UNKNOWN_CLIENT,
    WRONG_SECRET,
    Authenticated,
    ClientAuthenticator,
    ClientAuthRequest,
    ClientCredentials,
    extract_client_credentials,
)
from centrali.oauth.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from centrali.oauth.grants import (
    IssuerConfig,
    TokenResponse,
    UserGrant,
)
from centrali.oauth.id_token import IdTokenFacts, id_token_claims, read_id_token_hint
from centrali.oauth.keys import KeySet, SigningKey
from centrali.oauth.opaque_tokens import new_opaque_token, plausible_token, token_digest
from centrali.oauth.pkce import s256_challenge
from centrali.oauth.token_endpoint import (
    TokenRequest,
    complete_token_request,
    complete_user_grant_request,
    needs_user_store,
    prepare_token_request,
)
from centrali.oauth.tokens import InvalidTokenError, UnknownKeyError, verify_access_token
from centrali.oauth.user_ports import (
    CodeRecord,
    NewRefreshToken,
    PublicClient,
    RefreshRecord,
    UserGrantContext,
    UserStanding,
)
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
    FakeCredentialUsage,
    FakePublicClients,
    RecordingLimiter,
    make_client,
)

APP = PublicClient("app", ("https://app.example/cb",))
VERIFIER = "v" * 43
CODE = "the-code-0123456789abcdefghijklmnopqrstuvwxyz"
SUBJECT = "user-1"


@dataclass
class Chain:
    revoked: bool = False


class FakeUserStore:
    """Codes and refresh tokens in dicts; chains numbered from 1."""

    def __init__(self) -> None:
        self.clients = {APP.client_id: APP, "tool": PublicClient("tool", ("https://t/cb",))}
        self.codes: dict[str, CodeRecord] = {}
        self.refresh: dict[str, RefreshRecord] = {}
        self.chains: dict[int, Chain] = {}
        self.members: dict[tuple[str, str], UserStanding] = {
            (SUBJECT, "acme-corp"): UserStanding(SUBJECT, "ada@x.test", "acme-corp", ("devs",))
        }
        self.race = False  # the next redeem/rotate loses a race

    def find_public_client(self, client_id: str) -> PublicClient | None:
        return self.clients.get(client_id)

    def add_code(self, code: str = CODE, **overrides: Any) -> CodeRecord:
        chain_id = len(self.chains) + 1
        self.chains[chain_id] = Chain()
        record = CodeRecord(
            chain_id=chain_id,
            client_id="app",
            subject=SUBJECT,
            workspace="acme-corp",
            redirect_uri="https://app.example/cb",
            code_challenge=s256_challenge(VERIFIER),
            nonce="n1",
            scope="openid",
            auth_time=int(NOW) - 5,
            expires_at=NOW + 60,
            consumed=False,
            sid="sid1",
        )
        record = replace(record, **overrides)
        self.codes[token_digest(code)] = record
        return record

    def find_code(self, code_hash: str) -> CodeRecord | None:
        record = self.codes.get(code_hash)
        if record is None:
            return None
        return replace(record, consumed=record.consumed or self.chains[record.chain_id].revoked)

    def _store(self, chain_id: int, base: CodeRecord | RefreshRecord, new: NewRefreshToken) -> None:
        self.refresh[new.token_hash] = RefreshRecord(
            chain_id=chain_id,
            client_id=base.client_id,
            subject=base.subject,
            workspace=base.workspace,
            scope=new.scope,
            auth_time=base.auth_time,
            expires_at=new.expires_at,
            spent=False,
            sid=base.sid,
        )

    def redeem_code(self, code_hash: str, refresh: NewRefreshToken, now: float) -> bool:
        record = self.codes[code_hash]
        if record.consumed or self.race:
            self.revoke_chain(record.chain_id, now)
            return False
        self.codes[code_hash] = replace(record, consumed=True)
        self._store(record.chain_id, record, refresh)
        return True

    def find_refresh_token(self, token_hash: str) -> RefreshRecord | None:
        record = self.refresh.get(token_hash)
        if record is None:
            return None
        return replace(record, spent=record.spent or self.chains[record.chain_id].revoked)

    def rotate_refresh_token(self, token_hash: str, refresh: NewRefreshToken, now: float) -> bool:
        record = self.refresh[token_hash]
        if record.spent or self.race or self.chains[record.chain_id].revoked:
            self.revoke_chain(record.chain_id, now)
            return False
        self.refresh[token_hash] = replace(record, spent=True)
        self._store(record.chain_id, record, refresh)
        return True

    def revoke_chain(self, chain_id: int, now: float) -> None:
        self.chains[chain_id].revoked = True

    def user_standing(self, subject: str, workspace: str) -> UserStanding | None:
        return self.members.get((subject, workspace))


@pytest.fixture
def store() -> FakeUserStore:
    return FakeUserStore()


@pytest.fixture
def config(key_set: KeySet) -> IssuerConfig:
    return IssuerConfig(keys=key_set, issuer=ISSUER, audience=AUDIENCE, ttl=25200)


@pytest.fixture
def users(store: FakeUserStore) -> UserGrantContext:
    return UserGrantContext(store=store, access_ttl=900, refresh_ttl=3600)


def token(
    form: Mapping[str, str],
    config: IssuerConfig,
    users: UserGrantContext,
    authorization: str | None = None,
    clients: FakeClientStore | None = None,
    now: float = NOW,
    limiter: RecordingLimiter | None = None,
    usage: FakeCredentialUsage | None = None,
) -> TokenResponse:
    """The token endpoint as the HTTP layer runs it: prepare, authenticate (``none`` offered
    for the user grants), then the public client's user grant or the confidential grant."""
    store = users.store
    assert isinstance(store, FakeUserStore)
    prepared = prepare_token_request(TokenRequest(form=form, authorization=authorization))
    authenticator = ClientAuthenticator(
        clients=clients or FakeClientStore([make_client()]),
        public_clients=FakePublicClients(store.clients.values()),
        limiter=limiter,
        usage=usage,
    )
    request = ClientAuthRequest(form, authorization, IP, prepared.allows_public_client)
    clock = FakeClock(now)

    async def grant(authenticated: Authenticated) -> TokenResponse:
        if needs_user_store(authenticated):
            assert isinstance(authenticated.client, PublicClient)
            return complete_user_grant_request(
                prepared, authenticated.client, config=config, clock=clock, users=users
            )
        return complete_token_request(prepared, authenticated, config=config, clock=clock)

    return asyncio.run(authenticator.authenticate(request, now, grant))


def code_form(**overrides: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "client_id": "app",
        "code": CODE,
        "redirect_uri": "https://app.example/cb",
        "code_verifier": VERIFIER,
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def refresh_form(refresh_token: str, **overrides: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": "app",
        "refresh_token": refresh_token,
        **overrides,
    }


# --- client authentication "none" -------------------------------------------------------------


def test_none_is_offered_only_when_the_grant_allows_it() -> None:
    assert extract_client_credentials({"client_id": "app"}, None, allow_none=True) == (
        ClientCredentials("app", "", NONE)
    )
    with pytest.raises(InvalidClientError):
        extract_client_credentials({"client_id": "app"}, None)
    with_secret = {"client_id": "app", "client_secret": "s"}
    assert extract_client_credentials(with_secret, None, allow_none=True).method == POST


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        pytest.param(code_form(client_id="nope"), UNKNOWN_CLIENT, id="unknown-public-client"),
        pytest.param(code_form(client_id="a\x00"), UNKNOWN_CLIENT, id="nul-in-id"),
        pytest.param(
            code_form(client_secret="secret"), UNKNOWN_CLIENT, id="public-client-with-secret"
        ),
        pytest.param(code_form(client_id=None), NO_CREDENTIALS, id="no-client-id"),
    ],
)
def test_public_client_authentication_refusals(
    config: IssuerConfig,
    users: UserGrantContext,
    store: FakeUserStore,
    form: dict[str, str],
    reason: str,
) -> None:
    store.add_code()
    with pytest.raises(InvalidClientError) as info:
        token(form, config, users)
    assert info.value.detail == reason
    assert all(not r.consumed for r in store.codes.values())


def test_a_public_client_names_itself_and_spends_no_issuance_budget(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore
) -> None:
    store.add_code()
    limiter, usage = RecordingLimiter(), FakeCredentialUsage()
    response = token(code_form(), config, users, limiter=limiter, usage=usage)
    assert response.refresh_token is not None
    assert limiter.events == [("check", "app"), ("conclude", "app", True)]
    assert usage.records == []  # no secret was used


def test_a_failed_user_grant_refunds_nothing_a_public_client_never_took(
    config: IssuerConfig, users: UserGrantContext
) -> None:
    limiter = RecordingLimiter()
    with pytest.raises(InvalidGrantError):
        token(code_form(code="unknown-code"), config, users, limiter=limiter)
    assert limiter.refunds == []


def test_client_credentials_stays_closed_to_public_clients(
    config: IssuerConfig, users: UserGrantContext
) -> None:
    with pytest.raises(InvalidClientError) as info:
        token({"grant_type": "client_credentials", "client_id": "app"}, config, users)
    assert info.value.detail == NO_CREDENTIALS


def test_a_confidential_client_may_not_use_the_user_grants(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore
) -> None:
    record = store.add_code()
    limiter, usage = RecordingLimiter(), FakeCredentialUsage()
    form = code_form(client_id=CLIENT_ID, client_secret=SECRET)
    with pytest.raises(UnauthorizedClientError):
        token(form, config, users, limiter=limiter, usage=usage)
    assert usage.records == [(CLIENT_ID, SECRET_ID, NOW)]  # authenticated, then refused
    assert limiter.events[-1] == ("refund", True)
    with pytest.raises(InvalidClientError) as info:
        token(code_form(client_id=CLIENT_ID, client_secret="sk_wrong"), config, users)
    assert info.value.detail == WRONG_SECRET
    with pytest.raises(InvalidClientError) as info:
        token(code_form(client_id=CLIENT_ID), config, users)  # not a public client
    assert info.value.detail == UNKNOWN_CLIENT
    assert not store.codes[token_digest(CODE)].consumed
    assert not store.chains[record.chain_id].revoked


def test_the_base_class_handles_nothing(config: IssuerConfig, users: UserGrantContext) -> None:
    with pytest.raises(NotImplementedError):
        UserGrant().handle(APP, {}, config, FakeClock(), users)


# --- authorization_code -------------------------------------------------------------------------


def test_code_gives_access_id_and_refresh_tokens(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore, key_set: KeySet
) -> None:
    store.add_code()
    response = token(code_form(), config, users)
    body = response.body()
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "refresh_token",
        "id_token",
    }
    assert body["expires_in"] == 900
    access = verify_access_token(
        response.access_token, keys=key_set, issuer=ISSUER, audience=AUDIENCE, now=NOW
    )
    assert access.subject == SUBJECT
    assert access.client_id == "app"
    assert not access.is_service_account
    assert access.groups == ("devs",)
    assert access.expires_at == int(NOW) + 900
    assert response.id_token is not None
    claims = jwt.decode(response.id_token, options={"verify_signature": False})
    assert claims["aud"] == "app"
    assert claims["nonce"] == "n1"
    assert claims["auth_time"] == int(NOW) - 5
    assert claims["sid"] == "sid1"
    assert claims["email"] == "ada@x.test"
    assert response.refresh_token is not None
    stored = store.refresh[token_digest(response.refresh_token)]
    assert stored.expires_at == NOW + 3600


@pytest.mark.parametrize(
    ("form", "code_overrides"),
    [
        (code_form(code="unknown-code"), {}),
        (code_form(code="bad code\x00"), {}),
        (code_form(code_verifier="w" * 43), {}),
        (code_form(code_verifier=s256_challenge(VERIFIER)), {}),
        (code_form(redirect_uri="https://app.example/cb2"), {}),
        (code_form(client_id="tool"), {}),
        (code_form(), {"expires_at": NOW}),
        (code_form(), {"workspace": "gone"}),
    ],
    ids=[
        "unknown",
        "implausible",
        "wrong-verifier",
        "challenge-as-verifier",
        "other-redirect",
        "other-client",
        "expired",
        "no-longer-member",
    ],
)
def test_code_refusals_are_invalid_grant(
    config: IssuerConfig,
    users: UserGrantContext,
    store: FakeUserStore,
    form: dict[str, str],
    code_overrides: dict[str, Any],
) -> None:
    record = store.add_code(**code_overrides)
    with pytest.raises(InvalidGrantError):
        token(form, config, users)
    assert not store.chains[record.chain_id].revoked  # a failed check revokes nothing


@pytest.mark.parametrize("missing", ["code", "redirect_uri", "code_verifier"])
def test_missing_code_parameters_are_invalid_request(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore, missing: str
) -> None:
    store.add_code()
    with pytest.raises(InvalidRequestError):
        token(code_form(**{missing: None}), config, users)


def test_a_reused_code_revokes_its_chain(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore
) -> None:
    record = store.add_code()
    first = token(code_form(), config, users)
    with pytest.raises(InvalidGrantError) as info:
        token(code_form(), config, users)
    assert info.value.detail is not None
    assert "reused" in info.value.detail
    assert store.chains[record.chain_id].revoked
    assert first.refresh_token is not None
    with pytest.raises(InvalidGrantError):
        token(refresh_form(first.refresh_token), config, users)


def test_a_code_redeemed_concurrently_is_refused(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore
) -> None:
    record = store.add_code()
    store.race = True
    with pytest.raises(InvalidGrantError):
        token(code_form(), config, users)
    assert store.chains[record.chain_id].revoked


# --- refresh_token ------------------------------------------------------------------------------


@pytest.fixture
def first(config: IssuerConfig, users: UserGrantContext, store: FakeUserStore) -> str:
    store.add_code()
    refresh = token(code_form(), config, users).refresh_token
    assert refresh is not None
    return refresh


def test_refresh_rotates(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore, first: str
) -> None:
    second = token(refresh_form(first), config, users, now=NOW + 100)
    assert second.refresh_token not in (None, first)
    assert second.id_token is not None
    claims = jwt.decode(second.id_token, options={"verify_signature": False})
    assert "nonce" not in claims
    assert claims["auth_time"] == int(NOW) - 5
    assert second.refresh_token is not None
    # Rotation does not extend the chain.
    assert store.refresh[token_digest(second.refresh_token)].expires_at == NOW + 3600
    narrowed = token(refresh_form(second.refresh_token, scope="openid"), config, users)
    assert narrowed.scope == "openid"


def test_refresh_reuse_revokes_the_chain(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore, first: str
) -> None:
    second = token(refresh_form(first), config, users).refresh_token
    assert second is not None
    with pytest.raises(InvalidGrantError):
        token(refresh_form(first), config, users)
    with pytest.raises(InvalidGrantError):
        token(refresh_form(second), config, users)


def test_refresh_lost_race_is_refused(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore, first: str
) -> None:
    store.race = True
    with pytest.raises(InvalidGrantError):
        token(refresh_form(first), config, users)
    assert store.chains[1].revoked


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("unknown", InvalidGrantError),
        ("other-client", InvalidGrantError),
        ("expired", InvalidGrantError),
        ("wider-scope", InvalidScopeError),
        ("left-workspace", InvalidGrantError),
        ("missing", InvalidRequestError),
    ],
)
def test_refresh_refusals(
    config: IssuerConfig,
    users: UserGrantContext,
    store: FakeUserStore,
    first: str,
    case: str,
    error: type[Exception],
) -> None:
    form, now = refresh_form(first), NOW
    if case == "unknown":
        form = refresh_form("rt_unknown")
    elif case == "other-client":
        form = refresh_form(first, client_id="tool")
    elif case == "expired":
        now = NOW + 3600
    elif case == "wider-scope":
        form = refresh_form(first, scope="openid email")
    elif case == "left-workspace":
        store.members.clear()
    else:
        del form["refresh_token"]
    with pytest.raises(error):
        token(form, config, users, now=now)
    assert not store.chains[1].revoked


# --- ID tokens and hints ------------------------------------------------------------------------


def test_id_token_claims_leave_out_what_is_unknown() -> None:
    facts = IdTokenFacts(subject="s", client_id="c", email="e@x.test", auth_time=1)
    claims = id_token_claims(facts, issuer=ISSUER, ttl=60, now=NOW)
    assert claims == {
        "iss": ISSUER,
        "sub": "s",
        "aud": "c",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "auth_time": 1,
        "email": "e@x.test",
    }


def test_id_token_hint(
    config: IssuerConfig, users: UserGrantContext, store: FakeUserStore, key_set: KeySet
) -> None:
    store.add_code()
    id_token = token(code_form(), config, users).id_token
    assert id_token is not None
    # Expired long ago: still a hint.
    hint = read_id_token_hint(id_token, key_set.public_keys, issuer=ISSUER)
    assert (hint.subject, hint.client_id, hint.sid) == (SUBJECT, "app", "sid1")


def test_id_token_hint_refusals(
    config: IssuerConfig,
    users: UserGrantContext,
    store: FakeUserStore,
    key_set: KeySet,
    other_key: SigningKey,
    signing_key: SigningKey,
) -> None:
    store.add_code()
    response = token(code_form(), config, users)
    assert response.id_token is not None
    for bad in ("garbage", response.access_token, response.id_token[:-3] + "AAA", "\ud800.x.y"):
        with pytest.raises(InvalidTokenError):
            read_id_token_hint(bad, key_set.public_keys, issuer=ISSUER)
    with pytest.raises(InvalidTokenError):
        read_id_token_hint(response.id_token, key_set.public_keys, issuer="https://other")

    def forge(key: SigningKey, claims: dict[str, Any], alg: str | None = None) -> str:
        return jwt.encode(
            claims,
            key.private_key,
            algorithm=alg or key.alg,
            headers={"kid": key.kid, "typ": "JWT"},
        )

    with pytest.raises(UnknownKeyError):
        read_id_token_hint(
            forge(other_key, {"iss": ISSUER, "sub": "s", "aud": "a"}),
            key_set.public_keys,
            issuer=ISSUER,
        )
    with pytest.raises(InvalidTokenError):
        read_id_token_hint(
            forge(signing_key, {"iss": ISSUER, "sub": "s", "aud": ["a", "b"]}),
            key_set.public_keys,
            issuer=ISSUER,
        )
    with pytest.raises(InvalidTokenError):
        read_id_token_hint(
            forge(signing_key, {"iss": ISSUER, "sub": "s", "aud": "a"}, alg="RS512"),
            key_set.public_keys,
            issuer=ISSUER,
        )
    no_sid = read_id_token_hint(
        forge(signing_key, {"iss": ISSUER, "sub": "s", "aud": "a", "sid": 5}),
        key_set.public_keys,
        issuer=ISSUER,
    )
    assert no_sid.sid is None


# --- opaque values ------------------------------------------------------------------------------


def test_opaque_tokens() -> None:
    value = new_opaque_token("rt_")
    assert value.startswith("rt_")
    assert len(value) == 46
    assert plausible_token(value)
    assert token_digest(value) == token_digest(value)
    assert len(token_digest(value)) == 64
    for bad in (None, "", "a b", "é", "x" * 257, "a\x00"):
        assert not plausible_token(bad)

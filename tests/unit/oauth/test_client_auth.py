"""centrali.oauth.client_auth: the one client-authentication pipeline (RFC 6749 §2.3, §3.2.1)
of the token, introspection and revocation endpoints, over dict-backed fakes.

extract (one method per request) → limiter.check → lookup → verify (``METHODS``, or ``none``
for a public client) → limiter.conclude → failure or usage recorded → ``then``, with the
issuance token refunded when ``then`` fails."""

from __future__ import annotations

import asyncio
import base64
import hmac
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote_plus

import pytest

from centrali.oauth import credentials
from centrali.oauth.client_auth import (
    AUTH_METHODS,
    BASIC,
    INACTIVE_CLIENT,
    METHODS,
    NO_CREDENTIALS,
    NONE,
    POST,
    RATE_LIMITED,
    REASONS,
    UNKNOWN_CLIENT,
    WRONG_SECRET,
    Authenticated,
    ClientAuthenticator,
    ClientAuthMethod,
    ClientAuthRequest,
    ClientCredentials,
    extract_client_credentials,
)
from centrali.oauth.credentials import SECRET_SLOTS
from centrali.oauth.errors import (
    InvalidClientError,
    InvalidRequestError,
    OAuthError,
    UnauthorizedClientError,
)
from centrali.oauth.limits import LimitSettings, SlowDownError
from centrali.oauth.ports import ClientRecord
from centrali.oauth.user_ports import PublicClient
from tests.unit.oauth.fakes import (
    CLIENT_ID,
    IP,
    NOW,
    SECRET,
    SECRET_ID,
    Events,
    FakeClientStore,
    FakeCredentialUsage,
    FakeFailureLog,
    FakePublicClients,
    RecordingLimiter,
    make_client,
    stored,
)

T = TypeVar("T")
APP = PublicClient("app", ("https://app.example/cb",))
UNKNOWN_ID = "ci_unknown0000000000000"
INVALID_CLIENT_BODY = {"error": "invalid_client", "error_description": "Invalid client credentials"}


def basic(client_id: str, secret: str, *, scheme: str = "Basic") -> str:
    """RFC 6749 §2.3.1: each part form-urlencoded, joined by a colon, then base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return f"{scheme} {base64.b64encode(raw).decode()}"


def raw_basic(decoded: bytes) -> str:
    return "Basic " + base64.b64encode(decoded).decode()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Pipeline:
    """A ClientAuthenticator over fakes that share one event log."""

    events: Events
    clients: FakeClientStore
    public: FakePublicClients
    failures: FakeFailureLog
    usage: FakeCredentialUsage
    limiter: RecordingLimiter | None
    auth: ClientAuthenticator

    def authenticate(
        self,
        form: dict[str, str],
        authorization: str | None = None,
        *,
        allow_none: bool = False,
        then: Callable[[Authenticated], Awaitable[Any]] | None = None,
        now: float = NOW,
    ) -> Any:
        async def echo(authenticated: Authenticated) -> Authenticated:
            return authenticated

        request = ClientAuthRequest(form, authorization, IP, allow_none)
        return run(self.auth.authenticate(request, now, then or echo))


def pipeline(
    *records: ClientRecord,
    limiter: RecordingLimiter | None = None,
    with_limiter: bool = True,
    **kwargs: Any,
) -> Pipeline:
    """``records`` (default: ``make_client()``) and the public client ``APP``; a recording
    limiter unless ``with_limiter`` is False."""
    events: Events = []
    clients = FakeClientStore(records or (make_client(),), events)
    public = FakePublicClients([APP], events)
    failures, usage = FakeFailureLog(), FakeCredentialUsage()
    if limiter is None and with_limiter:
        limiter = RecordingLimiter(events)
    elif limiter is not None:
        limiter.events = events
    auth = ClientAuthenticator(
        clients=clients,
        public_clients=public,
        limiter=limiter,
        failures=failures,
        usage=usage,
        **kwargs,
    )
    return Pipeline(events, clients, public, failures, usage, limiter, auth)


def post_form(client_id: str = CLIENT_ID, secret: str = SECRET) -> dict[str, str]:
    return {"client_id": client_id, "client_secret": secret}


# --- extract_client_credentials ---------------------------------------------------------------


def test_body_credentials_are_client_secret_post() -> None:
    form = {"client_id": CLIENT_ID, "client_secret": SECRET}
    assert extract_client_credentials(form, None) == ClientCredentials(CLIENT_ID, SECRET, POST)


def test_basic_credentials_are_client_secret_basic() -> None:
    creds = extract_client_credentials({}, basic(CLIENT_ID, SECRET))
    assert creds == ClientCredentials(CLIENT_ID, SECRET, BASIC)


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        pytest.param("ci_plain", "sk plus+and space", id="plus-and-space"),
        pytest.param("ci:colon", "sk:colon:twice", id="colons"),
        pytest.param("ci_pct%", "sk_%41%25", id="percent"),
        pytest.param("ci_é", "sk_ü/&=?", id="non-ascii-and-reserved"),
    ],
)
def test_basic_parts_are_form_urldecoded(client_id: str, secret: str) -> None:
    creds = extract_client_credentials({}, basic(client_id, secret))
    assert (creds.client_id, creds.client_secret) == (client_id, secret)


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "bAsIc"], ids=["lower", "upper", "mixed"])
def test_basic_scheme_is_case_insensitive(scheme: str) -> None:
    creds = extract_client_credentials({}, basic(CLIENT_ID, SECRET, scheme=scheme))
    assert creds.method == BASIC


def test_basic_with_the_same_client_id_in_the_body_is_allowed() -> None:
    creds = extract_client_credentials({"client_id": CLIENT_ID}, basic(CLIENT_ID, SECRET))
    assert creds == ClientCredentials(CLIENT_ID, SECRET, BASIC)


def test_a_non_basic_authorization_header_is_ignored() -> None:
    form = {"client_id": CLIENT_ID, "client_secret": SECRET}
    assert extract_client_credentials(form, "Bearer abc.def.ghi").method == POST


@pytest.mark.parametrize(
    ("form", "authorization", "allow_none", "expected"),
    [
        pytest.param(
            {"client_id": "app"}, None, True, ClientCredentials("app", "", NONE), id="none"
        ),
        pytest.param(
            post_form(), None, True, ClientCredentials(CLIENT_ID, SECRET, POST), id="post"
        ),
        pytest.param(
            {},
            basic(CLIENT_ID, SECRET),
            True,
            ClientCredentials(CLIENT_ID, SECRET, BASIC),
            id="basic",
        ),
    ],
)
def test_none_is_a_body_client_id_without_a_secret_where_allowed(
    form: dict[str, str], authorization: str | None, allow_none: bool, expected: ClientCredentials
) -> None:
    assert extract_client_credentials(form, authorization, allow_none=allow_none) == expected


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"client_secret": SECRET}, id="body-secret"),
        pytest.param({"client_id": CLIENT_ID, "client_secret": SECRET}, id="body-id-and-secret"),
        pytest.param({"client_id": "ci_someoneelse"}, id="body-id-differs"),
    ],
)
def test_basic_and_body_credentials_together_are_invalid_request(form: dict[str, str]) -> None:
    with pytest.raises(InvalidRequestError):
        extract_client_credentials(form, basic(CLIENT_ID, SECRET))


@pytest.mark.parametrize(
    ("form", "authorization"),
    [
        pytest.param({}, None, id="nothing"),
        pytest.param({}, "", id="empty-header"),
        pytest.param({"client_id": CLIENT_ID}, None, id="id-without-secret"),
        pytest.param({"client_secret": SECRET}, None, id="secret-without-id"),
        pytest.param({"client_id": CLIENT_ID}, "Bearer x", id="id-and-bearer-header"),
    ],
)
def test_missing_client_authentication_is_invalid_client(
    form: dict[str, str], authorization: str | None
) -> None:
    with pytest.raises(InvalidClientError) as info:
        extract_client_credentials(form, authorization)
    assert info.value.detail == NO_CREDENTIALS
    assert info.value.headers() == {}


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic !!!not-base64!!!", id="not-base64"),
        pytest.param("Basic " + base64.b64encode(b"no-colon").decode(), id="no-colon"),
        pytest.param(raw_basic(b"ci_\xff:sk_\xfe"), id="not-utf8"),
        pytest.param("Basic", id="no-credentials"),
    ],
)
def test_malformed_basic_is_invalid_request(authorization: str) -> None:
    with pytest.raises(InvalidRequestError):
        extract_client_credentials({}, authorization)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(raw_basic(b":"), id="both-empty"),
        pytest.param(raw_basic(b"ci_x:"), id="empty-secret"),
        pytest.param(raw_basic(b":sk_x"), id="empty-id"),
    ],
)
def test_empty_basic_parts_are_invalid_client_with_basic_challenge(authorization: str) -> None:
    with pytest.raises(InvalidClientError) as info:
        extract_client_credentials({}, authorization)
    assert info.value.headers()["WWW-Authenticate"].startswith("Basic")


# --- each method through the pipeline ---------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "authorization", "method"),
    [
        pytest.param({}, basic(CLIENT_ID, SECRET), BASIC, id="client_secret_basic"),
        pytest.param(post_form(), None, POST, id="client_secret_post"),
        pytest.param({"client_id": "app"}, None, NONE, id="none"),
    ],
)
def test_each_method_authenticates_through_the_pipeline(
    form: dict[str, str], authorization: str | None, method: str
) -> None:
    p = pipeline()
    got = p.authenticate(form, authorization, allow_none=True)
    assert isinstance(got, Authenticated)
    assert got.method == method
    if method == NONE:
        assert got == Authenticated(APP, NONE, None)
        assert (p.public.lookups, p.clients.lookups) == (["app"], [])
        assert p.usage.records == []
    else:
        assert got == Authenticated(make_client(), method, ("secret", SECRET_ID))
        assert got.confidential == make_client()
        assert (p.public.lookups, p.clients.lookups) == ([], [CLIENT_ID])
        assert p.usage.records == [(CLIENT_ID, SECRET_ID, NOW)]
    assert p.failures.records == []


def test_the_registry_holds_the_two_secret_methods() -> None:
    # The assertion methods join it when the server builds its pipeline (they need ports).
    assert set(METHODS) == {BASIC, POST} < set(AUTH_METHODS)
    assert all(method.name == name for name, method in METHODS.items())


def test_a_method_the_endpoint_does_not_offer_is_refused_without_a_lookup() -> None:
    p = pipeline(methods={POST: METHODS[POST]})
    with pytest.raises(InvalidClientError) as info:
        p.authenticate({}, basic(CLIENT_ID, SECRET))
    assert info.value.detail == NO_CREDENTIALS
    assert p.clients.lookups == []
    assert p.authenticate(post_form()).method == POST


class _EveryoneIsBasic:
    """A stand-in method: what a new method (private_key_jwt, ...) plugs into."""

    name: ClassVar[str] = BASIC

    async def verify(
        self, credentials: ClientCredentials, client: ClientRecord | None, now: float
    ) -> Authenticated:
        if client is None:
            raise InvalidClientError(detail=UNKNOWN_CLIENT)
        return Authenticated(client, self.name, ("secret", 99))


def test_verification_is_the_registered_methods() -> None:
    methods: dict[str, ClientAuthMethod] = {BASIC: _EveryoneIsBasic()}
    p = pipeline(methods=methods)
    got = p.authenticate({}, basic(CLIENT_ID, "sk_anything"))
    assert (got.method, got.credential) == (BASIC, ("secret", 99))
    assert p.usage.records == [(CLIENT_ID, 99, NOW)]


def test_then_gets_the_client_and_its_answer_is_returned() -> None:
    p = pipeline()
    seen: list[Authenticated] = []

    async def then(authenticated: Authenticated) -> str:
        seen.append(authenticated)
        return "issued"

    assert p.authenticate(post_form(), then=then) == "issued"
    assert seen == [Authenticated(make_client(), POST, ("secret", SECRET_ID))]


def test_a_public_client_is_not_confidential() -> None:
    with pytest.raises(InvalidClientError):
        _ = Authenticated(APP, NONE).confidential


# --- one method per request -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "authorization", "allow_none"),
    [
        pytest.param(post_form(), basic(CLIENT_ID, SECRET), False, id="basic-and-post"),
        pytest.param(
            {"client_secret": SECRET}, basic(CLIENT_ID, SECRET), False, id="basic-and-secret"
        ),
        pytest.param({"client_id": "app"}, basic(CLIENT_ID, SECRET), True, id="basic-and-none"),
        pytest.param({"client_id": "ci_other"}, basic(CLIENT_ID, SECRET), False, id="two-ids"),
    ],
)
def test_credentials_by_two_methods_are_invalid_request_before_anything_else(
    form: dict[str, str], authorization: str, allow_none: bool
) -> None:
    p = pipeline()
    with pytest.raises(InvalidRequestError):
        p.authenticate(form, authorization, allow_none=allow_none)
    assert p.events == []  # no look at the limits, no lookup
    assert p.failures.records == []


def test_none_is_not_offered_unless_the_endpoint_allows_it() -> None:
    p = pipeline()
    with pytest.raises(InvalidClientError) as info:
        p.authenticate({"client_id": "app"})
    assert info.value.detail == NO_CREDENTIALS
    assert p.public.lookups == []


# --- refusals ---------------------------------------------------------------------------------

OTHER_SECRET = "sk_" + "f" * 64
EXPIRED = make_client(secrets=(stored(SECRET, SECRET_ID, expires_at_ms=int(NOW * 1000)),))
# The secret was deleted; the account holds another.
DELETED = make_client(secrets=(stored(OTHER_SECRET, 2),))

REFUSALS = [
    pytest.param(make_client(), UNKNOWN_ID, SECRET, UNKNOWN_CLIENT, id="unknown-id"),
    pytest.param(make_client(), CLIENT_ID.upper(), SECRET, UNKNOWN_CLIENT, id="id-wrong-case"),
    pytest.param(make_client(), CLIENT_ID, "sk_wrong", WRONG_SECRET, id="wrong-secret"),
    pytest.param(make_client(), CLIENT_ID, SECRET.upper(), WRONG_SECRET, id="secret-wrong-case"),
    pytest.param(EXPIRED, CLIENT_ID, SECRET, WRONG_SECRET, id="expired-secret"),
    pytest.param(DELETED, CLIENT_ID, SECRET, WRONG_SECRET, id="deleted-secret"),
    pytest.param(make_client(secrets=()), CLIENT_ID, SECRET, WRONG_SECRET, id="no-secret-left"),
    pytest.param(make_client(active=False), CLIENT_ID, SECRET, INACTIVE_CLIENT, id="inactive"),
    pytest.param(
        make_client(active=False), CLIENT_ID, "sk_wrong", WRONG_SECRET, id="inactive-wrong-secret"
    ),
]


@pytest.mark.parametrize("method", [BASIC, POST])
@pytest.mark.parametrize(("record", "client_id", "secret", "reason"), REFUSALS)
def test_refusals_are_one_indistinguishable_401_with_a_reason_label(
    record: ClientRecord, client_id: str, secret: str, reason: str, method: str
) -> None:
    p = pipeline(record)
    if method == BASIC:
        form, authorization = {}, basic(client_id, secret)
    else:
        form, authorization = post_form(client_id, secret), None
    with pytest.raises(InvalidClientError) as info:
        p.authenticate(form, authorization)
    error = info.value
    assert error.status_code == 401
    assert error.body() == INVALID_CLIENT_BODY
    assert error.detail == reason
    assert reason in REASONS
    if method == BASIC:
        assert error.headers()["WWW-Authenticate"].startswith("Basic")
    else:
        assert "WWW-Authenticate" not in error.headers()
    assert p.failures.records == [(client_id, reason)]
    assert p.usage.records == []
    assert p.events[-1] == ("conclude", client_id, False)


@pytest.mark.parametrize(
    ("client_id", "looked_up"),
    [
        pytest.param("nope", True, id="unknown-public-client"),
        pytest.param(CLIENT_ID, True, id="confidential-client-naming-itself"),
        pytest.param("a\x00", False, id="nul"),
        pytest.param("app" + "x" * 600, False, id="overlong"),
    ],
)
def test_unknown_public_clients_are_refused(client_id: str, looked_up: bool) -> None:
    p = pipeline()
    with pytest.raises(InvalidClientError) as info:
        p.authenticate({"client_id": client_id}, allow_none=True)
    assert info.value.detail == UNKNOWN_CLIENT
    assert info.value.body() == INVALID_CLIENT_BODY
    assert p.public.lookups == ([client_id] if looked_up else [])
    assert p.clients.lookups == []
    assert p.failures.records == [(client_id, UNKNOWN_CLIENT)]


def test_a_public_client_with_a_secret_is_a_confidential_lookup() -> None:
    p = pipeline()
    with pytest.raises(InvalidClientError) as info:
        p.authenticate(post_form("app", "sk_x"), allow_none=True)
    assert info.value.detail == UNKNOWN_CLIENT
    assert (p.clients.lookups, p.public.lookups) == (["app"], [])


@pytest.mark.parametrize(
    "client_id",
    [
        pytest.param("ci_" + "x" * 600, id="overlong"),
        pytest.param("ci_\x00", id="nul"),
        pytest.param("ci_é", id="non-ascii"),
        pytest.param("ci_ x", id="space"),
    ],
)
def test_ids_that_cannot_be_a_client_are_not_looked_up(client_id: str) -> None:
    p = pipeline()
    with pytest.raises(InvalidClientError) as info:
        p.authenticate(post_form(client_id))
    assert info.value.detail == UNKNOWN_CLIENT
    assert p.clients.lookups == []


def test_a_secret_longer_than_the_limit_is_refused_even_if_its_prefix_matches() -> None:
    long_secret = "sk_" + "a" * 509  # 512 characters, the longest accepted
    p = pipeline(make_client(secrets=(stored(long_secret, 3),)))
    assert p.authenticate(post_form(secret=long_secret)).credential == ("secret", 3)
    with pytest.raises(InvalidClientError) as info:
        p.authenticate(post_form(secret=long_secret + "b"))
    assert info.value.detail == WRONG_SECRET


def test_invalid_client_is_an_oauth_error_with_fixed_text() -> None:
    error = InvalidClientError(detail="anything")
    assert isinstance(error, OAuthError)
    assert error.description == "Invalid client credentials"
    assert "anything" not in str(error.body())


# --- several secrets --------------------------------------------------------------------------

FIVE = tuple(f"sk_{i}" + "0" * 62 for i in range(5))
FIVE_IDS = (11, 12, 13, 14, 15)


@pytest.mark.parametrize("method", [BASIC, POST])
@pytest.mark.parametrize("which", range(5), ids=[f"secret-{i}" for i in range(5)])
def test_each_of_five_secrets_works_and_names_itself(which: int, method: str) -> None:
    record = make_client(secrets=tuple(stored(s, i) for s, i in zip(FIVE, FIVE_IDS, strict=True)))
    p = pipeline(record)
    if method == BASIC:
        got = p.authenticate({}, basic(CLIENT_ID, FIVE[which]))
    else:
        got = p.authenticate(post_form(secret=FIVE[which]))
    assert got == Authenticated(record, method, ("secret", FIVE_IDS[which]))
    assert p.usage.records == [(CLIENT_ID, FIVE_IDS[which], NOW)]


def test_of_five_secrets_an_expired_one_fails_and_the_others_work() -> None:
    secrets = tuple(stored(s, i) for s, i in zip(FIVE, FIVE_IDS, strict=True))
    expired = stored(FIVE[2], FIVE_IDS[2], expires_at_ms=int(NOW * 1000) - 1)
    p = pipeline(make_client(secrets=(*secrets[:2], expired, *secrets[3:])))
    with pytest.raises(InvalidClientError) as info:
        p.authenticate(post_form(secret=FIVE[2]))
    assert info.value.detail == WRONG_SECRET
    assert p.authenticate(post_form(secret=FIVE[3])).credential == ("secret", FIVE_IDS[3])


def test_a_secret_expiring_later_still_works() -> None:
    p = pipeline(make_client(secrets=(stored(SECRET, 5, expires_at_ms=int(NOW * 1000) + 1),)))
    assert p.authenticate(post_form()).credential == ("secret", 5)


# --- constant work ----------------------------------------------------------------------------


def _count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real_hash, real_compare = credentials.hash_secret, hmac.compare_digest

    def spy_hash(secret: str) -> str:
        calls.append("hash")
        return real_hash(secret)

    def spy_compare(a: bytes, b: bytes) -> bool:
        calls.append("compare")
        return real_compare(a, b)

    monkeypatch.setattr(credentials, "hash_secret", spy_hash)
    monkeypatch.setattr(hmac, "compare_digest", spy_compare)  # the module credentials calls
    return calls


@pytest.mark.parametrize(
    ("record", "client_id", "secret"),
    [
        pytest.param(make_client(), CLIENT_ID, SECRET, id="right-secret"),
        pytest.param(make_client(), CLIENT_ID, "sk_wrong", id="wrong-secret"),
        pytest.param(make_client(), UNKNOWN_ID, SECRET, id="unknown-client"),
        pytest.param(make_client(active=False), CLIENT_ID, SECRET, id="inactive"),
        pytest.param(EXPIRED, CLIENT_ID, SECRET, id="expired-secret"),
        pytest.param(make_client(secrets=()), CLIENT_ID, SECRET, id="no-secrets"),
        pytest.param(
            make_client(secrets=tuple(stored(s, i) for s, i in zip(FIVE, FIVE_IDS, strict=True))),
            CLIENT_ID,
            FIVE[0],
            id="five-secrets-first",
        ),
        pytest.param(make_client(), "ci_" + "x" * 600, SECRET, id="overlong-client-id"),
    ],
)
def test_every_outcome_costs_one_hash_and_the_same_compares(
    monkeypatch: pytest.MonkeyPatch, record: ClientRecord, client_id: str, secret: str
) -> None:
    p = pipeline(record)
    calls = _count_hashing(monkeypatch)
    try:
        p.authenticate(post_form(client_id, secret))
    except InvalidClientError:
        pass
    assert calls == ["hash"] + ["compare"] * SECRET_SLOTS


# --- failures and usage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "authorization", "allow_none", "failures", "usage"),
    [
        pytest.param(post_form(), None, False, [], [(CLIENT_ID, SECRET_ID, NOW)], id="post-ok"),
        pytest.param(
            {}, basic(CLIENT_ID, SECRET), False, [], [(CLIENT_ID, SECRET_ID, NOW)], id="basic-ok"
        ),
        pytest.param({"client_id": "app"}, None, True, [], [], id="none-ok"),
        pytest.param(
            post_form(secret="sk_wrong"), None, False, [(CLIENT_ID, WRONG_SECRET)], [], id="wrong"
        ),
        pytest.param(
            post_form(UNKNOWN_ID), None, False, [(UNKNOWN_ID, UNKNOWN_CLIENT)], [], id="unknown"
        ),
        pytest.param({}, None, False, [], [], id="no-credentials-not-counted"),
    ],
)
def test_failures_are_counted_by_reason_and_usage_only_on_success(
    form: dict[str, str],
    authorization: str | None,
    allow_none: bool,
    failures: list[tuple[str, str]],
    usage: list[tuple[str, int, float]],
) -> None:
    p = pipeline()
    try:
        p.authenticate(form, authorization, allow_none=allow_none)
    except InvalidClientError:
        assert not usage
    assert p.failures.records == failures
    assert p.usage.records == usage


def test_an_inactive_client_is_counted_and_its_secret_not_marked_used() -> None:
    p = pipeline(make_client(active=False))
    with pytest.raises(InvalidClientError):
        p.authenticate(post_form())
    assert p.failures.records == [(CLIENT_ID, INACTIVE_CLIENT)]
    assert p.usage.records == []


@pytest.mark.parametrize("step", ["check", "conclude"])
def test_a_rate_limited_request_is_counted_as_rate_limited_and_uses_nothing(step: str) -> None:
    limiter = RecordingLimiter(refuse_check=step == "check", refuse_conclude=step == "conclude")
    p = pipeline(limiter=limiter)
    with pytest.raises(SlowDownError):
        p.authenticate(post_form())
    assert p.failures.records == [(CLIENT_ID, RATE_LIMITED)]
    assert p.usage.records == []


def test_without_a_failure_log_usage_or_limiter_the_pipeline_still_runs() -> None:
    auth = ClientAuthenticator(clients=FakeClientStore([make_client()]))
    request = ClientAuthRequest(post_form(), None, IP)

    async def echo(authenticated: Authenticated) -> Authenticated:
        return authenticated

    assert run(auth.authenticate(request, NOW, echo)).credential == ("secret", SECRET_ID)
    with pytest.raises(InvalidClientError):
        run(auth.authenticate(ClientAuthRequest(post_form(secret="x"), None, IP), NOW, echo))
    with pytest.raises(InvalidClientError) as info:
        run(auth.authenticate(ClientAuthRequest({"client_id": "app"}, None, IP, True), NOW, echo))
    assert info.value.detail == UNKNOWN_CLIENT  # no public clients configured


# --- the limiter's place in the pipeline -----------------------------------------------------


@pytest.mark.parametrize(
    ("form", "allow_none", "events"),
    [
        pytest.param(
            post_form(),
            False,
            [("check", CLIENT_ID), ("lookup", CLIENT_ID), ("conclude", CLIENT_ID, True)],
            id="authenticated",
        ),
        pytest.param(
            post_form(secret="sk_wrong"),
            False,
            [("check", CLIENT_ID), ("lookup", CLIENT_ID), ("conclude", CLIENT_ID, False)],
            id="wrong-secret",
        ),
        pytest.param(
            post_form(UNKNOWN_ID),
            False,
            [("check", UNKNOWN_ID), ("lookup", UNKNOWN_ID), ("conclude", UNKNOWN_ID, False)],
            id="unknown-client",
        ),
        pytest.param(
            {"client_id": "app"},
            True,
            [("check", "app"), ("public-lookup", "app"), ("conclude", "app", True)],
            id="public-client",
        ),
        pytest.param({}, False, [("conclude", None, False)], id="no-credentials"),
    ],
)
def test_check_comes_before_the_lookup_and_conclude_after_the_verification(
    form: dict[str, str], allow_none: bool, events: Events
) -> None:
    p = pipeline()
    try:
        p.authenticate(form, allow_none=allow_none)
    except InvalidClientError:
        pass
    assert p.events == events


def test_a_slow_down_from_check_means_no_lookup() -> None:
    p = pipeline(limiter=RecordingLimiter(refuse_check=True))
    with pytest.raises(SlowDownError) as info:
        p.authenticate(post_form())
    assert info.value.status_code == 429
    assert p.events == [("check", CLIENT_ID)]
    assert p.clients.lookups == []


def test_a_slow_down_from_conclude_refuses_the_right_secret_and_runs_nothing() -> None:
    p = pipeline(limiter=RecordingLimiter(refuse_conclude=True))
    ran: list[Authenticated] = []

    async def then(authenticated: Authenticated) -> None:
        ran.append(authenticated)

    with pytest.raises(SlowDownError):
        p.authenticate(post_form(), then=then)
    assert ran == []
    assert p.events == [("check", CLIENT_ID), ("lookup", CLIENT_ID), ("conclude", CLIENT_ID, True)]


async def _refuse_grant(authenticated: Authenticated) -> None:
    raise UnauthorizedClientError()


async def _grant(authenticated: Authenticated) -> str:
    return "issued"


@pytest.mark.parametrize(
    ("form", "allow_none", "settings", "then", "refunded"),
    [
        pytest.param(post_form(), False, None, _refuse_grant, True, id="grant-fails"),
        pytest.param(post_form(), False, None, _grant, False, id="grant-succeeds"),
        pytest.param(
            post_form(),
            False,
            LimitSettings(issuance_per_client=0),
            _refuse_grant,
            False,
            id="no-issuance-budget",
        ),
        pytest.param(
            {"client_id": "app"}, True, None, _refuse_grant, False, id="public-client-no-budget"
        ),
        pytest.param(
            post_form(secret="sk_wrong"), False, None, _grant, False, id="not-authenticated"
        ),
    ],
)
def test_the_issuance_token_is_refunded_only_when_then_fails_after_taking_it(
    form: dict[str, str],
    allow_none: bool,
    settings: LimitSettings | None,
    then: Callable[[Authenticated], Awaitable[Any]],
    refunded: bool,
) -> None:
    limiter = RecordingLimiter(settings=settings)
    p = pipeline(limiter=limiter)
    try:
        p.authenticate(form, allow_none=allow_none, then=then)
    except OAuthError:
        pass
    assert (("refund", True) in p.events) is refunded
    assert len(limiter.refunds) == (1 if refunded else 0)
    if refunded:
        assert p.events[-1] == ("refund", True)
        assert limiter.refunds[0].issuance  # what conclude took


def test_the_refund_gives_the_issuance_token_back() -> None:
    # One token per minute: a failed grant does not spend it, a successful one does.
    limiter = RecordingLimiter(settings=LimitSettings(issuance_per_client=1))
    p = pipeline(limiter=limiter)
    with pytest.raises(UnauthorizedClientError):
        p.authenticate(post_form(), then=_refuse_grant)
    assert p.authenticate(post_form(), then=_grant) == "issued"
    with pytest.raises(SlowDownError):
        p.authenticate(post_form(), then=_grant)


def test_a_held_back_source_is_refused_before_any_lookup_even_with_the_right_secret() -> None:
    limiter = RecordingLimiter(settings=LimitSettings(failures_per_ip=0, failures_per_client_ip=2))
    p = pipeline(limiter=limiter)
    for _ in range(2):
        with pytest.raises(InvalidClientError):
            p.authenticate(post_form(secret="sk_wrong"))
    assert p.clients.lookups == [CLIENT_ID, CLIENT_ID]
    with pytest.raises(SlowDownError):
        p.authenticate(post_form())
    assert p.clients.lookups == [CLIENT_ID, CLIENT_ID]
    assert p.failures.records[-1] == (CLIENT_ID, RATE_LIMITED)

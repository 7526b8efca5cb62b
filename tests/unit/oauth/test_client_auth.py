"""centrali.oauth.client_auth: client_secret_basic / client_secret_post (RFC 6749 §2.3.1)."""

from __future__ import annotations

import base64
import hmac
from urllib.parse import quote_plus

import pytest

from centrali.oauth import credentials
from centrali.oauth.client_auth import (
    BASIC,
    POST,
    ClientCredentials,
    authenticate_client,
    extract_client_credentials,
)
from centrali.oauth.credentials import hash_secret
from centrali.oauth.errors import InvalidClientError, InvalidRequestError, OAuthError
from centrali.oauth.ports import ClientRecord
from tests.unit.oauth.fakes import CLIENT_ID, SECRET, FakeClientStore, make_client


def basic(client_id: str, secret: str, *, scheme: str = "Basic") -> str:
    """RFC 6749 §2.3.1: each part form-urlencoded, joined by a colon, then base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return f"{scheme} {base64.b64encode(raw).decode()}"


def raw_basic(decoded: bytes) -> str:
    return "Basic " + base64.b64encode(decoded).decode()


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


# --- authenticate_client ----------------------------------------------------------------------


@pytest.mark.parametrize("method", [BASIC, POST])
def test_right_secret_authenticates(method: str) -> None:
    record = make_client()
    store = FakeClientStore([record])
    assert authenticate_client(ClientCredentials(CLIENT_ID, SECRET, method), store) == record
    assert store.lookups == [CLIENT_ID]


REFUSALS = [
    pytest.param(make_client(), CLIENT_ID, "sk_wrong", id="wrong-secret"),
    pytest.param(make_client(), CLIENT_ID, SECRET.upper(), id="secret-wrong-case"),
    pytest.param(make_client(), "ci_unknown0000000000000", SECRET, id="unknown-client"),
    pytest.param(make_client(active=False), CLIENT_ID, SECRET, id="inactive-right-secret"),
    pytest.param(make_client(active=False), CLIENT_ID, "sk_wrong", id="inactive-wrong-secret"),
    pytest.param(make_client(secret_hash=None), CLIENT_ID, SECRET, id="no-stored-hash"),
    pytest.param(make_client(), CLIENT_ID.upper(), SECRET, id="client-id-wrong-case"),
]


@pytest.mark.parametrize("method", [BASIC, POST])
@pytest.mark.parametrize(("record", "client_id", "secret"), REFUSALS)
def test_refused_clients_get_one_indistinguishable_invalid_client(
    record: ClientRecord, client_id: str, secret: str, method: str
) -> None:
    store = FakeClientStore([record])
    with pytest.raises(InvalidClientError) as info:
        authenticate_client(ClientCredentials(client_id, secret, method), store)
    error = info.value
    assert error.status_code == 401
    assert error.body() == {
        "error": "invalid_client",
        "error_description": "Invalid client credentials",
    }
    assert error.detail  # the reason is kept for the log
    if method == BASIC:
        assert error.headers()["WWW-Authenticate"].startswith("Basic")
    else:
        assert "WWW-Authenticate" not in error.headers()


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
    monkeypatch.setattr(hmac, "compare_digest", spy_compare)
    return calls


@pytest.mark.parametrize(
    ("client_id", "secret", "active"),
    [
        pytest.param(CLIENT_ID, SECRET, True, id="right-secret"),
        pytest.param(CLIENT_ID, "sk_wrong", True, id="wrong-secret"),
        pytest.param("ci_unknown0000000000000", SECRET, True, id="unknown-client"),
        pytest.param(CLIENT_ID, SECRET, False, id="inactive"),
        pytest.param("ci_" + "x" * 600, SECRET, True, id="overlong-client-id"),
    ],
)
def test_every_outcome_costs_one_hash_and_one_constant_time_compare(
    monkeypatch: pytest.MonkeyPatch, client_id: str, secret: str, active: bool
) -> None:
    store = FakeClientStore([make_client(active=active)])
    calls = _count_hashing(monkeypatch)
    try:
        authenticate_client(ClientCredentials(client_id, secret, POST), store)
    except InvalidClientError:
        pass
    assert calls == ["hash", "compare"]


def test_overlong_client_id_is_not_looked_up() -> None:
    store = FakeClientStore([make_client()])
    with pytest.raises(InvalidClientError):
        authenticate_client(ClientCredentials("ci_" + "x" * 600, SECRET, POST), store)
    assert store.lookups == []


def test_secret_longer_than_the_limit_is_refused_even_if_its_prefix_matches() -> None:
    long_secret = "sk_" + "a" * 509  # 512 characters, the longest accepted
    store = FakeClientStore([make_client(secret_hash=hash_secret(long_secret))])
    assert authenticate_client(ClientCredentials(CLIENT_ID, long_secret, POST), store)
    with pytest.raises(InvalidClientError):
        authenticate_client(ClientCredentials(CLIENT_ID, long_secret + "b", POST), store)


def test_invalid_client_is_an_oauth_error_with_fixed_text() -> None:
    error = InvalidClientError(detail="anything")
    assert isinstance(error, OAuthError)
    assert error.description == "Invalid client credentials"
    assert "anything" not in str(error.body())

"""oauth.client_assertions through the pipeline: private_key_jwt (RFC 7523 §2.2) and
federated workload tokens, with dict-backed fakes and keys made here."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from centrali.oauth.client_assertions import IssuerUnavailableError, assertion_methods
from centrali.oauth.client_auth import (
    BAD_ASSERTION,
    BAD_SIGNATURE,
    EXPIRED_ASSERTION,
    FEDERATED_JWT,
    INACTIVE_CLIENT,
    JWT_BEARER,
    METHODS,
    PRIVATE_KEY_JWT,
    REPLAYED_ASSERTION,
    UNKNOWN_CLIENT,
    UNKNOWN_ISSUER,
    Authenticated,
    ClientAuthenticator,
    ClientAuthRequest,
)
from centrali.oauth.errors import InvalidClientError, InvalidRequestError
from centrali.oauth.ports import ClientKey, FederatedCredential
from tests.unit.oauth.fakes import (
    CLIENT_ID,
    IP,
    ISSUER,
    NOW,
    FakeClientStore,
    FakeCredentialUsage,
    FakeFailureLog,
    make_client,
)

TOKEN_URL = f"{ISSUER}/oidc/token"
CI_ISSUER = "https://token.actions.example"
CI_SUBJECT = "repo:acme/api:ref:refs/heads/main"


def _public_jwk(private: Any) -> dict[str, Any]:
    public = private.public_key()
    for algorithm in (RSAAlgorithm, ECAlgorithm, OKPAlgorithm):
        try:
            return dict(json.loads(algorithm.to_jwk(public)))
        except Exception:  # not this kind of key
            continue
    raise AssertionError("no JWK for this key")


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEYS = {
    "RS256": (RSA_KEY, ClientKey(11, "rsa-1", "RS256", _public_jwk(RSA_KEY))),
    "PS256": (RSA_KEY, ClientKey(12, "rsa-ps", "PS256", _public_jwk(RSA_KEY))),
    "ES256": (EC_KEY, ClientKey(13, "ec-1", "ES256", _public_jwk(EC_KEY))),
    "EdDSA": (ED_KEY, ClientKey(14, "ed-1", "EdDSA", _public_jwk(ED_KEY))),
}
ISSUER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER_JWK = {**_public_jwk(ISSUER_KEY), "kid": "ci-key-1", "use": "sig"}
FEDERATED = FederatedCredential(21, CI_ISSUER, CI_SUBJECT, ISSUER)


class FakeReplay:
    def __init__(self) -> None:
        self.used: dict[str, float] = {}

    async def use_once(self, key: str, expires_at: float) -> bool:
        if key in self.used:
            return False
        self.used[key] = expires_at
        return True


class FakeIssuerKeys:
    def __init__(self, keys: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.keys = {CI_ISSUER: {ISSUER_JWK["kid"]: ISSUER_JWK}} if keys is None else keys
        self.down = False
        self.asked: list[tuple[str, str | None]] = []

    async def find_key(self, issuer: str, kid: str | None) -> Mapping[str, Any] | None:
        self.asked.append((issuer, kid))
        if self.down:
            raise IssuerUnavailableError(retry_after=7)
        return self.keys.get(issuer, {}).get(kid or "")


def client(**overrides: Any) -> Any:
    base = {
        "keys": tuple(key for _, key in KEYS.values()),
        "federated": (FEDERATED,),
        "secrets": (),
    }
    return make_client(**{**base, **overrides})


def pipeline(record: Any = None, *, issuer_keys: FakeIssuerKeys | None = None) -> Any:
    replay = FakeReplay()
    keys = issuer_keys or FakeIssuerKeys()
    auth = ClientAuthenticator(
        clients=FakeClientStore([record if record is not None else client()]),
        failures=FakeFailureLog(),
        usage=FakeCredentialUsage(),
        methods={
            **METHODS,
            **assertion_methods(
                issuer=ISSUER, token_endpoint=TOKEN_URL, replay=replay, issuer_keys=keys
            ),
        },
    )
    auth.replay = replay  # for the tests' eyes
    auth.issuer_keys = keys
    return auth


async def _echo(authenticated: Authenticated) -> Authenticated:
    return authenticated


def authenticate(auth: Any, form: dict[str, str], now: float = NOW) -> Authenticated:
    request = ClientAuthRequest(form=form, authorization=None, ip=IP)
    result: Authenticated = asyncio.run(auth.authenticate(request, now, _echo))
    return result


def reason_of(auth: Any, form: dict[str, str], now: float = NOW) -> str:
    with pytest.raises(InvalidClientError) as info:
        authenticate(auth, form, now)
    assert info.value.body() == {
        "error": "invalid_client",
        "error_description": "Invalid client credentials",
    }
    return str(info.value.detail)


def own_assertion(
    alg: str = "RS256",
    *,
    key: Any = None,
    kid: str | None | bool = True,
    now: float = NOW,
    **claims: Any,
) -> str:
    """An assertion of the client signed with its ``alg`` key (``kid``: True = the key's)."""
    private, registered = KEYS[alg]
    body = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": TOKEN_URL,
        "iat": int(now),
        "exp": int(now) + 300,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    headers = {} if kid is None or kid is False else {"kid": registered.kid if kid is True else kid}
    return jwt.encode(body, key or private, algorithm=alg, headers=headers)


def form(assertion: str, client_id: str | None = None) -> dict[str, str]:
    body = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
    }
    if client_id is not None:
        body["client_id"] = client_id
    return body


# --- private_key_jwt -------------------------------------------------------------------------


@pytest.mark.parametrize("alg", list(KEYS))
def test_each_key_type_authenticates(alg: str) -> None:
    auth = pipeline()
    got = authenticate(auth, form(own_assertion(alg)))
    assert (got.method, got.credential) == (PRIVATE_KEY_JWT, ("key", KEYS[alg][1].id))
    assert auth.usage.records == [(CLIENT_ID, KEYS[alg][1].id, NOW)]
    assert auth.usage.kinds == ["key"]


@pytest.mark.parametrize(
    "audience", [pytest.param(TOKEN_URL, id="token-url"), pytest.param(ISSUER, id="issuer")]
)
def test_audience_is_the_token_endpoint_or_the_issuer(audience: str) -> None:
    got = authenticate(pipeline(), form(own_assertion(aud=audience), client_id=CLIENT_ID))
    assert got.method == PRIVATE_KEY_JWT


def test_without_kid_every_key_of_the_algorithm_is_tried() -> None:
    other = ClientKey(30, "other", "RS256", _public_jwk(OTHER_RSA))
    record = client(keys=(other, KEYS["RS256"][1]))
    got = authenticate(pipeline(record), form(own_assertion(kid=None)))
    assert got.credential == ("key", KEYS["RS256"][1].id)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(lambda: own_assertion(key=OTHER_RSA), BAD_SIGNATURE, id="another-key"),
        pytest.param(lambda: own_assertion(kid="unknown"), BAD_SIGNATURE, id="unknown-kid"),
        pytest.param(lambda: own_assertion(aud="https://elsewhere"), BAD_ASSERTION, id="aud"),
        pytest.param(lambda: own_assertion(aud=None), BAD_ASSERTION, id="no-aud"),
        pytest.param(lambda: own_assertion(jti=None), BAD_ASSERTION, id="no-jti"),
        pytest.param(lambda: own_assertion(jti=""), BAD_ASSERTION, id="empty-jti"),
        pytest.param(lambda: own_assertion(exp=None), BAD_ASSERTION, id="no-exp"),
        pytest.param(lambda: own_assertion(exp=int(NOW) - 61), EXPIRED_ASSERTION, id="expired"),
        pytest.param(lambda: own_assertion(exp=int(NOW) + 661), EXPIRED_ASSERTION, id="too-long"),
        pytest.param(lambda: own_assertion(iat=int(NOW) + 61), EXPIRED_ASSERTION, id="iat-ahead"),
        pytest.param(lambda: own_assertion(nbf=int(NOW) + 61), EXPIRED_ASSERTION, id="nbf-ahead"),
    ],
)
def test_a_bad_assertion_is_invalid_client(make: Any, reason: str) -> None:
    auth = pipeline()
    assert reason_of(auth, form(make())) == reason
    assert auth.usage.records == []
    assert auth.failures.records[-1][1] == reason


def test_sixty_seconds_of_skew_either_way() -> None:
    auth = pipeline()
    authenticate(auth, form(own_assertion(exp=int(NOW) - 59)))
    authenticate(auth, form(own_assertion(exp=int(NOW) + 659, iat=int(NOW) + 59)))


def test_a_jti_is_used_once() -> None:
    auth = pipeline()
    assertion = own_assertion()
    authenticate(auth, form(assertion))
    assert reason_of(auth, form(assertion)) == REPLAYED_ASSERTION


def test_the_algorithm_must_be_the_keys() -> None:
    """An RS256 key does not verify a PS256 signature of the same RSA key, and a key
    registered for PS256 is never tried for RS256."""
    only_ps = client(keys=(KEYS["PS256"][1],))
    assert reason_of(pipeline(only_ps), form(own_assertion("RS256", kid="rsa-ps"))) == (
        BAD_SIGNATURE
    )


def _hand_signed(alg: str, body: dict[str, Any], secret: bytes) -> str:
    """A JWS made by hand (PyJWT refuses to sign with a public key as an HMAC secret)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    signing_input = f"{head}.{part(json.dumps(body).encode())}"
    if alg == "none":
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(mac)}"


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_hmac_and_none_are_never_accepted(alg: str) -> None:
    body = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": TOKEN_URL, "exp": int(NOW) + 60, "jti": "x"}
    # The classic confusion: the public key as an HMAC secret.
    public_pem = (
        KEYS["RS256"][0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert reason_of(pipeline(), form(_hand_signed(alg, body, public_pem))) == BAD_ASSERTION


def test_an_expired_key_no_longer_verifies() -> None:
    expired = replace(KEYS["RS256"][1], expires_at_ms=int(NOW * 1000))
    assert reason_of(pipeline(client(keys=(expired,))), form(own_assertion())) == BAD_SIGNATURE


def test_unknown_client_and_inactive_client() -> None:
    stranger = own_assertion(iss="ci_nobody00000000000000", sub="ci_nobody00000000000000")
    assert reason_of(pipeline(), form(stranger)) == UNKNOWN_CLIENT
    assert reason_of(pipeline(client(active=False)), form(own_assertion())) == INACTIVE_CLIENT


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        pytest.param({"client_id": "ci_other"}, InvalidClientError, id="client-id-differs"),
        pytest.param({"client_secret": "sk_x"}, InvalidRequestError, id="with-a-secret-too"),
        pytest.param({"client_assertion_type": "urn:x"}, InvalidClientError, id="wrong-type"),
        pytest.param({"client_assertion": "not.a.jwt"}, InvalidClientError, id="garbage"),
    ],
)
def test_malformed_assertion_requests(fields: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        authenticate(pipeline(), {**form(own_assertion()), **fields})


# --- federated ---------------------------------------------------------------------------------


def workload_token(
    *, key: Any = ISSUER_KEY, kid: str | None = "ci-key-1", alg: str = "RS256", **claims: Any
) -> str:
    body = {
        "iss": CI_ISSUER,
        "sub": CI_SUBJECT,
        "aud": ISSUER,
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 300,
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else {})


def test_a_workload_token_stands_for_the_client_and_may_be_reused() -> None:
    auth = pipeline()
    token = workload_token()
    for _ in range(2):  # no jti single use: workloads reuse their token
        got = authenticate(auth, form(token, client_id=CLIENT_ID))
        assert (got.method, got.credential) == (FEDERATED_JWT, ("federated", FEDERATED.id))
    assert auth.issuer_keys.asked == [(CI_ISSUER, "ci-key-1")] * 2
    assert auth.usage.kinds == ["federated", "federated"]


def test_audience_may_be_a_list_holding_the_credentials() -> None:
    token = workload_token(aud=["https://other", ISSUER])
    assert authenticate(pipeline(), form(token, CLIENT_ID)).method == FEDERATED_JWT


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(
            lambda: workload_token(sub="repo:acme/api:pull_request"), UNKNOWN_ISSUER, id="sub"
        ),
        pytest.param(lambda: workload_token(iss="https://evil.example"), UNKNOWN_ISSUER, id="iss"),
        pytest.param(lambda: workload_token(aud="https://other"), BAD_ASSERTION, id="aud"),
        pytest.param(lambda: workload_token(key=OTHER_RSA), BAD_SIGNATURE, id="forged"),
        pytest.param(lambda: workload_token(kid="rotated-away"), BAD_SIGNATURE, id="unknown-kid"),
        pytest.param(lambda: workload_token(exp=int(NOW) - 1), EXPIRED_ASSERTION, id="expired"),
        pytest.param(lambda: workload_token(nbf=int(NOW) + 61), EXPIRED_ASSERTION, id="nbf"),
        pytest.param(lambda: workload_token(exp=None), BAD_ASSERTION, id="no-exp"),
    ],
)
def test_a_bad_workload_token_is_invalid_client(token: Any, reason: str) -> None:
    assert reason_of(pipeline(), form(token(), CLIENT_ID)) == reason


def test_a_symmetric_workload_token_is_refused_before_any_fetch() -> None:
    auth = pipeline()
    token = jwt.encode(
        {"iss": CI_ISSUER, "sub": CI_SUBJECT, "aud": ISSUER, "exp": int(NOW) + 60},
        "a-shared-secret-that-is-long-enough-0123456789",
        algorithm="HS256",
    )
    assert reason_of(auth, form(token, CLIENT_ID)) == BAD_ASSERTION
    assert auth.issuer_keys.asked == []


def test_a_workload_token_needs_the_client_id() -> None:
    with pytest.raises(InvalidClientError):
        authenticate(pipeline(), form(workload_token()))


def test_an_expired_federated_credential_trusts_nothing() -> None:
    expired = replace(FEDERATED, expires_at_ms=int(NOW * 1000) - 1)
    record = client(federated=(expired,))
    assert reason_of(pipeline(record), form(workload_token(), CLIENT_ID)) == UNKNOWN_ISSUER


def test_an_unreachable_issuer_is_503_not_401_and_counts_nothing() -> None:
    keys = FakeIssuerKeys()
    keys.down = True
    auth = pipeline(issuer_keys=keys)
    with pytest.raises(IssuerUnavailableError) as info:
        authenticate(auth, form(workload_token(), CLIENT_ID))
    assert info.value.status_code == 503
    assert info.value.headers() == {"Retry-After": "7"}
    assert info.value.body()["error"] == "temporarily_unavailable"

"""``centrali.verify`` (issue 3, part 5) against a fake issuer served by httpx's MockTransport:
discovery, the JWKS cache, the rate-limited refetch on an unknown ``kid``, key rotation, the
refusals our API makes, and the FastAPI dependency.

Keys and JWKS come from ``centrali.oauth.keys``; time for the cache is a fake clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm

from centrali.oauth.keys import KeySet, SigningKey, generate_private_key_pem, load_signing_key
from centrali.oauth.tokens import TokenSubject, issue_access_token
from centrali.verify import (
    InvalidTokenError,
    TokenError,
    TokenExpiredError,
    TokenVerifier,
    VerifiedToken,
    WrongWorkspaceError,
    require_token,
)

ISSUER = "https://auth.centrali.test"
DISCOVERY_URL = f"{ISSUER}/.well-known/openid-configuration"
JWKS_URL = f"{ISSUER}/oidc/jwks"
WS = "acme-corp"
CLIENT_ID = "ci_a1b2c3d4e5f6g7h8i9j0"
SERVICE_ACCOUNT = TokenSubject(CLIENT_ID, CLIENT_ID, WS, True, ("api-users",), "openid")
USER = TokenSubject("user-1", "centrali-cli", WS, False, ("workspace-admins",), "openid")
UNAUTHORIZED = {"error": "unauthorized", "message": "Unauthorized"}


# --- keys, tokens and a fake issuer --------------------------------------------------------


@pytest.fixture(scope="module")
def key_a() -> SigningKey:
    return load_signing_key(generate_private_key_pem())


@pytest.fixture(scope="module")
def key_b() -> SigningKey:
    """The key a rotation brings in."""
    return load_signing_key(generate_private_key_pem())


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    """A P-256 key, as a server with CENTRALI_SIGNING_ALG=ES256 signs with."""
    return load_signing_key(generate_private_key_pem("ES256"), "ES256")


@pytest.fixture(scope="module")
def ed_key() -> SigningKey:
    """An Ed25519 key, as a server with CENTRALI_SIGNING_ALG=EdDSA signs with."""
    return load_signing_key(generate_private_key_pem("EdDSA"), "EdDSA")


@pytest.fixture(scope="module")
def stranger() -> SigningKey:
    """Nobody's key: never in the JWKS."""
    return load_signing_key(generate_private_key_pem())


def issue(
    key: SigningKey,
    who: TokenSubject = SERVICE_ACCOUNT,
    *,
    ttl: int = 25200,
    now: float | None = None,
    audience: str = ISSUER,
) -> str:
    return issue_access_token(
        who,
        keys=KeySet.of(key),
        issuer=ISSUER,
        audience=audience,
        ttl=ttl,
        now=time.time() if now is None else now,
    ).token


def claims(**changes: Any) -> dict[str, Any]:
    """Valid access-token claims with ``changes`` (None removes a claim)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": CLIENT_ID,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 600,
        "jti": "j1",
        "client_id": CLIENT_ID,
        "scope": "openid",
        "workspace": WS,
        "isServiceAccount": "true",
        "groups": ["api-users"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: SigningKey, body: dict[str, Any], **header: Any) -> str:
    headers = {"kid": key.kid, "typ": "at+jwt", **header}
    return jwt.encode(
        body, key.private_key, algorithm="RS256", headers={k: v for k, v in headers.items() if v}
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


def alg_none(key: SigningKey) -> str:
    return f"{segment({'alg': 'none', 'typ': 'at+jwt', 'kid': key.kid})}.{segment(claims())}."


def hs256_with_public_key(key: SigningKey) -> str:
    """Key confusion: an HMAC keyed with the public key the JWKS publishes."""
    pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = (
        f"{segment({'alg': 'HS256', 'typ': 'at+jwt', 'kid': key.kid})}.{segment(claims())}"
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def tampered(key: SigningKey) -> str:
    header, _payload, signature = issue(key).split(".")
    return f"{header}.{segment(claims(workspace='evil-corp'))}.{signature}"


class FakeIssuer:
    """Discovery and a JWKS (from ``keys``, changeable) behind a MockTransport; logs paths."""

    def __init__(self, keys: KeySet, *, delay: float = 0.0) -> None:
        self.keys = keys
        self.extra_jwks: list[dict[str, Any]] = []
        self.delay = delay
        self.down = False
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.paths.append(request.url.path)
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise httpx.ConnectError("connection refused")
        if str(request.url) == DISCOVERY_URL:
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": JWKS_URL})
        if str(request.url) == JWKS_URL:
            jwks = self.keys.jwks()
            return httpx.Response(200, json={"keys": jwks["keys"] + self.extra_jwks})
        return httpx.Response(404, json={"error": "not_found"})

    @property
    def jwks_fetches(self) -> int:
        return self.paths.count("/oidc/jwks")

    def verifier(self, **kwargs: Any) -> TokenVerifier:
        http = httpx.Client(transport=httpx.MockTransport(self.handle))
        return TokenVerifier(ISSUER, http_client=http, **kwargs)


class Clock:
    def __init__(self, start: float = 5000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def issuer(key_a: SigningKey) -> FakeIssuer:
    return FakeIssuer(KeySet.of(key_a))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("centrali.verify.time.monotonic", fake)
    return fake


# --- good tokens ---------------------------------------------------------------------------


def test_verifies_a_service_account_token(issuer: FakeIssuer, key_a: SigningKey) -> None:
    verified = issuer.verifier().verify(issue(key_a), workspace=WS)
    assert isinstance(verified, VerifiedToken)
    assert verified.subject == CLIENT_ID
    assert verified.client_id == CLIENT_ID
    assert verified.workspace == WS
    assert verified.is_service_account is True
    assert verified.groups == ("api-users",)
    assert verified.expires_at - verified.issued_at == 25200


def test_verifies_a_user_token(issuer: FakeIssuer, key_a: SigningKey) -> None:
    verified = issuer.verifier().verify(issue(key_a, USER))
    assert (verified.subject, verified.is_service_account) == ("user-1", False)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_verifies_es256_and_eddsa_tokens_beside_the_rsa_key(
    key_a: SigningKey, ec_key: SigningKey, ed_key: SigningKey, alg: str
) -> None:
    # CENTRALI_SIGNING_ALG=ES256|EdDSA: the new key signs, the RSA key stays published.
    fast = {"ES256": ec_key, "EdDSA": ed_key}[alg]
    issuer = FakeIssuer(KeySet.of(fast, [key_a]))
    verifier = issuer.verifier()
    token = issue(fast)
    assert jwt.get_unverified_header(token)["alg"] == alg
    verified = verifier.verify(token, workspace=WS)
    assert (verified.subject, verified.workspace) == (CLIENT_ID, WS)
    assert verifier.verify(issue(key_a), workspace=WS).subject == CLIENT_ID
    assert issuer.jwks_fetches == 1


def test_each_key_verifies_only_its_own_algorithm(
    key_a: SigningKey, ec_key: SigningKey, ed_key: SigningKey
) -> None:
    verifier = FakeIssuer(KeySet.of(ec_key, [key_a, ed_key])).verifier()
    body = segment(claims())
    for key, claimed in [
        (ec_key, "RS256"), (ec_key, "EdDSA"), (ec_key, "HS256"), (ec_key, "ES384"),
        (ed_key, "ES256"), (ed_key, "RS256"), (key_a, "ES256"), (key_a, "PS256"),
    ]:  # fmt: skip
        # A token whose header names another algorithm than the key's is refused before
        # any signature check, whatever its signature.
        genuine = issue(key)
        forged_header = segment({"alg": claimed, "typ": "at+jwt", "kid": key.kid})
        forged = f"{forged_header}.{body}.{genuine.split('.')[2]}"
        with pytest.raises(InvalidTokenError):
            verifier.verify(forged, workspace=WS)
    # An EC key's kid on a token signed with the RSA key: refused.
    with pytest.raises(InvalidTokenError):
        verifier.verify(sign(key_a, claims(), kid=ec_key.kid), workspace=WS)


def test_jwks_entries_we_cannot_trust_are_ignored(key_a: SigningKey, ec_key: SigningKey) -> None:
    p384 = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True)
    issuer = FakeIssuer(KeySet.of(key_a))
    issuer.extra_jwks = [
        {**ec_key.public_jwk, "alg": "RS256"},  # a P-256 key claiming another algorithm
        {**p384, "kid": "p384", "alg": "ES384"},  # a curve we never sign with
        {"kty": "oct", "kid": "hmac", "k": b64(b"secret"), "alg": "HS256"},
        {"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": b64(bytes(32))},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        "not-a-jwk",
    ]
    verifier = issuer.verifier()
    assert verifier.verify(issue(key_a), workspace=WS).subject == CLIENT_ID  # the rest loads
    with pytest.raises(InvalidTokenError):
        verifier.verify(issue(ec_key), workspace=WS)


def test_discovers_the_jwks_from_the_issuer(issuer: FakeIssuer, key_a: SigningKey) -> None:
    TokenVerifier(ISSUER + "/", http_client=httpx.Client(
        transport=httpx.MockTransport(issuer.handle)
    )).verify(issue(key_a))  # fmt: skip
    assert issuer.paths == ["/.well-known/openid-configuration", "/oidc/jwks"]


def test_given_jwks_url_skips_discovery(issuer: FakeIssuer, key_a: SigningKey) -> None:
    issuer.verifier(jwks_url=JWKS_URL).verify(issue(key_a))
    assert issuer.paths == ["/oidc/jwks"]


def test_audience_defaults_to_the_issuer_and_can_be_set(
    issuer: FakeIssuer, key_a: SigningKey
) -> None:
    token = issue(key_a, audience="https://orders.example")
    with pytest.raises(InvalidTokenError):
        issuer.verifier().verify(token)
    assert issuer.verifier(audience="https://orders.example").verify(token).subject == CLIENT_ID


def test_leeway_accepts_a_just_expired_token(issuer: FakeIssuer, key_a: SigningKey) -> None:
    token = issue(key_a, ttl=60, now=time.time() - 65)
    with pytest.raises(TokenExpiredError):
        issuer.verifier().verify(token)
    assert issuer.verifier(leeway=30).verify(token).subject == CLIENT_ID


# --- refusals ------------------------------------------------------------------------------


def test_expired_token_raises_token_expired_error(issuer: FakeIssuer, key_a: SigningKey) -> None:
    token = issue(key_a, ttl=60, now=time.time() - 3600)
    with pytest.raises(TokenExpiredError):
        issuer.verifier().verify(token, workspace=WS)


def test_other_workspace_raises_wrong_workspace_error(
    issuer: FakeIssuer, key_a: SigningKey
) -> None:
    verifier = issuer.verifier()
    token = issue(key_a)
    with pytest.raises(WrongWorkspaceError) as caught:
        verifier.verify(token, workspace="globex")
    assert isinstance(caught.value, TokenError)
    assert verifier.verify(token, workspace=WS).workspace == WS


REFUSED: list[Any] = [
    pytest.param(alg_none, id="alg-none"),
    pytest.param(hs256_with_public_key, id="hs256-keyed-with-public-key"),
    pytest.param(tampered, id="tampered-payload"),
    pytest.param(lambda key: issue(key)[:-6] + "AAAAAA", id="tampered-signature"),
    pytest.param(lambda key: issue(key).rsplit(".", 1)[0] + ".", id="signature-stripped"),
    pytest.param(lambda key: "not-a-jwt", id="garbage"),
    pytest.param(lambda key: "", id="empty"),
    pytest.param(lambda key: sign(key, claims(), typ="JWT"), id="typ-JWT"),
    pytest.param(lambda key: sign(key, claims(iss="https://evil.example")), id="wrong-iss"),
    pytest.param(lambda key: sign(key, claims(aud="https://other.example")), id="wrong-aud"),
    pytest.param(lambda key: sign(key, claims(workspace=None)), id="no-workspace"),
    pytest.param(lambda key: sign(key, claims(isServiceAccount=None)), id="no-isServiceAccount"),
    pytest.param(lambda key: sign(key, claims(exp=None)), id="no-exp"),
    pytest.param(lambda key: sign(key, claims(), kid=None), id="no-kid"),
]


@pytest.mark.parametrize("make_token", REFUSED)
def test_forged_or_malformed_tokens_raise_invalid_token_error(
    issuer: FakeIssuer, key_a: SigningKey, make_token: Callable[[SigningKey], str]
) -> None:
    with pytest.raises(InvalidTokenError):
        issuer.verifier().verify(make_token(key_a), workspace=WS)


def test_token_of_a_key_not_in_the_jwks_is_refused(
    issuer: FakeIssuer, key_a: SigningKey, stranger: SigningKey
) -> None:
    verifier = issuer.verifier()
    with pytest.raises(InvalidTokenError):
        verifier.verify(issue(stranger))
    with pytest.raises(InvalidTokenError):  # signed by a stranger, claiming our kid
        verifier.verify(sign(stranger, claims(), kid=key_a.kid))


def test_a_jwk_not_meant_for_signatures_is_not_used(
    issuer: FakeIssuer, key_a: SigningKey, stranger: SigningKey
) -> None:
    issuer.extra_jwks = [{**stranger.public_jwk, "use": "enc"}]
    with pytest.raises(InvalidTokenError):
        issuer.verifier().verify(issue(stranger))


def test_unreachable_issuer_refuses_tokens_without_leaking_httpx_errors(
    issuer: FakeIssuer, key_a: SigningKey
) -> None:
    issuer.down = True
    with pytest.raises(InvalidTokenError):
        issuer.verifier().verify(issue(key_a))


def test_jwks_server_error_refuses_tokens(key_a: SigningKey) -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(500)))
    with pytest.raises(InvalidTokenError):
        TokenVerifier(ISSUER, http_client=http).verify(issue(key_a))


# --- the JWKS cache ------------------------------------------------------------------------


def test_jwks_is_fetched_once_and_cached(issuer: FakeIssuer, key_a: SigningKey) -> None:
    verifier = issuer.verifier()
    for _ in range(5):
        verifier.verify(issue(key_a))
    assert issuer.paths == ["/.well-known/openid-configuration", "/oidc/jwks"]


def test_jwks_is_refetched_after_cache_seconds(
    issuer: FakeIssuer, key_a: SigningKey, clock: Clock
) -> None:
    verifier = issuer.verifier(cache_seconds=300)
    verifier.verify(issue(key_a))
    clock.advance(299)
    verifier.verify(issue(key_a))
    assert issuer.jwks_fetches == 1
    clock.advance(2)
    verifier.verify(issue(key_a))
    assert issuer.jwks_fetches == 2
    assert issuer.paths.count("/.well-known/openid-configuration") == 1  # discovery once


def test_cached_keys_serve_while_the_issuer_is_down(
    issuer: FakeIssuer, key_a: SigningKey, clock: Clock
) -> None:
    verifier = issuer.verifier(cache_seconds=300)
    verifier.verify(issue(key_a))
    issuer.down = True
    clock.advance(301)
    assert verifier.verify(issue(key_a)).subject == CLIENT_ID


def test_threads_on_a_cold_cache_fetch_the_jwks_once(key_a: SigningKey) -> None:
    issuer = FakeIssuer(KeySet.of(key_a), delay=0.02)
    verifier = issuer.verifier()
    token = issue(key_a)
    start = threading.Barrier(20)
    results: list[str] = []

    def check() -> None:
        start.wait(timeout=5)
        results.append(verifier.verify(token).subject)

    threads = [threading.Thread(target=check) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == [CLIENT_ID] * 20
    assert issuer.jwks_fetches == 1


def test_unknown_kid_triggers_one_refetch(
    issuer: FakeIssuer, key_a: SigningKey, stranger: SigningKey, clock: Clock
) -> None:
    verifier = issuer.verifier(min_refetch_interval=30)
    verifier.verify(issue(key_a))
    clock.advance(60)
    with pytest.raises(InvalidTokenError):
        verifier.verify(issue(stranger))
    assert issuer.jwks_fetches == 2


def test_unknown_kid_refetch_is_rate_limited(
    issuer: FakeIssuer, key_a: SigningKey, stranger: SigningKey, clock: Clock
) -> None:
    verifier = issuer.verifier(min_refetch_interval=30)
    verifier.verify(issue(key_a))
    clock.advance(60)
    for _ in range(2):  # two unknown-kid tokens within the interval: one refetch
        with pytest.raises(InvalidTokenError):
            verifier.verify(issue(stranger))
        clock.advance(10)
    assert issuer.jwks_fetches == 2
    clock.advance(30)  # the interval has passed: one more is allowed
    with pytest.raises(InvalidTokenError):
        verifier.verify(issue(stranger))
    assert issuer.jwks_fetches == 3


def test_key_rotation_new_kid_is_picked_up_after_a_refetch(
    issuer: FakeIssuer, key_a: SigningKey, key_b: SigningKey, clock: Clock
) -> None:
    verifier = issuer.verifier(min_refetch_interval=30)
    old_token = issue(key_a)
    assert verifier.verify(old_token).subject == CLIENT_ID
    # The server rotates: B signs from now on, A stays published for its tokens.
    issuer.keys = KeySet.of(key_b, [key_a])
    clock.advance(60)
    new_token = issue(key_b)
    assert key_b.kid != key_a.kid
    assert verifier.verify(new_token).subject == CLIENT_ID
    assert issuer.jwks_fetches == 2
    assert verifier.verify(old_token).subject == CLIENT_ID
    assert verifier.verify(new_token).subject == CLIENT_ID
    assert issuer.jwks_fetches == 2  # both kids known now: no more fetches


def test_rotation_within_the_refetch_interval_waits_for_the_interval(
    issuer: FakeIssuer, key_a: SigningKey, key_b: SigningKey, clock: Clock
) -> None:
    verifier = issuer.verifier(min_refetch_interval=30)
    verifier.verify(issue(key_a))
    issuer.keys = KeySet.of(key_b, [key_a])
    clock.advance(5)
    with pytest.raises(InvalidTokenError):
        verifier.verify(issue(key_b))
    assert issuer.jwks_fetches == 1
    clock.advance(30)
    assert verifier.verify(issue(key_b)).subject == CLIENT_ID
    assert issuer.jwks_fetches == 2


def test_retired_key_is_refused_once_the_jwks_is_refreshed(
    issuer: FakeIssuer, key_a: SigningKey, key_b: SigningKey, clock: Clock
) -> None:
    verifier = issuer.verifier(cache_seconds=300)
    token_a = issue(key_a)
    verifier.verify(token_a)
    issuer.keys = KeySet.of(key_b)  # A retired
    clock.advance(301)
    with pytest.raises(InvalidTokenError):
        verifier.verify(token_a)


# --- the FastAPI dependency ----------------------------------------------------------------


@pytest.fixture
def orders(issuer: FakeIssuer) -> TestClient:
    app = FastAPI()
    verified = require_token(issuer.verifier(), workspace=WS)

    @app.get("/orders")
    def list_orders(token: VerifiedToken = Depends(verified)) -> dict[str, Any]:  # noqa: B008
        return {"caller": token.subject, "orders": []}

    return TestClient(app)


def error_body(response: Any) -> Any:
    """The Centrali error body, unwrapped from FastAPI's ``{"detail": ...}`` if need be."""
    body = response.json()
    return body.get("detail", body) if isinstance(body, dict) else body


def test_dependency_lets_a_good_token_through(orders: TestClient, key_a: SigningKey) -> None:
    r = orders.get("/orders", headers={"Authorization": f"Bearer {issue(key_a)}"})
    assert r.status_code == 200
    assert r.json() == {"caller": CLIENT_ID, "orders": []}


def test_dependency_accepts_a_lowercase_scheme(orders: TestClient, key_a: SigningKey) -> None:
    # RFC 7235 §2.1: the auth scheme is case-insensitive.
    r = orders.get("/orders", headers={"Authorization": f"bearer {issue(key_a)}"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer not-a-jwt"],
    ids=["missing", "empty", "scheme-only", "scheme-space", "basic", "other-scheme", "garbage"],
)
def test_dependency_answers_401_unauthorized(orders: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = orders.get("/orders", headers=headers)
    assert r.status_code == 401
    assert error_body(r) == UNAUTHORIZED
    assert r.headers["www-authenticate"].lower().startswith("bearer")


def test_dependency_answers_401_for_forged_tokens(orders: TestClient, key_a: SigningKey) -> None:
    for token in (alg_none(key_a), hs256_with_public_key(key_a), tampered(key_a)):
        r = orders.get("/orders", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert error_body(r) == UNAUTHORIZED


def test_dependency_answers_401_token_expired(orders: TestClient, key_a: SigningKey) -> None:
    token = issue(key_a, ttl=60, now=time.time() - 3600)
    r = orders.get("/orders", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert error_body(r) == {"error": "token_expired", "message": "Token expired"}


def test_require_token_needs_a_workspace_or_an_explicit_any_workspace(
    issuer: FakeIssuer,
) -> None:
    verifier = issuer.verifier()
    with pytest.raises(TypeError, match="workspace is required"):
        require_token(verifier)
    with pytest.raises(TypeError, match="workspace is required"):
        require_token(verifier, workspace="")
    with pytest.raises(TypeError, match="not both"):
        require_token(verifier, workspace=WS, any_workspace=True)


def test_require_token_any_workspace_accepts_every_workspace(
    issuer: FakeIssuer, key_a: SigningKey
) -> None:
    app = FastAPI()
    verified = require_token(issuer.verifier(), any_workspace=True)

    @app.get("/whoami")
    def whoami(token: VerifiedToken = Depends(verified)) -> dict[str, Any]:  # noqa: B008
        return {"workspace": token.workspace}

    client = TestClient(app)
    for workspace in (WS, "globex"):
        who = TokenSubject(CLIENT_ID, CLIENT_ID, workspace, True, ("api-users",), "openid")
        r = client.get("/whoami", headers={"Authorization": f"Bearer {issue(key_a, who)}"})
        assert (r.status_code, r.json()) == (200, {"workspace": workspace})
    assert client.get("/whoami").status_code == 401


def test_dependency_answers_403_for_another_workspace(
    orders: TestClient, key_a: SigningKey
) -> None:
    who = TokenSubject(CLIENT_ID, CLIENT_ID, "globex", True, ("api-users",), "openid")
    r = orders.get("/orders", headers={"Authorization": f"Bearer {issue(key_a, who)}"})
    assert r.status_code == 403
    body = error_body(r)
    assert body["error"] == "forbidden"
    assert body["message"].startswith("Forbidden: ")


def test_an_rsa_key_under_2048_bits_in_a_jwks_is_not_used() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    from centrali.verify import _verification_key

    for bits, usable in ((1024, False), (2048, True)):
        public = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
        jwk = {**json.loads(RSAAlgorithm.to_jwk(public)), "kid": f"k{bits}"}
        assert (_verification_key(jwk) is not None) is usable, bits

"""Standards conformance, as far as one machine allows: the metadata document field by field
(RFC 8414 §2-3, OpenID Connect Discovery 1.0 §3-4) with every endpoint it names answering and
every method, algorithm and grant it advertises accepted; every error of the token,
introspection and revocation endpoints against RFC 6749 §5.2; every 401 and 403 of the
workspace API and of userinfo against RFC 6750 §3 (with the reason in the message, issue 13
item 6); Cache-Control on every route under /workspace/ and /oidc/; the JWKS (RFC 7517); the
ID token's ``at_hash`` (OpenID Connect Core §3.1.3.6)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2 as httpx  # the HTTP library of Starlette's TestClient
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from centrali.config import Settings
from centrali.oauth.id_token import token_hash
from centrali.oauth.keys import SUPPORTED_ALGS, generate_private_key_pem, load_signing_key
from centrali.oauth.signing import sign_jwt
from centrali.services.keys import load_key_set
from centrali.services.permissions import ADMIN_GROUP
from centrali.services.users import create_user
from centrali.store.db import Database
from centrali.web.app import create_app
from tests.api.oidc_browser import CONSOLE, PASSWORD, Flow, query_of
from tests.conftest import ISSUER
from tests.factories import Factory, bearer

WS = "acme-corp"
API = f"/workspace/{WS}/api/v1"
EMAIL = "ada@acme.test"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
WELL_KNOWN = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")
REALM = 'Bearer realm="centrali"'

# --- registries the metadata is checked against ---------------------------------------------

# RFC 8414 §2 (with RFC 7009 / RFC 7662 endpoints), OpenID Connect Discovery 1.0 §3,
# RP-Initiated Logout 1.0 §2.1, RFC 9207 §3, Initiating User Registration 1.0 §4.
KNOWN_METADATA = {
    "issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "registration_endpoint",
    "scopes_supported", "response_types_supported", "response_modes_supported",
    "grant_types_supported", "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported", "service_documentation",
    "ui_locales_supported", "op_policy_uri", "op_tos_uri", "revocation_endpoint",
    "revocation_endpoint_auth_methods_supported",
    "revocation_endpoint_auth_signing_alg_values_supported", "introspection_endpoint",
    "introspection_endpoint_auth_methods_supported",
    "introspection_endpoint_auth_signing_alg_values_supported",
    "code_challenge_methods_supported", "userinfo_endpoint", "acr_values_supported",
    "subject_types_supported", "id_token_signing_alg_values_supported",
    "id_token_encryption_alg_values_supported", "id_token_encryption_enc_values_supported",
    "userinfo_signing_alg_values_supported", "display_values_supported",
    "claim_types_supported", "claims_supported", "claims_locales_supported",
    "claims_parameter_supported", "request_parameter_supported",
    "request_uri_parameter_supported", "require_request_uri_registration",
    "end_session_endpoint", "authorization_response_iss_parameter_supported",
    "prompt_values_supported",
}  # fmt: skip
# RFC 8414 §2 REQUIRED, and OpenID Connect Discovery 1.0 §3 REQUIRED.
REQUIRED_METADATA = {
    "issuer", "token_endpoint", "jwks_uri", "response_types_supported", "authorization_endpoint",
    "subject_types_supported", "id_token_signing_alg_values_supported",
}  # fmt: skip
ENDPOINTS = {
    "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
    "introspection_endpoint", "revocation_endpoint", "end_session_endpoint",
}  # fmt: skip
# IANA "OAuth Parameters" registries and RFC 7518 §3.1.
GRANT_TYPES = {
    "authorization_code", "implicit", "password", "client_credentials", "refresh_token",
    "urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:token-exchange",
}  # fmt: skip
AUTH_METHODS = {
    "none", "client_secret_post", "client_secret_basic", "client_secret_jwt", "private_key_jwt",
    "tls_client_auth", "self_signed_tls_client_auth",
}  # fmt: skip
JWS_ALGS = {
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
    "PS256", "PS384", "PS512", "EdDSA",
}  # fmt: skip
RESPONSE_MODES = {"query", "fragment", "form_post"}
SUBJECT_TYPES = {"public", "pairwise"}
PKCE_METHODS = {"plain", "S256"}
PROMPTS = {"none", "login", "consent", "select_account", "create"}
# RFC 6749 §5.2 with RFC 7009 §2.2.1; the server's own 503 (RFC 6749 §4.1.2.1's code).
OAUTH_ERRORS = {
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
    "unsupported_grant_type", "invalid_scope", "unsupported_token_type",
    "temporarily_unavailable",
}  # fmt: skip
# RFC 6749 §5.2 / RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E.
DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
# RFC 7235 §2.1: auth-scheme [ 1*SP #auth-param ], auth-param = token BWS "=" BWS
# ( token / quoted-string ); our values are all quoted.
_AUTH_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


# --- helpers ----------------------------------------------------------------------------------


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """One RFC 7235 challenge, strictly: its scheme and its (quoted) parameters."""
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _AUTH_PARAM.match(rest, position)
        assert match is not None, f"not an auth-param list: {header!r}"
        name, value = match.group(1), match.group(2)
        assert name not in params, f"repeated {name}: {header!r}"
        params[name] = value
        position = match.end()
    return scheme, params


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def public_jwk(private: Any, alg: str) -> dict[str, Any]:
    if isinstance(private, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return {**jwk, "alg": alg}


def private_key_for(alg: str) -> Any:
    if alg in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


@dataclass
class KeyedClient:
    client_id: str
    kid: str
    key: Any
    alg: str

    def assertion(self) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": ISSUER,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": self.kid})
        return {"client_assertion_type": JWT_BEARER, "client_assertion": token}


@dataclass
class World:
    client: TestClient
    factory: Factory
    db: Database
    settings: Settings
    admin: str
    account: dict[str, Any]

    def basic(self, client_id: str | None = None, secret: str | None = None) -> dict[str, str]:
        pair = f"{client_id or self.account['clientId']}:{secret or self.account['clientSecret']}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    def post_creds(self) -> dict[str, str]:
        return {
            "client_id": self.account["clientId"],
            "client_secret": self.account["clientSecret"],
        }

    def sa_token(self) -> str:
        return self.factory.sa_token(self.account)

    def sign(self, claims: dict[str, Any], typ: str = "at+jwt") -> str:
        """``claims`` signed with the server's own signing key."""
        return sign_jwt(claims, load_key_set(self.db).signing.signer, typ=typ)

    def keyed_client(self, alg: str) -> KeyedClient:
        key = private_key_for(alg)
        account = self.factory.service_account(self.admin, name=f"Keyed {alg}")
        r = self.client.post(
            f"{API}/service-accounts/{account['id']}/keys",
            json={"jwk": public_jwk(key, alg)},
            headers=bearer(self.admin),
        )
        assert r.status_code == 201, r.text
        return KeyedClient(account["clientId"], r.json()["kid"], key, alg)


@pytest.fixture
def world(factory: Factory, db: Database, settings: Settings) -> World:
    factory.workspace(WS)
    create_user(db, email=EMAIL, workspace_slug=WS, groups=[ADMIN_GROUP], password=PASSWORD)
    admin = factory.admin(WS)
    account = factory.service_account(admin, name="Standards")
    return World(factory.client, factory, db, settings, admin, account)


@pytest.fixture
def doc(world: World) -> dict[str, Any]:
    r = world.client.get(WELL_KNOWN[0])
    assert r.status_code == 200, r.text
    document: dict[str, Any] = r.json()
    return document


def path_of(url: str) -> str:
    return urlsplit(url).path


# --- the metadata document ----------------------------------------------------------------------


def test_both_well_known_documents_are_the_same_public_cacheable_json(world: World) -> None:
    """RFC 8414 §3 and OpenID Connect Discovery §4: one document at both well-known URIs,
    JSON, cacheable by anyone for a short while."""
    answers = [world.client.get(path) for path in WELL_KNOWN]
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        cache = [d.strip() for d in r.headers["cache-control"].split(",")]
        assert "public" in cache, cache
        max_age = [int(d.split("=")[1]) for d in cache if d.startswith("max-age=")]
        assert len(max_age) == 1 and 0 < max_age[0] <= 3600, cache
    assert answers[0].json() == answers[1].json()


def test_every_field_is_known_and_well_formed(doc: dict[str, Any]) -> None:
    assert not set(doc) - KNOWN_METADATA, set(doc) - KNOWN_METADATA
    assert not REQUIRED_METADATA - set(doc), REQUIRED_METADATA - set(doc)
    # RFC 8414 §2 / §3.3: the issuer is the URL the document was fetched under, with no query
    # or fragment (https in production; the test server is plain http).
    issuer = urlsplit(doc["issuer"])
    assert doc["issuer"] == ISSUER
    assert issuer.scheme in ("https", "http") and issuer.netloc
    assert not issuer.query and not issuer.fragment
    for name in ENDPOINTS & set(doc):
        url = urlsplit(doc[name])
        assert doc[name].startswith(ISSUER + "/"), (name, doc[name])
        assert not url.fragment, name  # RFC 6749 §3.1, §3.2
    for name, value in doc.items():
        if name.endswith("_supported") and not isinstance(value, bool):
            assert isinstance(value, list) and value, name
            assert all(isinstance(v, str) and v for v in value), name
            assert len(set(value)) == len(value), name
        if name.endswith(("_parameter_supported", "_registration")):
            assert isinstance(value, bool), name
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert set(doc["grant_types_supported"]) <= GRANT_TYPES
    assert set(doc["response_modes_supported"]) <= RESPONSE_MODES
    assert set(doc["subject_types_supported"]) <= SUBJECT_TYPES
    assert set(doc["code_challenge_methods_supported"]) <= PKCE_METHODS
    assert set(doc["prompt_values_supported"]) <= PROMPTS
    assert "openid" in doc["scopes_supported"]  # OpenID Connect Discovery §3
    # OpenID Connect Discovery §3: RS256 MUST be among the ID token algorithms (the default).
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert set(doc["id_token_signing_alg_values_supported"]) <= JWS_ALGS
    for endpoint in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        methods = doc[f"{endpoint}_auth_methods_supported"]
        assert set(methods) <= AUTH_METHODS, endpoint
        algs = doc.get(f"{endpoint}_auth_signing_alg_values_supported")
        # RFC 8414 §2: present when a JWT method is; "none" never.
        if {"private_key_jwt", "client_secret_jwt"} & set(methods):
            assert algs, endpoint
        assert algs is None or (set(algs) <= JWS_ALGS and "none" not in algs), endpoint


def test_profile_is_not_advertised_but_still_accepted(world: World, doc: dict[str, Any]) -> None:
    """No profile claim (name, preferred_username, updated_at) is kept for a user, so the
    ``profile`` scope is not advertised; a client asking for it by habit still signs in."""
    assert "profile" not in doc["scopes_supported"]
    for name in ("name", "preferred_username", "updated_at"):
        assert name not in doc["claims_supported"]
    tokens = Flow(world.client).tokens(EMAIL, scope="openid profile email")
    assert "id_token" in tokens


def test_every_advertised_endpoint_answers(world: World, doc: dict[str, Any]) -> None:
    calls: dict[str, Callable[[str], httpx.Response]] = {
        "authorization_endpoint": lambda p: world.client.get(p, follow_redirects=False),
        "token_endpoint": lambda p: world.client.post(p, data={}),
        "jwks_uri": world.client.get,
        "userinfo_endpoint": world.client.get,
        "introspection_endpoint": lambda p: world.client.post(p, data={}),
        "revocation_endpoint": lambda p: world.client.post(p, data={}),
        "end_session_endpoint": world.client.get,
    }
    assert set(calls) == ENDPOINTS & set(doc)
    expected = {
        "authorization_endpoint": 400,  # a page: the request is incomplete
        "token_endpoint": 400,
        "jwks_uri": 200,
        "userinfo_endpoint": 401,
        "introspection_endpoint": 400,  # no token named
        "revocation_endpoint": 400,
        "end_session_endpoint": 200,
    }
    answers = {name: call(path_of(doc[name])).status_code for name, call in calls.items()}
    assert answers == expected


def test_every_advertised_token_auth_method_and_algorithm_is_accepted(
    world: World, doc: dict[str, Any]
) -> None:
    grant = {"grant_type": "client_credentials"}
    accepted: dict[str, int] = {
        "client_secret_basic": world.client.post(
            "/oidc/token", data=grant, headers=world.basic()
        ).status_code,
        "client_secret_post": world.client.post(
            "/oidc/token", data={**grant, **world.post_creds()}
        ).status_code,
    }
    for alg in doc["token_endpoint_auth_signing_alg_values_supported"]:
        keyed = world.keyed_client(alg)
        r = world.client.post("/oidc/token", data={**grant, **keyed.assertion()})
        accepted[f"private_key_jwt {alg}"] = r.status_code
        claims = claims_of(r.json()["access_token"]) if r.status_code == 200 else {}
        assert claims.get("sub") == keyed.client_id
    accepted["private_key_jwt"] = min(
        v for k, v in accepted.items() if k.startswith("private_key_jwt ")
    )
    flow = Flow(world.client)  # a public client: "none"
    accepted["none"] = flow.exchange(flow.sign_in(EMAIL)).status_code
    methods = doc["token_endpoint_auth_methods_supported"]
    assert {m: accepted[m] for m in methods} == dict.fromkeys(methods, 200)
    assert all(v == 200 for v in accepted.values()), accepted


@pytest.mark.parametrize("endpoint", ["introspection", "revocation"])
def test_every_advertised_introspection_and_revocation_method_is_accepted(
    world: World, doc: dict[str, Any], endpoint: str
) -> None:
    path = path_of(doc[f"{endpoint}_endpoint"])
    answers: dict[str, int] = {}
    for method in doc[f"{endpoint}_endpoint_auth_methods_supported"]:
        if method == "private_key_jwt":
            for alg in doc[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]:
                keyed = world.keyed_client(alg)
                token = world.client.post(
                    "/oidc/token", data={"grant_type": "client_credentials", **keyed.assertion()}
                ).json()["access_token"]
                r = world.client.post(path, data={"token": token, **keyed.assertion()})
                answers[f"{method} {alg}"] = r.status_code
            continue
        if method == "none":  # a public client, its own refresh token
            tokens = Flow(world.client).tokens(EMAIL)
            r = world.client.post(
                path, data={"token": tokens["refresh_token"], "client_id": CONSOLE}
            )
        elif method == "client_secret_basic":
            r = world.client.post(path, data={"token": world.sa_token()}, headers=world.basic())
        else:
            r = world.client.post(path, data={"token": world.sa_token(), **world.post_creds()})
        answers[method] = r.status_code
        if endpoint == "introspection":
            assert r.json()["active"] is True, (method, r.text)
    assert answers and set(answers.values()) == {200}, answers


def test_every_advertised_grant_response_type_mode_and_pkce_method_works(
    world: World, doc: dict[str, Any]
) -> None:
    grants = set(doc["grant_types_supported"])
    assert grants == {"client_credentials", "authorization_code", "refresh_token"}
    assert doc["response_types_supported"] == ["code"]
    assert doc["response_modes_supported"] == ["query"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert world.factory.token_response(**world.post_creds()).status_code == 200
    flow = Flow(world.client)
    answer = flow.authorize()
    code = flow.code_of(flow.login(answer, EMAIL))  # code, in the query (with iss: RFC 9207)
    tokens = flow.exchange(code)
    assert tokens.status_code == 200, tokens.text
    refreshed = flow.refresh(tokens.json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    # What is not advertised is refused: PKCE "plain".
    plain = Flow(world.client).authorize(code_challenge_method="plain")
    assert plain.status_code == 303 and query_of(plain.headers["location"])["error"] == (
        "invalid_request"
    )


def test_every_advertised_prompt_and_scope_is_accepted(world: World, doc: dict[str, Any]) -> None:
    for prompt in doc["prompt_values_supported"]:
        r = Flow(world.client).authorize(prompt=prompt)
        if r.status_code == 303:  # prompt=none without a sign-in: the defined refusal
            assert prompt == "none"
            assert query_of(r.headers["location"])["error"] == "login_required"
        else:
            assert r.status_code == 200, (prompt, r.text)
    scope = " ".join(doc["scopes_supported"])
    assert Flow(world.client).tokens(EMAIL, scope=scope)["scope"] == scope


def test_tokens_carry_only_advertised_claims_and_algorithms(
    world: World, doc: dict[str, Any]
) -> None:
    tokens = Flow(world.client).tokens(EMAIL)
    id_token = tokens["id_token"]
    assert (
        jwt.get_unverified_header(id_token)["alg"] in doc["id_token_signing_alg_values_supported"]
    )
    supported = set(doc["claims_supported"])
    assert set(claims_of(id_token)) <= supported, set(claims_of(id_token)) - supported
    info = world.client.get("/oidc/userinfo", headers=bearer(tokens["access_token"])).json()
    assert set(info) <= supported, set(info) - supported


# --- at_hash and the JWKS -----------------------------------------------------------------------


def _left_half_hash(value: str, hash_name: str) -> str:
    digest = hashlib.new(hash_name, value.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])


def test_id_token_at_hash_binds_the_access_token(world: World) -> None:
    tokens = Flow(world.client).tokens(EMAIL)
    claims = claims_of(tokens["id_token"])
    assert claims["at_hash"] == _left_half_hash(tokens["access_token"], "sha256")
    refreshed = Flow(world.client).refresh(tokens["refresh_token"]).json()
    assert claims_of(refreshed["id_token"])["at_hash"] == _left_half_hash(
        refreshed["access_token"], "sha256"
    )


def test_at_hash_vectors() -> None:
    """Published vectors (panva/oidc-token-hash): SHA-256 for RS256 and ES256, SHA-512 for
    EdDSA on Ed25519 (OpenID Connect issue 1125)."""
    token = (
        "YmJiZTAwYmYtMzgyOC00NzhkLTkyOTItNjJjNDM3MGYzOWIy9sFhvH8K_x8UIHj1osisS57f5DduL-ar_qw5jl"
        "3lthwpMjm283aVMQXDmoqqqydDSqJfbhptzw8rUVwkuQbolw"
    )
    assert token_hash(token, "RS256") == "x7vk7f6BvQj0jQHYFIk4ag"
    assert token_hash(token, "ES256") == "x7vk7f6BvQj0jQHYFIk4ag"
    assert token_hash(token, "EdDSA") == "EGEAhGYyfuwDaVTifvrWSoD5MSy_5hZPy6I7Vm-7pTQ"


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_jwks_keys_name_use_sig_and_no_key_ops(alg: str) -> None:
    """RFC 7517 §4.2-4.3: ``use`` and ``key_ops`` should not be used together."""
    jwk = dict(load_signing_key(generate_private_key_pem(alg), alg).public_jwk)
    assert jwk["use"] == "sig" and jwk["alg"] == alg
    assert "key_ops" not in jwk


def test_an_eddsa_issuer_publishes_use_sig_and_hashes_with_sha512(
    settings: Settings, db: Database
) -> None:
    eddsa = Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        issuer=ISSUER,
        signing_alg="EdDSA",
    )
    with TestClient(create_app(eddsa, db=db), base_url=ISSUER) as client:
        factory = Factory(client=client, db=db, settings=eddsa)
        factory.workspace(WS)
        create_user(db, email=EMAIL, workspace_slug=WS, groups=[ADMIN_GROUP], password=PASSWORD)
        keys = client.get("/oidc/jwks").json()["keys"]
        assert keys and all(k["use"] == "sig" and "key_ops" not in k for k in keys)
        tokens = Flow(client).tokens(EMAIL)
        assert jwt.get_unverified_header(tokens["id_token"])["alg"] == "EdDSA"
        assert claims_of(tokens["id_token"])["at_hash"] == _left_half_hash(
            tokens["access_token"], "sha512"
        )


def test_the_served_jwks_names_use_sig_without_key_ops(world: World) -> None:
    r = world.client.get("/oidc/jwks")
    assert r.headers["cache-control"] == "public, max-age=300"
    for key in r.json()["keys"]:
        assert key["use"] == "sig" and "key_ops" not in key, key


# --- RFC 6749 §5.2 error answers ----------------------------------------------------------------


def assert_oauth_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """RFC 6749 §5.2: the status, a JSON object with a registered ``error``, an
    ``error_description`` of the allowed characters, no caching (§5.1)."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == "application/json"
    body: dict[str, Any] = r.json()
    assert isinstance(body, dict)
    assert body.get("error") == error, body
    assert error in OAUTH_ERRORS
    description = body.get("error_description")
    assert description is None or (
        isinstance(description, str) and DESCRIPTION.fullmatch(description)
    ), body
    assert "error_uri" not in body or isinstance(body["error_uri"], str)
    assert "no-store" in r.headers["cache-control"]
    assert r.headers.get("pragma") == "no-cache"
    return body


def _token_errors(w: World) -> list[tuple[str, Callable[[], httpx.Response], int, str]]:
    good = w.post_creds()
    post = w.client.post
    return [
        ("no-grant-type", lambda: post("/oidc/token", data=good), 400, "invalid_request"),
        (
            "unknown-grant",
            lambda: post("/oidc/token", data={**good, "grant_type": "password"}),
            400,
            "unsupported_grant_type",
        ),
        (
            "repeated-parameter",
            lambda: post(
                "/oidc/token",
                content=urlencode({**good, "grant_type": "client_credentials"})
                + "&scope=a&scope=b",
                headers=FORM,
            ),
            400,
            "invalid_request",
        ),
        (
            "not-a-form",
            lambda: post("/oidc/token", json={**good, "grant_type": "client_credentials"}),
            400,
            "invalid_request",
        ),
        (
            "wrong-secret-post",
            lambda: post(
                "/oidc/token",
                data={**good, "client_secret": "sk_wrong", "grant_type": "client_credentials"},
            ),
            401,
            "invalid_client",
        ),
        (
            "unknown-scope",
            lambda: post(
                "/oidc/token", data={**good, "grant_type": "client_credentials", "scope": "admin"}
            ),
            400,
            "invalid_scope",
        ),
        (
            "bad-code",
            lambda: post(
                "/oidc/token",
                data={
                    "grant_type": "authorization_code",
                    "client_id": CONSOLE,
                    "code": "nope",
                    "redirect_uri": f"{ISSUER}/console/callback",
                    "code_verifier": "v" * 43,
                },
            ),
            400,
            "invalid_grant",
        ),
        (
            "bad-refresh-token",
            lambda: post(
                "/oidc/token",
                data={"grant_type": "refresh_token", "client_id": CONSOLE, "refresh_token": "x"},
            ),
            400,
            "invalid_grant",
        ),
        (
            "introspect-no-token",
            lambda: post("/oidc/introspect", data=good),
            400,
            "invalid_request",
        ),
        (
            "introspect-wrong-secret",
            lambda: post("/oidc/introspect", data={**good, "client_secret": "x", "token": "t"}),
            401,
            "invalid_client",
        ),
        ("revoke-no-token", lambda: post("/oidc/revoke", data=good), 400, "invalid_request"),
    ]


def test_every_oauth_error_answer_is_rfc6749_shaped(world: World) -> None:
    failures = []
    for case, call, status, error in _token_errors(world):
        try:
            assert_oauth_error(call(), status, error)
        except AssertionError as exc:
            failures.append(f"{case}: {exc}")
    assert failures == []


@pytest.mark.parametrize("path", ["/oidc/token", "/oidc/introspect", "/oidc/revoke"])
def test_basic_authentication_refused_names_the_basic_scheme(world: World, path: str) -> None:
    """RFC 6749 §5.2: a 401 answers the scheme the client used."""
    data = {"grant_type": "client_credentials", "token": "t"}
    r = world.client.post(path, data=data, headers=world.basic(secret="sk_wrong"))
    assert_oauth_error(r, 401, "invalid_client")
    scheme, params = parse_challenge(r.headers["www-authenticate"])
    assert scheme == "Basic" and "realm" in params


# --- RFC 6750 §3 on the workspace API and userinfo ----------------------------------------------


@dataclass(frozen=True)
class BadToken:
    """A token that must be refused, and the reason the refusal names."""

    make: Callable[[World], str]
    reason: str
    api_error: str = "unauthorized"


def _fill(template: str, ids: dict[str, Any], default: Any = "x") -> str:
    """A route template's parameters (``{name}`` or ``{name:path}``) filled from ``ids``."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(ids.get(m.group(1), default)), template)


def _alg_none(w: World) -> str:
    token = w.sa_token()
    header = {**jwt.get_unverified_header(token), "alg": "none"}
    return f"{b64url(json.dumps(header).encode())}.{token.split('.')[1]}."


def _tampered(w: World) -> str:
    head, _payload, signature = w.sa_token().split(".")
    claims = claims_of(w.admin) | {"groups": [ADMIN_GROUP, "more"]}
    return f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"


def _claims(w: World, **changes: Any) -> dict[str, Any]:
    return claims_of(w.admin) | {"iat": int(time.time())} | changes


def _revoked(w: World) -> str:
    """A user's access token its (public) client revoked (RFC 7009)."""
    token: str = Flow(w.client).tokens(EMAIL)["access_token"]
    r = w.client.post("/oidc/revoke", data={"token": token, "client_id": CONSOLE})
    assert r.status_code == 200, r.text
    return token


BAD_TOKENS = {
    "malformed": BadToken(lambda w: "not-a-jwt", "malformed token"),
    "bad-signature": BadToken(_tampered, "bad signature"),
    "alg-none": BadToken(_alg_none, "alg none"),
    "wrong-issuer": BadToken(
        lambda w: w.sign(_claims(w, iss="https://elsewhere.example")),
        f"wrong issuer (this server is {ISSUER})",
    ),
    "wrong-audience": BadToken(
        lambda w: w.sign(_claims(w, aud="https://elsewhere.example")), "wrong audience"
    ),
    "an-id-token": BadToken(lambda w: w.sign(_claims(w), typ="JWT"), "wrong token type"),
    "expired": BadToken(
        lambda w: w.factory.user_token(WS, now=time.time() - 100_000), "Token expired",
        "token_expired",
    ),
    "revoked": BadToken(_revoked, "Token revoked", "token_revoked"),
}  # fmt: skip


def assert_bearer_401(r: httpx.Response, *, error: str | None, reason: str) -> None:
    """RFC 6750 §3: 401, a Bearer challenge with the realm; ``error`` (and a description
    naming ``reason``) only when a token was sent; no caching."""
    assert r.status_code == 401, (r.status_code, r.text)
    scheme, params = parse_challenge(r.headers["www-authenticate"])
    assert scheme == "Bearer" and params["realm"] == "centrali"
    if error is None:
        assert set(params) == {"realm"}, params
    else:
        assert params["error"] == error, params
        assert reason in params["error_description"], params
        assert DESCRIPTION.fullmatch(params["error_description"]), params
    assert "no-store" in r.headers["cache-control"]


@pytest.mark.parametrize("case", list(BAD_TOKENS), ids=str)
def test_a_bad_token_is_invalid_token_naming_why(world: World, case: str) -> None:
    bad = BAD_TOKENS[case]
    token = bad.make(world)
    r = world.client.get(f"{API}/structures", headers=bearer(token))
    assert_bearer_401(r, error="invalid_token", reason=bad.reason)
    body = r.json()
    assert body["error"] == bad.api_error  # the fixed codes of the API
    if bad.api_error == "unauthorized":
        assert body["message"].startswith("Unauthorized: ") and bad.reason in body["message"]
    else:
        assert body["message"] == bad.reason, body
    r = world.client.get("/oidc/userinfo", headers=bearer(token))
    assert_bearer_401(r, error="invalid_token", reason=bad.reason)
    assert r.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({}, "no access token", id="none"),
        pytest.param({"Authorization": "Basic eDp5"}, "not a Bearer token", id="basic"),
    ],
)
def test_no_bearer_token_is_401_without_an_error_attribute(
    world: World, headers: dict[str, str], reason: str
) -> None:
    r = world.client.get(f"{API}/structures", headers=headers)
    assert_bearer_401(r, error=None, reason=reason)
    assert r.headers["www-authenticate"] == REALM
    assert r.json()["error"] == "unauthorized"
    message = r.json()["message"]
    assert message.startswith("Unauthorized: ") and reason in message, message
    r = world.client.get("/oidc/userinfo", headers=headers)
    assert_bearer_401(r, error=None, reason=reason)
    assert r.headers["www-authenticate"] == REALM
    assert r.json()["error"] != "invalid_request"
    assert reason in r.json()["error_description"]


def test_a_missing_permission_is_403_insufficient_scope(world: World) -> None:
    developer = world.factory.user_token(WS, ("developers",))
    r = world.client.get(f"{API}/service-accounts", headers=bearer(developer))
    assert r.status_code == 403, r.text
    scheme, params = parse_challenge(r.headers["www-authenticate"])
    assert (scheme, params["realm"], params["error"]) == (
        "Bearer",
        "centrali",
        "insufficient_scope",
    )
    assert "service-accounts:manage" in params["error_description"]
    assert r.json() == {
        "error": "forbidden",
        "message": "Forbidden: missing permission service-accounts:manage",
    }
    no_openid = world.sign(_claims(world, scope="email"))
    r = world.client.get("/oidc/userinfo", headers=bearer(no_openid))
    assert r.status_code == 403
    assert parse_challenge(r.headers["www-authenticate"])[1]["error"] == "insufficient_scope"


def test_userinfo_takes_the_form_body_token_on_post_only(world: World) -> None:
    """RFC 6750 §2.2 on userinfo (OpenID Connect Core §5.3.1); §2.3 (query) refused."""
    token = Flow(world.client).tokens(EMAIL)["access_token"]
    r = world.client.post("/oidc/userinfo", data={"access_token": token})
    assert r.status_code == 200, r.text
    assert r.json()["email"] == EMAIL
    assert "no-store" in r.headers["cache-control"]
    both = world.client.post("/oidc/userinfo", data={"access_token": token}, headers=bearer(token))
    assert both.status_code == 400
    assert parse_challenge(both.headers["www-authenticate"])[1]["error"] == "invalid_request"
    query = world.client.get("/oidc/userinfo", params={"access_token": token})
    assert query.status_code == 400
    assert "query" in query.json()["error_description"]
    bad = world.client.post("/oidc/userinfo", data={"access_token": "not-a-jwt"})
    assert_bearer_401(bad, error="invalid_token", reason="malformed token")


def test_the_workspace_api_takes_no_form_body_token(world: World) -> None:
    """The workspace API's bodies are JSON: RFC 6750 §2.2 cannot apply (README)."""
    r = world.client.post(
        f"{API}/structures",
        content=urlencode({"access_token": world.admin}),
        headers=FORM,
    )
    assert_bearer_401(r, error=None, reason="no access token")


def all_routes(client: TestClient) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route of the app, in the OpenAPI document or not
    (routers included in the app are walked)."""

    def walk(routes: Iterable[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):  # FastAPI's included router
                yield from walk(route.original_router.routes)

    for route in walk(client.app.app.routes):  # type: ignore[attr-defined]
        for method in sorted(route.methods - {"HEAD"}):
            yield method, route.path


def _api_routes(client: TestClient) -> Iterator[tuple[str, str]]:
    return ((m, p) for m, p in all_routes(client) if p.startswith("/workspace/"))


def test_every_workspace_route_answers_rfc6750_and_no_store(world: World) -> None:
    """Walks every route under /workspace/: without a token, with a malformed one, with a
    forbidden one; every answer names the Bearer scheme and is never stored."""
    routes = list(_api_routes(world.client))
    assert len(routes) >= 20
    developer = world.factory.user_token(WS, ())
    failures = []
    for method, template in routes:
        url = _fill(template, {"workspace_slug": WS, "slug": "s", "kid": "k"}, default=1)
        kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        for case, headers, status, error in (
            ("none", {}, 401, None),
            ("malformed", bearer("x.y.z"), 401, "invalid_token"),
            ("no-permission", bearer(developer), 403, "insufficient_scope"),
        ):
            r = world.client.request(method, url, headers=headers, **kwargs)
            try:
                assert r.status_code == status, r.text
                scheme, params = parse_challenge(r.headers["www-authenticate"])
                assert scheme == "Bearer" and params.get("error") == error, params
                assert r.headers.get("cache-control") == "no-store"
            except (AssertionError, KeyError) as exc:
                failures.append(f"{method} {template} {case}: {exc!r}")
    assert failures == []


# --- Cache-Control on every route -----------------------------------------------------------


def test_every_answer_with_account_data_is_no_store(world: World) -> None:
    """Every route under /workspace/ and /oidc/, with an admin's token and real ids, GETs
    first (their answers carry the data), then the writes: ``no-store`` on each, whatever the
    status; the discovery documents and the JWKS alone are public."""
    client = world.client
    admin = bearer(world.admin)
    structure = {"slug": "s", "name": "S", "fields": [{"name": "n", "type": "string"}]}
    assert client.post(f"{API}/structures", json=structure, headers=admin).status_code == 201
    record = client.post(
        f"{API}/records", json={"recordSlug": "s", "data": {"n": "x"}}, headers=admin
    )
    assert record.status_code == 201, record.text
    account = world.account
    ids = {
        "workspace_slug": WS,
        "account_id": account["id"],
        "secret_id": account.get("secretId", "x"),
        "slug": "s",
        "record_id": record.json()["id"],
    }
    calls = list(all_routes(client))
    calls.append(("POST", "/oidc/token"))
    calls.sort(key=lambda c: (c[0] != "GET", c[0] == "DELETE"))
    failures = []
    seen_ok = 0
    for method, template in calls:
        public = template in WELL_KNOWN or template == "/oidc/jwks"
        if not (public or template.startswith(("/workspace/", "/oidc/"))):
            continue
        kwargs: dict[str, Any] = {}
        if method in ("POST", "PUT", "PATCH"):
            kwargs = {"data": world.post_creds() | {"grant_type": "client_credentials"}}
            if template.startswith("/workspace/"):
                kwargs = {"json": {}}
        r = client.request(
            method, _fill(template, ids), headers=admin, follow_redirects=False, **kwargs
        )
        seen_ok += r.status_code < 300
        cache = r.headers.get("cache-control", "")
        if public:
            good = cache.startswith("public, max-age=")
        else:
            good = "no-store" in [d.strip() for d in cache.split(",")]
        if not good:
            failures.append(f"{method} {template} {r.status_code}: {cache!r}")
    assert failures == []
    assert seen_ok >= 15  # the GETs really answered with data


def test_answers_with_secrets_and_tokens_are_no_store(world: World) -> None:
    admin = bearer(world.admin)
    created = world.client.post(f"{API}/service-accounts", json={"name": "N"}, headers=admin)
    assert created.status_code == 201 and "clientSecret" in created.json()
    rotated = world.client.post(
        f"{API}/service-accounts/{created.json()['id']}/rotate", json={}, headers=admin
    )
    token = world.client.post(
        "/oidc/token", data={"grant_type": "client_credentials", **world.post_creds()}
    )
    user = Flow(world.client).tokens(EMAIL)["access_token"]
    info = world.client.get("/oidc/userinfo", headers=bearer(user))
    for r in (created, rotated, token, info):
        assert r.status_code < 300, r.text
        assert r.headers["cache-control"] == "no-store", r.request.url

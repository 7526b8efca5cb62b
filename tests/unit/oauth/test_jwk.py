"""centrali.oauth.jwk: which public JWKs a client may register, with which algorithm and kid."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from centrali.oauth.jwk import ClientJwk, JwkError, parse_client_jwk
from centrali.oauth.keys import thumbprint
from tests.unit.oauth.test_keys import RFC7638_KEY, RFC7638_THUMBPRINT

Jwk = dict[str, Any]


@functools.cache
def _rsa_private(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def rsa_private_jwk(bits: int = 2048) -> Jwk:
    jwk: Jwk = RSAAlgorithm.to_jwk(_rsa_private(bits), as_dict=True)
    return jwk


def rsa_jwk(bits: int = 2048) -> Jwk:
    jwk: Jwk = RSAAlgorithm.to_jwk(_rsa_private(bits).public_key(), as_dict=True)
    return jwk


@functools.cache
def _ec_private(curve: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key({"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}[curve])


def ec_jwk(curve: str = "P-256") -> Jwk:
    jwk: Jwk = ECAlgorithm.to_jwk(_ec_private(curve).public_key(), as_dict=True)
    return jwk


def ec_private_jwk() -> Jwk:
    jwk: Jwk = ECAlgorithm.to_jwk(_ec_private("P-256"), as_dict=True)
    return jwk


@functools.cache
def _ed25519() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def ed25519_jwk() -> Jwk:
    jwk: Jwk = OKPAlgorithm.to_jwk(_ed25519().public_key(), as_dict=True)
    return jwk


def ed25519_private_jwk() -> Jwk:
    jwk: Jwk = OKPAlgorithm.to_jwk(_ed25519(), as_dict=True)
    return jwk


def ed448_jwk() -> Jwk:
    jwk: Jwk = OKPAlgorithm.to_jwk(ed448.Ed448PrivateKey.generate().public_key(), as_dict=True)
    return jwk


def x25519_jwk() -> Jwk:
    raw = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    return {
        "kty": "OKP",
        "crv": "X25519",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
    }


def with_(make: Callable[[], Jwk], **members: Any) -> Callable[[], Jwk]:
    """``make()`` with ``members`` set (a value of ``...`` removes the member)."""

    def build() -> Jwk:
        jwk = make()
        for name, value in members.items():
            if value is ...:
                jwk.pop(name, None)
            else:
                jwk[name] = value
        return jwk

    return build


# --- accepted ------------------------------------------------------------------------------

ACCEPTED = [
    pytest.param(rsa_jwk, "RSA", "RS256", id="rsa-2048-no-alg-is-RS256"),
    pytest.param(with_(rsa_jwk, alg="RS256"), "RSA", "RS256", id="rsa-RS256"),
    pytest.param(with_(rsa_jwk, alg="PS256"), "RSA", "PS256", id="rsa-PS256"),
    pytest.param(lambda: rsa_jwk(3072), "RSA", "RS256", id="rsa-3072"),
    pytest.param(lambda: rsa_jwk(4096), "RSA", "RS256", id="rsa-4096"),
    pytest.param(ec_jwk, "EC", "ES256", id="ec-p256-no-alg-is-ES256"),
    pytest.param(with_(ec_jwk, alg="ES256"), "EC", "ES256", id="ec-p256-ES256"),
    pytest.param(ed25519_jwk, "OKP", "EdDSA", id="ed25519-no-alg-is-EdDSA"),
    pytest.param(with_(ed25519_jwk, alg="EdDSA"), "OKP", "EdDSA", id="ed25519-EdDSA"),
    pytest.param(with_(rsa_jwk, use="sig"), "RSA", "RS256", id="use-sig"),
    pytest.param(
        with_(ec_jwk, key_ops=["verify"], x5t="ignored"), "EC", "ES256", id="extra-members"
    ),
]


@pytest.mark.parametrize(("make", "kty", "alg"), ACCEPTED)
def test_accepted_key(make: Callable[[], Jwk], kty: str, alg: str) -> None:
    given = make()
    parsed = parse_client_jwk(given)
    assert isinstance(parsed, ClientJwk)
    assert (parsed.kty, parsed.alg) == (kty, alg)
    assert parsed.kid == thumbprint(given)
    members = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}[kty]
    # Stored: the public members, kid, alg and use, nothing else of the client's.
    assert dict(parsed.jwk) == {
        "kty": kty,
        **{m: given[m] for m in members},
        "kid": parsed.kid,
        "alg": alg,
        "use": "sig",
    }


def test_given_kid_is_kept() -> None:
    parsed = parse_client_jwk(with_(ec_jwk, kid="my key/2026 #1")())
    assert parsed.kid == "my key/2026 #1"
    assert parsed.jwk["kid"] == "my key/2026 #1"


@pytest.mark.parametrize(
    "kid", ["k", "x" * 128, " ~!", "a/b"], ids=["1", "128", "symbols", "slash"]
)
def test_kid_bounds_accepted(kid: str) -> None:
    assert parse_client_jwk(with_(ed25519_jwk, kid=kid)()).kid == kid


def test_thumbprint_kid_of_the_rfc7638_example_key() -> None:
    """RFC 7638 §3.1's example key (RSA-2048) gets the thumbprint the RFC gives."""
    key = {k: v for k, v in RFC7638_KEY.items() if k != "kid"}
    parsed = parse_client_jwk(key)
    assert parsed.kid == RFC7638_THUMBPRINT
    assert (parsed.kty, parsed.alg) == ("RSA", "RS256")


def test_thumbprint_ignores_members_outside_rfc7638() -> None:
    plain = parse_client_jwk(ec_jwk())
    decorated = parse_client_jwk(with_(ec_jwk, alg="ES256", use="sig", key_ops=["verify"])())
    assert plain.kid == decorated.kid


def test_the_given_jwk_is_not_changed() -> None:
    given = with_(rsa_jwk, x5c=["abc"])()
    before = dict(given)
    parse_client_jwk(given)
    assert given == before


# --- refused -------------------------------------------------------------------------------


REFUSED = [
    pytest.param(
        lambda: rsa_private_jwk(), "private key members (d, p, q, dp, dq, qi)", id="rsa-private"
    ),
    pytest.param(ec_private_jwk, "private key members (d)", id="ec-private"),
    pytest.param(ed25519_private_jwk, "private key members (d)", id="ed25519-private"),
    pytest.param(with_(rsa_jwk, d="AQAB"), "private key members (d)", id="rsa-d-only"),
    pytest.param(with_(rsa_jwk, oth=[]), "private key members (oth)", id="rsa-oth"),
    pytest.param(with_(rsa_jwk, k="AQAB"), "private key members (k)", id="rsa-with-k"),
    pytest.param(lambda: {"kty": "oct", "k": "c2VjcmV0"}, 'symmetric keys (kty "oct")', id="oct"),
    pytest.param(lambda: {"kty": "oct"}, 'symmetric keys (kty "oct")', id="oct-without-k"),
    pytest.param(
        lambda: rsa_jwk(1024), "RSA keys must have 2048 to 8192 bits, not 1024", id="rsa-1024"
    ),
    pytest.param(lambda: rsa_jwk(2040), "not 2040", id="rsa-2040"),
    pytest.param(
        lambda: ec_jwk("P-384"), "unsupported curve 'P-384' (EC keys must be P-256)", id="ec-p384"
    ),
    pytest.param(with_(ec_jwk, crv=...), "unsupported curve NoneType", id="ec-no-crv"),
    pytest.param(x25519_jwk, "unsupported curve 'X25519' (OKP keys must be Ed25519)", id="x25519"),
    pytest.param(ed448_jwk, "unsupported curve 'Ed448'", id="ed448"),
    pytest.param(with_(rsa_jwk, kty="DSA"), "unsupported key type 'DSA'", id="kty-unknown"),
    pytest.param(with_(rsa_jwk, kty=...), "unsupported key type NoneType", id="kty-missing"),
    pytest.param(with_(rsa_jwk, kty=["RSA"]), "unsupported key type list", id="kty-list"),
    pytest.param(with_(rsa_jwk, kty="rsa"), "unsupported key type 'rsa'", id="kty-lowercase"),
    pytest.param(
        with_(rsa_jwk, alg="ES256"),
        "alg 'ES256' does not fit a RSA key (accepted: RS256, PS256)",
        id="ES256-on-rsa",
    ),
    pytest.param(with_(rsa_jwk, alg="RS384"), "alg 'RS384' does not fit", id="RS384-on-rsa"),
    pytest.param(with_(rsa_jwk, alg="RS512"), "alg 'RS512' does not fit", id="RS512-on-rsa"),
    pytest.param(with_(rsa_jwk, alg="HS256"), "alg 'HS256' does not fit", id="HS256-on-rsa"),
    pytest.param(
        with_(ec_jwk, alg="HS256"),
        "alg 'HS256' does not fit a EC key (accepted: ES256)",
        id="HS256-on-ec",
    ),
    pytest.param(with_(rsa_jwk, alg="none"), "alg 'none' does not fit", id="none-on-rsa"),
    pytest.param(with_(ed25519_jwk, alg="none"), "alg 'none' does not fit", id="none-on-okp"),
    pytest.param(with_(rsa_jwk, alg=None), "alg NoneType does not fit", id="alg-null"),
    pytest.param(with_(ec_jwk, alg="RS256"), "alg 'RS256' does not fit a EC key", id="RS256-on-ec"),
    pytest.param(with_(ec_jwk, alg="ES384"), "alg 'ES384' does not fit", id="ES384-on-p256"),
    pytest.param(
        with_(ed25519_jwk, alg="ES256"),
        "alg 'ES256' does not fit a OKP key (accepted: EdDSA)",
        id="ES256-on-okp",
    ),
    pytest.param(
        with_(rsa_jwk, use="enc"),
        "use must be \"sig\" (signature keys only), not 'enc'",
        id="use-enc",
    ),
    pytest.param(with_(ec_jwk, use=""), 'use must be "sig"', id="use-empty"),
    pytest.param(with_(rsa_jwk, n=...), "member n is missing or not base64url", id="rsa-no-n"),
    pytest.param(with_(rsa_jwk, e=...), "member e is missing or not base64url", id="rsa-no-e"),
    pytest.param(
        with_(rsa_jwk, n="not base64!"), "member n is missing or not base64url", id="rsa-n-not-b64"
    ),
    pytest.param(
        with_(rsa_jwk, n="AQAB=="), "member n is missing or not base64url", id="rsa-n-padded"
    ),
    pytest.param(
        with_(rsa_jwk, n=12345), "member n is missing or not base64url", id="rsa-n-number"
    ),
    pytest.param(with_(rsa_jwk, n=""), "member n is missing or not base64url", id="rsa-n-empty"),
    pytest.param(
        with_(rsa_jwk, n="A" * 3000), "member n is missing or not base64url", id="rsa-n-huge"
    ),
    pytest.param(with_(rsa_jwk, e="AA"), "not a valid RSA public key (n, e)", id="rsa-e-zero"),
    pytest.param(with_(rsa_jwk, e="Ag"), "not a valid RSA public key", id="rsa-e-even"),
    pytest.param(with_(ec_jwk, x=...), "member x is missing or not base64url", id="ec-no-x"),
    pytest.param(with_(ec_jwk, y="AAAA"), "not a valid EC public key (x, y)", id="ec-y-short"),
    pytest.param(with_(ec_jwk, y="A" * 43), "not a valid EC public key", id="ec-point-off-curve"),
    pytest.param(
        with_(ec_jwk, x="!!!!"), "member x is missing or not base64url", id="ec-x-not-b64"
    ),
    pytest.param(with_(ed25519_jwk, x="AAAA"), "not a valid OKP public key (x)", id="okp-x-short"),
    pytest.param(
        with_(ed25519_jwk, x=None), "member x is missing or not base64url", id="okp-x-null"
    ),
    pytest.param(
        with_(ec_jwk, kid=""), "kid must be 1 to 128 printable ASCII characters", id="kid-empty"
    ),
    pytest.param(with_(ec_jwk, kid="x" * 129), "kid must be 1 to 128", id="kid-129"),
    pytest.param(with_(ec_jwk, kid="caf\u00e9"), "kid must be 1 to 128", id="kid-non-ascii"),
    pytest.param(with_(ec_jwk, kid="a\tb"), "kid must be 1 to 128", id="kid-tab"),
    pytest.param(with_(ec_jwk, kid=7), "kid must be 1 to 128", id="kid-number"),
    pytest.param(lambda: [rsa_jwk()], "jwk must be a JSON object", id="list"),
    pytest.param(lambda: "eyJrdHkiOiJSU0EifQ", "jwk must be a JSON object", id="string"),
    pytest.param(lambda: None, "jwk must be a JSON object", id="null"),
    pytest.param(lambda: 42, "jwk must be a JSON object", id="number"),
    pytest.param(lambda: {"keys": [ec_jwk()]}, "unsupported key type NoneType", id="a-jwks"),
    pytest.param(dict, "unsupported key type NoneType", id="empty-object"),
]


@pytest.mark.parametrize(("make", "message"), REFUSED)
def test_refused_key_says_why(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(JwkError) as caught:
        parse_client_jwk(make())
    assert message in str(caught.value)


@pytest.mark.parametrize("make", [rsa_private_jwk, ec_private_jwk, ed25519_private_jwk])
def test_refusal_never_quotes_key_material(make: Callable[[], Jwk]) -> None:
    jwk = make()
    with pytest.raises(JwkError) as caught:
        parse_client_jwk(jwk)
    for name in ("d", "x", "n"):
        if name in jwk:
            assert jwk[name][:16] not in str(caught.value)


def test_rsa_over_8192_bits_is_refused() -> None:
    """A bound keeps one assertion check cheap (made by hand: generating one is slow)."""
    n = (1 << 8199) | 1  # 8200 bits, odd
    jwk = {
        "kty": "RSA",
        "e": "AQAB",
        "n": base64.urlsafe_b64encode(n.to_bytes(1025, "big")).rstrip(b"=").decode(),
    }
    with pytest.raises(JwkError, match="2048 to 8192 bits, not 8200"):
        parse_client_jwk(jwk)

"""centrali.oauth.keys: RSA keys, kid as the RFC 7638 thumbprint, public-only JWKS."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from centrali.oauth.keys import (
    KeySet,
    SigningKey,
    generate_private_key_pem,
    load_signing_key,
    thumbprint,
)

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

# RFC 7638 §3.1: the example key and its SHA-256 thumbprint.
RFC7638_KEY = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJ"
        "ECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
        "QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh"
        "6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_of_the_rfc7638_example_key() -> None:
    assert thumbprint(RFC7638_KEY) == RFC7638_THUMBPRINT


def test_thumbprint_ignores_optional_members_and_their_order() -> None:
    required_only = {"n": RFC7638_KEY["n"], "kty": "RSA", "e": "AQAB"}
    assert thumbprint(required_only) == RFC7638_THUMBPRINT
    assert thumbprint({**RFC7638_KEY, "use": "sig", "kid": "other"}) == RFC7638_THUMBPRINT


def test_thumbprint_depends_on_the_modulus() -> None:
    assert thumbprint({**RFC7638_KEY, "n": RFC7638_KEY["n"][:-1] + "A"}) != RFC7638_THUMBPRINT


def test_generated_key_is_rsa_2048_pkcs8_pem() -> None:
    pem = generate_private_key_pem()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size >= 2048
    assert key.public_key().public_numbers().e == 65537


def test_generated_keys_differ() -> None:
    assert generate_private_key_pem() != generate_private_key_pem()


def test_loaded_key_has_thumbprint_kid_and_public_jwk(signing_key: SigningKey) -> None:
    jwk = dict(signing_key.public_jwk)
    assert signing_key.alg == "RS256"
    assert signing_key.kid == thumbprint(jwk)
    assert jwk["kid"] == signing_key.kid
    assert {jwk["kty"], jwk["alg"], jwk["use"]} == {"RSA", "RS256", "sig"}
    numbers = signing_key.public_key.public_numbers()
    assert _b64url_int(jwk["n"]) == numbers.n
    assert _b64url_int(jwk["e"]) == numbers.e


def test_kid_is_the_sha256_of_the_canonical_public_members(signing_key: SigningKey) -> None:
    jwk = signing_key.public_jwk
    canonical = f'{{"e":"{jwk["e"]}","kty":"RSA","n":"{jwk["n"]}"}}'
    digest = hashlib.sha256(canonical.encode()).digest()
    assert signing_key.kid == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_loading_the_same_pem_twice_gives_the_same_kid() -> None:
    pem = generate_private_key_pem()
    assert load_signing_key(pem).kid == load_signing_key(pem).kid


def test_load_refuses_an_ec_key_for_rs256() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ValueError, match="RS256"):
        load_signing_key(pem)


def test_private_key_stays_out_of_repr(signing_key: SigningKey) -> None:
    text = repr(signing_key)
    assert "private_key" not in text
    assert signing_key.kid in text


def test_key_set_verifies_with_the_signing_key_and_older_keys(
    signing_key: SigningKey, other_key: SigningKey
) -> None:
    keys = KeySet.of(signing_key, [other_key])
    assert keys.signing is signing_key
    assert set(keys.verification) == {signing_key.kid, other_key.kid}
    assert keys.verification[other_key.kid] is other_key


def test_jwks_lists_every_verification_key_with_public_members_only(
    signing_key: SigningKey, other_key: SigningKey
) -> None:
    jwks = KeySet.of(signing_key, [other_key]).jwks()
    assert set(jwks) == {"keys"}
    assert {k["kid"] for k in jwks["keys"]} == {signing_key.kid, other_key.kid}
    for jwk in jwks["keys"]:
        assert jwk["kty"] == "RSA"
        assert jwk["alg"] == "RS256"
        assert jwk["use"] == "sig"
        assert jwk["n"] and jwk["e"]
        assert not set(PRIVATE_MEMBERS) & set(jwk), jwk.keys()
    json.dumps(jwks)  # serialisable as is


def test_jwks_hands_out_copies(key_set: KeySet, signing_key: SigningKey) -> None:
    key_set.jwks()["keys"][0]["kid"] = "tampered"
    assert key_set.jwks()["keys"][0]["kid"] == signing_key.kid


def _b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

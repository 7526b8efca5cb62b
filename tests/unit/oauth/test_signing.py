"""centrali.oauth.signing: the Signer port, sign_jwt and decode_jwt (RFC 7515, RFC 8725)."""

from __future__ import annotations

import base64
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centrali.oauth.keys import (
    LocalSigner,
    SigningKey,
    generate_private_key_pem,
    load_signing_key,
)
from centrali.oauth.signing import (
    InvalidTokenError,
    Signer,
    UnknownKeyError,
    decode_jwt,
    sign_jwt,
)
from tests.unit.oauth.fakes import ISSUER

TYP = "test+jwt"
TYPS = frozenset({TYP})
CLAIMS: dict[str, Any] = {"iss": ISSUER, "sub": "someone", "aud": "client", "iat": 1, "exp": 2}


class FakeSigner:
    """A Signer outside the process as far as sign_jwt can tell (a stand-in for a KMS): an
    Ed25519 key of its own, and a record of what it was asked to sign."""

    alg = "EdDSA"

    def __init__(self, kid: str = "fake-kid") -> None:
        self.kid = kid
        self._key = Ed25519PrivateKey.generate()
        self.public_key = self._key.public_key()
        self.asked: list[bytes] = []

    def sign(self, signing_input: bytes) -> bytes:
        self.asked.append(signing_input)
        return self._key.sign(signing_input)


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_a_fake_signer_issues_a_token_decode_jwt_accepts_with_its_public_key() -> None:
    signer = FakeSigner()
    token = sign_jwt(CLAIMS, signer, typ=TYP)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": "fake-kid", "typ": TYP}
    assert signer.asked == [token.rsplit(".", 1)[0].encode()]  # the JWS signing input, once
    claims = decode_jwt(token, {"fake-kid": signer.public_key}, typs=TYPS, issuer=ISSUER)
    assert claims == CLAIMS


def test_a_token_of_another_signer_under_the_same_kid_is_refused() -> None:
    ours, impostor = FakeSigner(), FakeSigner()
    forged = sign_jwt(CLAIMS, impostor, typ=TYP)
    with pytest.raises(InvalidTokenError, match="InvalidSignatureError"):
        decode_jwt(forged, {ours.kid: ours.public_key}, typs=TYPS, issuer=ISSUER)


def test_a_token_of_a_signer_we_do_not_publish_is_an_unknown_key() -> None:
    ours, stranger = FakeSigner(), FakeSigner(kid="stranger")
    token = sign_jwt(CLAIMS, stranger, typ=TYP)
    with pytest.raises(UnknownKeyError):
        decode_jwt(token, {ours.kid: ours.public_key}, typs=TYPS, issuer=ISSUER)


def test_decode_checks_typ_issuer_and_the_audience_when_given() -> None:
    signer = FakeSigner()
    keys = {signer.kid: signer.public_key}
    token = sign_jwt(CLAIMS, signer, typ=TYP)
    with pytest.raises(InvalidTokenError, match="unexpected typ"):
        decode_jwt(token, keys, typs=frozenset({"at+jwt"}), issuer=ISSUER)
    with pytest.raises(InvalidTokenError, match="InvalidIssuerError"):
        decode_jwt(token, keys, typs=TYPS, issuer="https://elsewhere.example")
    assert decode_jwt(token, keys, typs=TYPS, issuer=ISSUER, audience="client") == CLAIMS
    with pytest.raises(InvalidTokenError, match="InvalidAudienceError"):
        decode_jwt(token, keys, typs=TYPS, issuer=ISSUER, audience="another-client")


def test_time_claims_are_left_to_the_caller() -> None:
    signer = FakeSigner()
    long_expired = {**CLAIMS, "iat": 1, "exp": 2, "nbf": 2**40}
    token = sign_jwt(long_expired, signer, typ=TYP)
    assert decode_jwt(token, {signer.kid: signer.public_key}, typs=TYPS, issuer=ISSUER)


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_local_signer_writes_the_bytes_pyjwt_wrote(alg: str, signing_key: SigningKey) -> None:
    key = signing_key if alg == "RS256" else load_signing_key(generate_private_key_pem(alg), alg)
    assert isinstance(key.signer, LocalSigner)
    claims = {**CLAIMS, "groups": ["a", "b"], "name": "Zoë"}  # non-ASCII escaped alike
    expected = jwt.encode(
        claims, key.private_key, algorithm=alg, headers={"kid": key.kid, "typ": "at+jwt"}
    )
    assert sign_jwt(claims, key.signer, typ="at+jwt") == expected


def test_local_es256_signatures_are_r_and_s_and_verify_with_pyjwt() -> None:
    key = load_signing_key(generate_private_key_pem("ES256"), "ES256")
    token = sign_jwt(CLAIMS, key.signer, typ=TYP)
    assert len(_unb64(token.rsplit(".", 1)[1])) == 64  # R || S, not DER (RFC 7518 §3.4)
    pyjwt = jwt.decode(
        token,
        key.public_key,
        algorithms=["ES256"],
        options={"verify_aud": False, "verify_exp": False},
    )
    assert pyjwt == CLAIMS
    assert decode_jwt(token, {key.kid: key.public_key}, typs=TYPS, issuer=ISSUER) == CLAIMS


def test_a_local_signer_refuses_a_key_of_another_algorithm(signing_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="does not match"):
        LocalSigner(signing_key.private_key, kid=signing_key.kid, alg="ES256")


def test_signing_keys_and_fakes_are_signers(signing_key: SigningKey) -> None:
    signers: list[Signer] = [signing_key.signer, FakeSigner()]  # checked by mypy
    assert [s.kid for s in signers] == [signing_key.kid, "fake-kid"]


def _signed_raw(signer: FakeSigner, header: bytes, payload: bytes) -> str:
    """A JWS over exactly these header and payload bytes (what sign_jwt would never write)."""
    signing_input = _b64(header) + "." + _b64(payload)
    return signing_input + "." + _b64(signer.sign(signing_input.encode()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


HEADER = b'{"alg":"EdDSA","kid":"fake-kid","typ":"test+jwt"}'


@pytest.mark.parametrize(
    ("header", "payload", "description"),
    [
        (b"[1]", b'{"iss":"x"}', "malformed token"),  # header not an object
        (b'{"alg":"EdDSA","kid":"fake-kid","typ":"test+jwt","crit":["exp"]}', b"{}", "malformed"),
        (b'{"alg":"EdDSA","kid":"fake-kid","typ":"test+jwt","b64":false}', b"{}", "malformed"),
        (HEADER, b"[1, 2]", "malformed token"),  # payload not an object
        (HEADER, b"{not json", "malformed token"),
        (HEADER, b'{"iss":"%s","sub":7}' % ISSUER.encode(), "malformed token"),
        (HEADER, b'{"iss":"%s","jti":["a"]}' % ISSUER.encode(), "malformed token"),
        (HEADER, b'{"iss":["%s"]}' % ISSUER.encode(), "wrong issuer"),
        (HEADER, b'{"sub":"someone"}', "wrong issuer"),
    ],
)
def test_signed_but_malformed_tokens_are_refused_with_a_reason(
    header: bytes, payload: bytes, description: str
) -> None:
    signer = FakeSigner()
    token = _signed_raw(signer, header, payload)
    with pytest.raises(InvalidTokenError) as caught:
        decode_jwt(token, {"fake-kid": signer.public_key}, typs=TYPS, issuer=ISSUER)
    assert caught.value.description.startswith(description)


@pytest.mark.parametrize(
    ("aud", "accepted"),
    [
        ("client", True),
        (["other", "client"], True),
        (["other"], False),
        ([], False),
        ([1, "client"], False),
        ({"client": 1}, False),
        (None, False),
    ],
)
def test_the_audience_may_be_one_string_or_a_list_of_strings(aud: Any, accepted: bool) -> None:
    signer = FakeSigner()
    token = sign_jwt({**CLAIMS, "aud": aud}, signer, typ=TYP)
    keys = {"fake-kid": signer.public_key}
    if accepted:
        assert decode_jwt(token, keys, typs=TYPS, issuer=ISSUER, audience="client")["aud"] == aud
    else:
        with pytest.raises(InvalidTokenError, match="InvalidAudienceError"):
            decode_jwt(token, keys, typs=TYPS, issuer=ISSUER, audience="client")


def test_one_token_has_one_spelling() -> None:
    """Padding, stray bits in the last character, characters outside base64url, a fourth
    segment: all refused, although the bytes they decode to carry a good signature."""
    signer = FakeSigner()
    keys = {"fake-kid": signer.public_key}
    token = sign_jwt(CLAIMS, signer, typ=TYP)
    assert decode_jwt(token, keys, typs=TYPS, issuer=ISSUER) == CLAIMS
    head, body, sig = token.split(".")
    # Ed25519 signatures are 64 bytes: 86 characters, the last one holding 2 spare bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    stray = sig[:-1] + alphabet[last ^ 1]
    assert _unb64(stray) == _unb64(sig)
    for forged in (
        f"{head}.{body}.{stray}",
        f"{head}.{body}.{sig}==",
        f"{head}=.{body}.{sig}",
        f"{head}.{body}.{sig}.",
        f"{head}.{body}.{sig[:-1]}!",
        f" {token}",
        f"{head}.{body}",
    ):
        with pytest.raises(InvalidTokenError, match="malformed"):
            decode_jwt(forged, keys, typs=TYPS, issuer=ISSUER)


@pytest.mark.parametrize(
    ("header", "description"),
    [
        (b'{"alg":"EdDSA","kid":"fake-kid","typ":["test+jwt"]}', "wrong token type"),
        (b'{"alg":"EdDSA","kid":"fake-kid","typ":{"a":1}}', "wrong token type"),
        (b'{"alg":["EdDSA"],"kid":"fake-kid","typ":"test+jwt"}', "algorithm ? not accepted"),
        (b'{"alg":"EdDSA","kid":["fake-kid"],"typ":"test+jwt"}', "malformed token"),
        (b'{"alg":"EdDSA","kid":7,"typ":"test+jwt"}', "malformed token"),
        (b'{"alg":"EdDSA","typ":"test+jwt"}', "malformed token"),
    ],
)
def test_header_members_of_the_wrong_type_are_refused_not_crashed_on(
    header: bytes, description: str
) -> None:
    signer = FakeSigner()
    token = _signed_raw(signer, header, b'{"iss":"%s"}' % ISSUER.encode())
    with pytest.raises(InvalidTokenError) as caught:
        decode_jwt(token, {"fake-kid": signer.public_key}, typs=TYPS, issuer=ISSUER)
    assert caught.value.description.startswith(description), caught.value.description
    assert not isinstance(caught.value, UnknownKeyError)  # no JWKS refetch for junk

"""JWS compact serialization of the JWTs we sign and read back (RFC 7515 §3.1, §5; RFC 7519
§7; RFC 8725): one ``sign_jwt`` for every token we issue (access tokens, ID tokens, login
tickets), one ``decode_jwt`` for every token of ours we read, and the ``Signer`` port between
the claims and the private key.

A ``Signer`` is a key that signs. Its ``kid`` and ``alg`` go into the protected header, and
``sign`` turns the JWS signing input, ``BASE64URL(header) "." BASE64URL(payload)`` (RFC 7515
§5.1), into the signature bytes RFC 7518 defines for ``alg``: RSASSA-PKCS1-v1_5 with SHA-256
for RS256 (§3.3), ``R || S`` of ECDSA P-256 with SHA-256 for ES256 (§3.4), Ed25519 for EdDSA
(RFC 8037 §3.1). The local adapter is ``centrali.oauth.keys.LocalSigner``, over a private key
loaded in this process (every ``SigningKey`` carries one as ``signer``). A KMS or HSM is one
more adapter with the same three members: ``kid`` the RFC 7638 thumbprint of its public key
(published in the JWKS like any other), ``alg`` the device's algorithm, and ``sign`` one call
to the device (such devices usually take the SHA-256 digest of the signing input, and answer
ECDSA as DER, which the adapter turns into ``R || S``). ``sign`` runs once per token on the
token endpoint's event loop: a remote signer must answer quickly or get its own threads.

Reading accepts only the algorithms we sign with, only keys of our own key set (looked up by
``kid``), each key only with its own algorithm, and only the ``typ`` the caller expects, so an
ID token is never taken for an access token and a token signed with a symmetric key made from
our public key is refused (RFC 8725 §2.1, §3.1, §3.11).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

import jwt
from jwt.algorithms import Algorithm

from centrali.oauth.keys import SUPPORTED_ALGS, alg_for_key

# Accepted in a header at all; each key then verifies only its own algorithm (alg_for_key).
ALLOWED_ALGS = SUPPORTED_ALGS


class Signer(Protocol):
    """A signing key, wherever it lives: in this process (``keys.LocalSigner``), a KMS, an
    HSM. Set up once (key handle, padding, connection), then used for every token."""

    @property
    def kid(self) -> str:
        """The ``kid`` header: the RFC 7638 thumbprint of the public key."""
        ...

    @property
    def alg(self) -> str:
        """The ``alg`` header: RS256, ES256 or EdDSA."""
        ...

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature of ``signing_input`` for ``alg`` (RFC 7518 §3, RFC 8037 §3.1)."""
        ...


# The descriptions of the refusals (``TokenError.description``).
MALFORMED = "malformed token"
BAD_SIGNATURE = "bad signature: not signed by a key of this issuer"
WRONG_ISSUER = "wrong issuer"
WRONG_AUDIENCE = "wrong audience"


class TokenError(Exception):
    """A presented token was refused. ``reason`` is for logs, never the wire;
    ``description`` says why in words fit for a client (RFC 6750 §3 ``error_description``:
    no key material, no claim values, no double quote or backslash)."""

    def __init__(self, reason: str, description: str = "invalid token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.description = description


class InvalidTokenError(TokenError):
    """Missing, malformed, forged, foreign or otherwise unacceptable."""


class UnknownKeyError(InvalidTokenError):
    """Signed with a ``kid`` we do not know (a verifier may refetch the JWKS once)."""

    def __init__(self, reason: str, description: str = BAD_SIGNATURE) -> None:
        super().__init__(reason, description)


class TokenExpiredError(TokenError):
    """Genuine, but past its ``exp``."""

    def __init__(self, reason: str, description: str = "expired") -> None:
        super().__init__(reason, description)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@lru_cache(maxsize=64)
def _header_segment(alg: str, kid: str, typ: str) -> bytes:
    """The encoded protected header, made once per key and ``typ``: members sorted, no
    spaces (the bytes PyJWT wrote for the same header)."""
    header = {"alg": alg, "kid": kid, "typ": typ}
    return _b64(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


def sign_jwt(claims: Mapping[str, Any], signer: Signer, *, typ: str) -> str:
    """``claims`` as a compact JWS signed by ``signer``, header ``alg``, ``kid``, ``typ``.
    Per token: one JSON encoding of the claims and one signature; the header is cached."""
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _header_segment(signer.alg, signer.kid, typ) + b"." + payload
    return (signing_input + b"." + _b64(signer.sign(signing_input))).decode("ascii")


# A compact JWS: three base64url segments (RFC 7515 §7.1; the signature empty for alg none,
# which is then refused by name), no padding, nothing else.
_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")


class _Parsed(NamedTuple):
    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes


def _segment(segment: str) -> bytes:
    """One base64url segment, decoded; only its canonical form is accepted (no padding, no
    stray bits), so one token has one spelling."""
    if len(segment) % 4 == 1:
        raise ValueError("impossible base64url length")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if _b64(raw) != segment.encode("ascii"):
        raise ValueError("non-canonical base64url")
    return raw


def _parse(token: str) -> _Parsed:
    """The three parts of a compact JWS, the header decoded (a JSON object). The parsing is
    ours and the cryptography PyJWT's: PyJWT 2.15 checks the alphabet one character at a
    time in Python, three times per token, which cost a fifth of a record read; a regular
    expression checks the same in one pass."""
    match = _COMPACT.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise InvalidTokenError("malformed token", MALFORMED)
    head, body, sig = match.groups()
    try:
        header = json.loads(_segment(head))
        payload, signature = _segment(body), _segment(sig)
    except (ValueError, RecursionError) as exc:
        raise InvalidTokenError("malformed token", MALFORMED) from exc
    if not isinstance(header, dict):
        raise InvalidTokenError("malformed token: header not an object", MALFORMED)
    if "crit" in header or "b64" in header:  # no extension of RFC 7515 §4.1.11 is understood
        raise InvalidTokenError("malformed token: unknown critical header", MALFORMED)
    signing_input = token[: match.end(2)].encode("ascii")
    return _Parsed(header, signing_input, payload, signature)


def verification_key(
    token: str, public_keys: Mapping[str, Any], *, typs: frozenset[str]
) -> tuple[Any, str]:
    """The key (and its one algorithm) that must have signed ``token``, from its header: an
    algorithm of ours (never ``none`` or HMAC), a ``typ`` in ``typs``, a ``kid`` we publish,
    and the header's ``alg`` equal to that key's. Every JWS we read goes through here."""
    return _key_for(_parse(token).header, public_keys, typs)


def _key_for(
    header: Mapping[str, Any], public_keys: Mapping[str, Any], typs: frozenset[str]
) -> tuple[Any, str]:
    if not isinstance(header.get("alg"), str) or header["alg"] not in ALLOWED_ALGS:
        alg_name = header.get("alg")
        shown = alg_name if isinstance(alg_name, str) and alg_name.isalnum() else "?"
        description = (
            "unsigned token (alg none) not accepted"
            if isinstance(alg_name, str) and alg_name.lower() == "none"
            else f"algorithm {shown[:16]} not accepted (accepted: {', '.join(ALLOWED_ALGS)})"
        )
        raise InvalidTokenError(f"algorithm not accepted: {alg_name!r}", description)
    typ = header.get("typ")
    if not isinstance(typ, str) or typ not in typs:
        raise InvalidTokenError(
            f"unexpected typ: {typ!r}"[:80],
            f"wrong token type (typ must be {' or '.join(sorted(typs))})",
        )
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidTokenError("kid missing or not a string", MALFORMED)
    key = public_keys.get(kid)
    if key is None:
        raise UnknownKeyError("unknown kid", f"{BAD_SIGNATURE} (unknown kid)")
    alg = alg_for_key(key)
    if header["alg"] != alg:
        raise InvalidTokenError(
            f"algorithm {header['alg']!r} does not match the key ({alg})", BAD_SIGNATURE
        )
    return key, alg


@lru_cache(maxsize=8)
def _algorithm(alg: str) -> Algorithm:
    return jwt.get_algorithm_by_name(alg)


def decode_jwt(
    token: str,
    public_keys: Mapping[str, Any],
    *,
    typs: frozenset[str],
    issuer: str,
    audience: str | None = None,
) -> dict[str, Any]:
    """The claims of a JWT we signed: its header checked (``verification_key``), then its
    signature (PyJWT's algorithm for the key), ``iss``, and ``aud`` when ``audience`` is
    given (an ID token's audience is its client, which the caller looks at). ``exp``,
    ``iat`` and ``nbf`` are the caller's; ``sub`` and ``jti``, when present, must be
    strings. Raises InvalidTokenError (UnknownKeyError when we publish no key of that
    ``kid``)."""
    parsed = _parse(token)
    key, alg = _key_for(parsed.header, public_keys, typs)
    if not _algorithm(alg).verify(parsed.signing_input, key, parsed.signature):
        raise InvalidTokenError("InvalidSignatureError", BAD_SIGNATURE)
    try:
        claims = json.loads(parsed.payload)
    except (ValueError, RecursionError) as exc:
        raise InvalidTokenError("DecodeError", MALFORMED) from exc
    if not isinstance(claims, dict):
        raise InvalidTokenError("DecodeError: payload not an object", MALFORMED)
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss != issuer:
        raise InvalidTokenError("InvalidIssuerError", WRONG_ISSUER)
    if audience is not None:
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if (
            not audiences
            or not isinstance(audiences, list)
            or not all(isinstance(a, str) for a in audiences)
            or audience not in audiences
        ):
            raise InvalidTokenError("InvalidAudienceError", WRONG_AUDIENCE)
    if not isinstance(claims.get("sub", ""), str) or not isinstance(claims.get("jti", ""), str):
        raise InvalidTokenError("sub or jti not a string", MALFORMED)
    return claims

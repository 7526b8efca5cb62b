"""Public JWKs a client registers for ``private_key_jwt`` (RFC 7523 §2.2; JWK: RFC 7517,
RFC 7518 §6, RFC 8037 §2): which keys are accepted, with which one algorithm, and the
``kid`` they get (RFC 7638 thumbprint unless one is given).

Accepted: RSA of 2048 to 8192 bits with RS256 or PS256 (RS256 when the JWK names no ``alg``),
EC P-256 with ES256, OKP Ed25519 with EdDSA. Refused, each with its reason: anything not a
JSON object, private or symmetric members, other key types and curves, a weaker RSA key, an
``alg`` the key cannot have (``none``, HMAC, another family), ``use`` other than ``sig``,
members that are not base64url or do not make a valid key. PyJWT and cryptography parse the
key; nothing here is hand-written crypto.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from centrali.oauth.keys import thumbprint

# RFC 7517 §9.2, RFC 7518 §6.2.2 / §6.3.2, RFC 8037: members that only a private or a
# symmetric key has.
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k", "oth")
# Per key type: the curve it must be on (None: no curve), its public members, the algorithms
# it may verify (the first when the JWK names none).
_KEY_TYPES: dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]] = {
    "RSA": (None, ("n", "e"), ("RS256", "PS256")),
    "EC": ("P-256", ("x", "y"), ("ES256",)),
    "OKP": ("Ed25519", ("x",), ("EdDSA",)),
}
_LOADERS: dict[str, Any] = {
    "RSA": RSAAlgorithm.from_jwk,
    "EC": ECAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
}
RSA_MIN_BITS = 2048
# Verification cost grows with the key: a bound keeps one assertion check cheap.
RSA_MAX_BITS = 8192
KID_MAX = 128
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MEMBER_MAX = 2048  # characters: an 8192-bit modulus is 1366
_KID = re.compile(rf"[\x20-\x7e]{{1,{KID_MAX}}}")


class JwkError(ValueError):
    """The JWK is refused; the message says why (safe to show: it holds no key material)."""


@dataclass(frozen=True, slots=True)
class ClientJwk:
    """An accepted public key: its ``kid``, type, its one algorithm, and the JWK to store
    (public members, ``kid``, ``alg`` and ``use`` only)."""

    kid: str
    kty: str
    alg: str
    jwk: Mapping[str, Any]


def _name(value: Any) -> str:
    """A value of the client's, quoted and cut short for a message."""
    return repr(value)[:40] if isinstance(value, str) else type(value).__name__


def parse_client_jwk(jwk: Any) -> ClientJwk:
    """The accepted form of ``jwk``, or JwkError saying why it is refused."""
    if not isinstance(jwk, dict):
        raise JwkError("jwk must be a JSON object (one public JWK)")
    kty = jwk.get("kty")
    if kty == "oct":
        raise JwkError('jwk: symmetric keys (kty "oct") are not accepted; send a public key')
    private = [m for m in PRIVATE_MEMBERS if m in jwk]
    if private:
        raise JwkError(
            f"jwk holds private key members ({', '.join(private)}); send the public key only"
        )
    if not isinstance(kty, str) or kty not in _KEY_TYPES:
        raise JwkError(
            f"jwk: unsupported key type {_name(kty)} (accepted: RSA, EC P-256, OKP Ed25519)"
        )
    curve, members, algs = _KEY_TYPES[kty]
    crv = jwk.get("crv")
    if curve is not None and crv != curve:
        raise JwkError(f"jwk: unsupported curve {_name(crv)} ({kty} keys must be {curve})")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise JwkError(f'jwk: use must be "sig" (signature keys only), not {_name(use)}')
    alg = jwk.get("alg", algs[0])
    if alg not in algs:
        raise JwkError(
            f"jwk: alg {_name(alg)} does not fit a {kty} key (accepted: {', '.join(algs)})"
        )
    public: dict[str, Any] = {"kty": kty} if curve is None else {"kty": kty, "crv": curve}
    for member in members:
        value = jwk.get(member)
        if not isinstance(value, str) or len(value) > _MEMBER_MAX or not _B64URL.fullmatch(value):
            raise JwkError(f"jwk: member {member} is missing or not base64url")
        public[member] = value
    try:
        key = _LOADERS[kty](dict(public))
    except (InvalidKeyError, ValueError, TypeError, binascii.Error) as exc:
        raise JwkError(f"jwk: not a valid {kty} public key ({', '.join(members)})") from exc
    if isinstance(key, rsa.RSAPublicKey) and not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
        raise JwkError(
            f"jwk: RSA keys must have {RSA_MIN_BITS} to {RSA_MAX_BITS} bits, not {key.key_size}"
        )
    kid = jwk.get("kid")
    if kid is None:
        kid = thumbprint(public)
    elif not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise JwkError(f"jwk: kid must be 1 to {KID_MAX} printable ASCII characters")
    return ClientJwk(
        kid=kid, kty=kty, alg=alg, jwk={**public, "kid": kid, "alg": alg, "use": "sig"}
    )

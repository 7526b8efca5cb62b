"""Signing keys: RSA generation, ``kid`` as the RFC 7638 thumbprint, JWKS (RFC 7517)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

SIGNING_ALG = "RS256"
RSA_KEY_BITS = 2048


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def generate_private_key_pem() -> str:
    """A new RSA-2048 private key as unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an RSA public key."""
    members = {name: jwk[name] for name in ("e", "kty", "n")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True)
class SigningKey:
    """A loaded private key; load once per process, never per request."""

    kid: str
    alg: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    public_jwk: Mapping[str, Any] = field(repr=False)
    public_key: rsa.RSAPublicKey = field(repr=False)


def load_signing_key(private_pem: str, alg: str = SIGNING_ALG) -> SigningKey:
    """Parse a PEM private key and derive its public JWK and kid."""
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("signing key is not an RSA key")
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    kid = thumbprint(jwk)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return SigningKey(
        kid=kid, alg=alg, private_key=key, public_jwk=jwk, public_key=key.public_key()
    )


@dataclass(frozen=True)
class KeySet:
    """The key that signs now, and every key whose tokens may still be presented."""

    signing: SigningKey
    verification: Mapping[str, SigningKey]

    @classmethod
    def of(cls, signing: SigningKey, others: Iterable[SigningKey] = ()) -> KeySet:
        keys = {k.kid: k for k in others}
        keys[signing.kid] = signing
        return cls(signing=signing, verification=keys)

    @cached_property
    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """Verification keys by kid."""
        return {kid: k.public_key for kid, k in self.verification.items()}

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set: public members only, with ``kid``, ``use`` and ``alg``."""
        return {"keys": [dict(k.public_jwk) for k in self.verification.values()]}

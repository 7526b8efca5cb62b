"""Signing keys: generation, ``kid`` as the RFC 7638 thumbprint, JWKS (RFC 7517), rotation,
and ``LocalSigner``, the ``signing.Signer`` over a key loaded in this process.

RS256 (RSA-2048) is the default; ES256 (P-256) and EdDSA (Ed25519) sign several times
faster and can be chosen with ``CENTRALI_SIGNING_ALG`` where every verifier supports them.

Rotation (per algorithm, newest generation first; see ``key_states``):

- *pending*: its activation time is still ahead; published and verifying, not signing;
- *active*: the newest key whose activation time has come; it signs;
- *superseded*: an older key; published and verifying until every token it signed has
  expired, i.e. the next newer key's activation + the token lifetime (+ a grace);
- *retired*: retired in the store, or superseded past that time; neither published nor
  verifying.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

if TYPE_CHECKING:
    from centrali.oauth.signing import Signer

SIGNING_ALG = "RS256"
SUPPORTED_ALGS = ("RS256", "ES256", "EdDSA")
RSA_KEY_BITS = 2048
# RFC 7638 §3.2: the required members of each key type, in the thumbprint's input.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def generate_private_key_pem(alg: str = SIGNING_ALG) -> str:
    """A new private key for ``alg`` as unencrypted PKCS#8 PEM."""
    key: PrivateKeyTypes
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported signing algorithm: {alg}")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of a public key."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True)
class SigningKey:
    """A loaded private key; load once per process, never per request. ``signer`` signs
    with it (``signing.sign_jwt``)."""

    kid: str
    alg: str
    private_key: Any = field(repr=False)
    public_jwk: Mapping[str, Any] = field(repr=False)
    public_key: Any = field(repr=False)
    signer: Signer = field(repr=False, compare=False)


def alg_for_key(key: PublicKeyTypes) -> str:
    """The one JWS algorithm a public key of ours verifies (no algorithm confusion)."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError(f"unsupported key type: {type(key).__name__}")


# Stateless, so made once for every signature of the process.
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)
_P256_BYTES = 32


def _signature_function(key: PrivateKeyTypes) -> Callable[[bytes], bytes]:
    """One call into cryptography per signature, in the form RFC 7518 §3.3/§3.4 and RFC 8037
    §3.1 want (ECDSA as ``R || S``, not DER)."""
    if isinstance(key, rsa.RSAPrivateKey):
        rsa_key = key
        return lambda data: rsa_key.sign(data, _PKCS1V15, _SHA256)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ec_key = key

        def es256(data: bytes) -> bytes:
            r, s = decode_dss_signature(ec_key.sign(data, _ECDSA_SHA256))
            return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")

        return es256
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    raise ValueError(f"unsupported key type: {type(key).__name__}")


class LocalSigner:
    """The ``signing.Signer`` over a private key loaded in this process: the key object and
    its algorithm's padding and hash are set up once, so a signature is one call."""

    __slots__ = ("_sign", "alg", "kid")

    def __init__(self, private_key: PrivateKeyTypes, *, kid: str, alg: str) -> None:
        if alg_for_key(private_key.public_key()) != alg:
            raise ValueError(f"signing key does not match its algorithm {alg}")
        self.kid = kid
        self.alg = alg
        self._sign = _signature_function(private_key)

    def sign(self, signing_input: bytes) -> bytes:
        return self._sign(signing_input)


def load_signing_key(private_pem: str, alg: str = SIGNING_ALG) -> SigningKey:
    """Parse a PEM private key and derive its public JWK and kid."""
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    public = key.public_key()
    if alg_for_key(public) != alg:
        raise ValueError(f"signing key does not match its algorithm {alg}")
    jwk: dict[str, Any]
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    else:  # pragma: no cover - alg_for_key already refused it
        raise ValueError("unsupported key type")
    # The public members alone (PyJWT adds ``key_ops``): RFC 7517 §4.3 wants ``use`` and
    # ``key_ops`` not both, and ``use: sig`` is what verifiers look for.
    kty = jwk["kty"]
    public_jwk = {"kty": kty, **{m: jwk[m] for m in _THUMBPRINT_MEMBERS[kty] if m != "kty"}}
    kid = thumbprint(public_jwk)
    jwk = {**public_jwk, "kid": kid, "alg": alg, "use": "sig"}
    return SigningKey(
        kid=kid,
        alg=alg,
        private_key=key,
        public_jwk=jwk,
        public_key=public,
        signer=LocalSigner(key, kid=kid, alg=alg),
    )


@dataclass(frozen=True)
class KeySet:
    """The key that signs now, and every key whose tokens may still be presented.

    ``changes_at`` (epoch seconds) is when this set goes stale by the clock alone: a pending
    key starts signing or a superseded key drops out. ``None``: not before the store changes.
    """

    signing: SigningKey
    verification: Mapping[str, SigningKey]
    changes_at: float | None = None

    @classmethod
    def of(
        cls,
        signing: SigningKey,
        others: Iterable[SigningKey] = (),
        *,
        changes_at: float | None = None,
    ) -> KeySet:
        keys = {k.kid: k for k in others}
        keys[signing.kid] = signing
        return cls(signing=signing, verification=keys, changes_at=changes_at)

    @cached_property
    def public_keys(self) -> dict[str, Any]:
        """Verification keys by kid."""
        return {kid: k.public_key for kid, k in self.verification.items()}

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set: public members only, with ``kid``, ``use: sig`` and ``alg``
        (no ``key_ops``)."""
        return {"keys": [dict(k.public_jwk) for k in self.verification.values()]}


# --- rotation ------------------------------------------------------------------------------

KeyState = Literal["pending", "active", "superseded", "retired"]
PUBLISHED_STATES: frozenset[KeyState] = frozenset({"pending", "active", "superseded"})


@dataclass(frozen=True)
class KeyEntry:
    """What the store knows of a key's life; times in epoch seconds."""

    kid: str
    alg: str
    generation: int
    created_at: float
    activates_at: float | None = None  # None: signs from creation
    retired_at: float | None = None  # retired explicitly


@dataclass(frozen=True)
class KeyStatus:
    entry: KeyEntry
    state: KeyState
    # Superseded keys: when the last token they may have signed has expired.
    retire_after: float | None = None

    @property
    def published(self) -> bool:
        return self.state in PUBLISHED_STATES


def key_states(entries: Iterable[KeyEntry], *, now: float, keep_seconds: float) -> list[KeyStatus]:
    """The state of each key at ``now``, newest generation first.

    ``keep_seconds``: how long a superseded key stays after the newer key took over (the
    token lifetime plus a grace for workers that switch late and for clock skew).
    """
    ordered = sorted(entries, key=lambda e: e.generation, reverse=True)
    statuses: dict[str, KeyStatus] = {}
    # Per algorithm: when the closest newer key that has started signing took over.
    took_over: dict[str, float] = {}
    for entry in ordered:
        if entry.retired_at is not None:
            # A retired key neither signed nor signs in place of an older one that we know
            # of: older keys count from the next live key (later, so on the safe side).
            statuses[entry.kid] = KeyStatus(entry, "retired")
            continue
        starts = entry.created_at if entry.activates_at is None else entry.activates_at
        if entry.activates_at is not None and entry.activates_at > now:
            statuses[entry.kid] = KeyStatus(entry, "pending")
            continue
        newer = took_over.get(entry.alg)
        if newer is None:
            statuses[entry.kid] = KeyStatus(entry, "active")
        else:
            retire_after = newer + keep_seconds
            state: KeyState = "superseded" if now < retire_after else "retired"
            statuses[entry.kid] = KeyStatus(entry, state, retire_after)
        took_over[entry.alg] = starts
    return [statuses[e.kid] for e in ordered]


def next_change(statuses: Iterable[KeyStatus], *, now: float) -> float | None:
    """The first time after ``now`` at which ``key_states`` gives another answer."""
    times = [
        t
        for s in statuses
        for t in (
            s.entry.activates_at if s.state == "pending" else None,
            s.retire_after if s.state == "superseded" else None,
        )
        if t is not None and t > now
    ]
    return min(times, default=None)

"""ID Tokens (OpenID Connect Core 1.0 §2, §3.1.3.6 with ``at_hash``, §12.2) and
``id_token_hint`` (OpenID Connect RP-Initiated Logout 1.0 §2).

Signed with the issuer's current signing key (RS256 unless ``CENTRALI_SIGNING_ALG`` says
otherwise; discovery names it), header ``typ: JWT``: an ID token is never accepted as an
access token (which must be ``at+jwt``), and an access token is never read as a hint.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from centrali.oauth.keys import KeySet
from centrali.oauth.signing import InvalidTokenError, decode_jwt, sign_jwt

ID_TOKEN_TYP = "JWT"
# The hash of ``at_hash`` per signing algorithm: the one of the JWA algorithm (RFC 7518 §3),
# SHA-512 for EdDSA with Ed25519 (the only curve we sign with; OpenID Connect issue 1125).
_TOKEN_HASHES = {"RS256": hashlib.sha256, "ES256": hashlib.sha256, "EdDSA": hashlib.sha512}


@dataclass(frozen=True, slots=True)
class IdTokenFacts:
    """Who signed in, where, when, and for which client."""

    subject: str
    client_id: str
    email: str
    auth_time: int
    nonce: str | None = None
    sid: str | None = None


def id_token_claims(facts: IdTokenFacts, *, issuer: str, ttl: int, now: float) -> dict[str, Any]:
    """The claims: ``iss``, ``sub``, ``aud`` (the client), ``iat``, ``exp``, ``auth_time``,
    ``email``, and ``nonce`` / ``sid`` when known."""
    iat = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": facts.subject,
        "aud": facts.client_id,
        "iat": iat,
        "exp": iat + ttl,
        "auth_time": facts.auth_time,
        "email": facts.email,
    }
    if facts.nonce is not None:
        claims["nonce"] = facts.nonce
    if facts.sid is not None:
        claims["sid"] = facts.sid
    return claims


def token_hash(value: str, alg: str) -> str:
    """OpenID Connect Core §3.1.3.6 ``at_hash`` (and §3.3.2.11 ``c_hash``): the base64url
    left half of the hash of ``value``'s ASCII octets, with ``alg``'s hash."""
    digest = _TOKEN_HASHES[alg](value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def issue_id_token(
    facts: IdTokenFacts,
    *,
    keys: KeySet,
    issuer: str,
    ttl: int,
    now: float,
    access_token: str | None = None,
) -> str:
    """The signed ID token; ``at_hash`` binds it to ``access_token`` when one is issued
    with it."""
    claims = id_token_claims(facts, issuer=issuer, ttl=ttl, now=now)
    signer = keys.signing.signer
    if access_token is not None:
        claims["at_hash"] = token_hash(access_token, signer.alg)
    return sign_jwt(claims, signer, typ=ID_TOKEN_TYP)


@dataclass(frozen=True, slots=True)
class IdTokenHint:
    subject: str
    client_id: str
    sid: str | None


def read_id_token_hint(token: str, public_keys: Mapping[str, Any], *, issuer: str) -> IdTokenHint:
    """An ID token we issued (signature, ``typ``, ``iss``), expired or not: a hint may be
    presented after the token expired (RP-Initiated Logout §2)."""
    claims = decode_jwt(token, public_keys, typs=frozenset({ID_TOKEN_TYP}), issuer=issuer)
    sub, aud, sid = claims.get("sub"), claims.get("aud"), claims.get("sid")
    if not isinstance(sub, str) or not isinstance(aud, str):
        raise InvalidTokenError("sub/aud missing")
    return IdTokenHint(subject=sub, client_id=aud, sid=sid if isinstance(sid, str) else None)
